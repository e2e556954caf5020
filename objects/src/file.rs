//! File objects: the ordered chunk list of one file's content.

use crate::encoding::{Decoder, Encoder};
use crate::error::Result;
use crate::id::{ChunkId, FileId};

const MAGIC: &[u8; 4] = b"CSFO";
const VERSION: u8 = 1;

/// One file's content: its chunks in order, its size and (as its id) its whole-file hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileObject {
    /// The whole-file blake3 hash, which is also the object's key.
    pub id: FileId,
    /// Total size in bytes.
    pub size: u64,
    /// The chunks in order, with their lengths.
    pub chunks: Vec<(ChunkId, u32)>,
}

impl FileObject {
    /// Canonical encoding: magic `CSFO`, version 1, size u64, chunk count u32, then per chunk
    /// its 32-byte id and its u32 length. (The id is the key, not part of the value.)
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_header(MAGIC, VERSION);
        e.u64(self.size);
        e.u32(u32::try_from(self.chunks.len()).expect("a file has fewer than 2^32 chunks"));
        for (id, len) in &self.chunks {
            e.raw(id.as_bytes());
            e.u32(*len);
        }
        e.finish()
    }

    /// Decodes a file object stored under `id`, checking that the chunk lengths add up.
    ///
    /// # Errors
    /// [`crate::ObjectError::Decode`] on malformed bytes.
    pub fn decode(id: FileId, bytes: &[u8]) -> Result<FileObject> {
        let (mut d, version) = Decoder::with_header(bytes, MAGIC, "file object")?;
        if version != VERSION {
            return Err(d.error("unknown version"));
        }
        let size = d.u64()?;
        let n = d.u32()? as usize;
        let mut chunks = Vec::with_capacity(n.min(1 << 16));
        let mut total = 0u64;
        for _ in 0..n {
            let cid = ChunkId(d.id()?);
            let len = d.u32()?;
            total += u64::from(len);
            chunks.push((cid, len));
        }
        if total != size {
            return Err(d.error("chunk lengths do not add up to the size"));
        }
        d.finish()?;
        Ok(FileObject { id, size, chunks })
    }
}

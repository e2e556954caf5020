//! The primitives of the canonical encodings (see `docs/formats.md`).
//!
//! Fixed-width little-endian integers and length-prefixed byte strings: simple to document,
//! to decode defensively, and to keep stable (same input, same bytes, same hash).

use crate::error::{ObjectError, Result};

/// Appends encoded values to a buffer.
#[derive(Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// An empty encoder (no header).
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// An encoder that starts with a 4-byte magic and a version byte.
    pub fn with_header(magic: &[u8; 4], version: u8) -> Encoder {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(magic);
        buf.push(version);
        Encoder { buf }
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// u32, little-endian.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// u64, little-endian.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// i64, little-endian two's complement.
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Raw bytes of a known width (ids).
    pub fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// A u32 length, then the bytes.
    pub fn bytes(&mut self, v: &[u8]) {
        self.u32(u32::try_from(v.len()).expect("encoded strings are far below 4 GiB"));
        self.buf.extend_from_slice(v);
    }

    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads values back, failing cleanly on truncated or malformed input.
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Decoder<'a> {
    /// A decoder of headerless bytes (messages that are not stored, such as the remote
    /// helper's protocol).
    pub fn new(buf: &'a [u8], what: &'static str) -> Decoder<'a> {
        Decoder { buf, pos: 0, what }
    }

    /// A decoder that checks the magic and returns the version byte.
    ///
    /// # Errors
    /// [`ObjectError::Decode`] if the magic is wrong or the input too short.
    pub fn with_header(buf: &'a [u8], magic: &[u8; 4], what: &'static str) -> Result<(Self, u8)> {
        let mut d = Decoder { buf, pos: 0, what };
        let m = d.take(4)?;
        if m != magic {
            return Err(d.error("wrong magic"));
        }
        let version = d.u8()?;
        Ok((d, version))
    }

    /// An error naming this record.
    pub fn error(&self, detail: &str) -> ObjectError {
        ObjectError::Decode {
            what: self.what.to_string(),
            detail: format!("{detail} at byte {}", self.pos),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() - self.pos < n {
            return Err(self.error("truncated"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// One byte.
    ///
    /// # Errors
    /// [`ObjectError::Decode`] when truncated.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// u32.
    ///
    /// # Errors
    /// [`ObjectError::Decode`] when truncated.
    pub fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(b.try_into().expect("took 4 bytes")))
    }

    /// u64.
    ///
    /// # Errors
    /// [`ObjectError::Decode`] when truncated.
    pub fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("took 8 bytes")))
    }

    /// i64.
    ///
    /// # Errors
    /// [`ObjectError::Decode`] when truncated.
    pub fn i64(&mut self) -> Result<i64> {
        let b = self.take(8)?;
        Ok(i64::from_le_bytes(b.try_into().expect("took 8 bytes")))
    }

    /// 32 raw bytes (an id).
    ///
    /// # Errors
    /// [`ObjectError::Decode`] when truncated.
    pub fn id(&mut self) -> Result<[u8; 32]> {
        let b = self.take(32)?;
        Ok(b.try_into().expect("took 32 bytes"))
    }

    /// A length-prefixed byte string.
    ///
    /// # Errors
    /// [`ObjectError::Decode`] when truncated.
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    /// Fails unless every byte was consumed.
    ///
    /// # Errors
    /// [`ObjectError::Decode`] on trailing bytes.
    pub fn finish(self) -> Result<()> {
        if self.pos != self.buf.len() {
            return Err(self.error("trailing bytes"));
        }
        Ok(())
    }
}

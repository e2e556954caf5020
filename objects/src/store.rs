//! The store: objects written once, named by their hash, verified on every read.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::chunker::{Block, ChunkerParams};
use crate::db::{Batch, Db, Table};
use crate::error::{ObjectError, Result};
use crate::file::FileObject;
use crate::id::{ChunkId, FileId, SnapshotId, TreeId};
use crate::keys;
use crate::snapshot::Snapshot;
use crate::tree::{Entry, EntryKind, Tree};

/// The store format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// What one ingest did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Chunks cut.
    pub chunks: u64,
    /// Chunks that were new to the store.
    pub new_chunks: u64,
    /// Bytes of the new chunks (before compression).
    pub new_bytes: u64,
}

/// One ingest under way: the whole-file hash so far, the chunk list, the counts.
///
/// New chunks are written without the write-ahead log: each went to the log and then to
/// a blob file at the flush, twice its bytes written for nothing. The file object waits
/// for a flush of them ([`crate::db::Db::put_file_object`]), so no durable record ever
/// names a chunk a crash lost.
struct Ingest<'a> {
    store: &'a Store,
    chunks_table: Table<'a>,
    whole: blake3::Hasher,
    stats: IngestStats,
    list: Vec<(ChunkId, u32)>,
}

impl<'a> Ingest<'a> {
    fn new(store: &'a Store) -> Ingest<'a> {
        Ingest {
            store,
            chunks_table: store.db.table(keys::CF_CHUNKS),
            whole: blake3::Hasher::new(),
            stats: IngestStats::default(),
            list: Vec::new(),
        }
    }

    /// Stores one chunk if new and notes it.
    fn add_chunk(&mut self, data: &[u8]) -> Result<()> {
        let id = ChunkId::of(data);
        self.stats.bytes_read += data.len() as u64;
        self.stats.chunks += 1;
        if !self.chunks_table.contains(id.as_bytes())? {
            self.chunks_table.put_unlogged(id.as_bytes(), data)?;
            self.stats.new_chunks += 1;
            self.stats.new_bytes += data.len() as u64;
        }
        self.list.push((
            id,
            u32::try_from(data.len()).expect("chunks are at most 256 KiB"),
        ));
        Ok(())
    }

    /// Stores the file object.
    fn finish(self) -> Result<(FileId, u64, IngestStats)> {
        let Ingest {
            store,
            whole,
            stats,
            list,
            ..
        } = self;
        let id = FileId(*whole.finalize().as_bytes());
        let object = FileObject {
            id,
            size: stats.bytes_read,
            chunks: list,
        };
        // Held back ones aside (see `Db::write_deferred`): asking would write them first.
        let files = store.db.table(keys::CF_FILES);
        if !files.contains_written(id.as_bytes())? {
            store.db.put_file_object(id.as_bytes(), object.encode())?;
        }
        store
            .ingested
            .0
            .fetch_add(stats.bytes_read, Ordering::Relaxed);
        store
            .ingested
            .1
            .fetch_add(stats.new_bytes, Ordering::Relaxed);
        Ok((id, stats.bytes_read, stats))
    }
}

/// What garbage collection removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Snapshots removed.
    pub snapshots: u64,
    /// Trees removed.
    pub trees: u64,
    /// File objects removed.
    pub files: u64,
    /// Chunks removed.
    pub chunks: u64,
}

/// A content-addressed store in one RocksDB database.
#[derive(Debug)]
pub struct Store {
    db: Db,
    chunker: ChunkerParams,
    /// Bytes ingested and bytes of new chunks stored since the store was opened.
    ingested: (AtomicU64, AtomicU64),
}

impl Store {
    /// Creates a new store at `path` (a directory that must not hold a store yet).
    ///
    /// # Errors
    /// [`ObjectError::Db`] if the database cannot be created.
    pub fn create(path: &Path) -> Result<Store> {
        let db = Db::open(path, true)?;
        let chunker = ChunkerParams::DEFAULT;
        let mut batch = Batch::new();
        batch.put(
            keys::CF_META,
            keys::META_FORMAT,
            &FORMAT_VERSION.to_le_bytes(),
        );
        let mut params = Vec::new();
        for v in [chunker.min, chunker.avg, chunker.max] {
            params.extend_from_slice(&v.to_le_bytes());
        }
        batch.put(keys::CF_META, keys::META_CHUNKER, &params);
        db.write(batch, true)?;
        Ok(Store {
            db,
            chunker,
            ingested: Default::default(),
        })
    }

    /// Opens an existing store, refusing another format version.
    ///
    /// # Errors
    /// [`ObjectError::Db`] if it cannot be opened, [`ObjectError::Format`] for another version.
    pub fn open(path: &Path) -> Result<Store> {
        Self::with_db(Db::open(path, false)?, path)
    }

    /// Opens an existing store for reading only (beside a process writing to it).
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_read_only(path: &Path) -> Result<Store> {
        Self::with_db(Db::open_read_only(path)?, path)
    }

    fn with_db(db: Db, path: &Path) -> Result<Store> {
        let meta = db.table(keys::CF_META);
        let found = meta
            .get(keys::META_FORMAT)?
            .and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok())
            .map(u32::from_le_bytes)
            .unwrap_or(0);
        if found != FORMAT_VERSION {
            return Err(ObjectError::Format {
                path: path.to_path_buf(),
                found,
                expected: FORMAT_VERSION,
            });
        }
        let chunker = match meta.get(keys::META_CHUNKER)? {
            Some(v) if v.len() == 12 => {
                let word =
                    |i: usize| u32::from_le_bytes(v[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
                ChunkerParams {
                    min: word(0),
                    avg: word(1),
                    max: word(2),
                }
            }
            _ => {
                return Err(ObjectError::Decode {
                    what: "store metadata".into(),
                    detail: "chunker parameters missing or malformed".into(),
                })
            }
        };
        if !chunker.valid() {
            return Err(ObjectError::Decode {
                what: "store metadata".into(),
                detail: format!("chunker parameters out of range: {chunker:?}"),
            });
        }
        Ok(Store {
            db,
            chunker,
            ingested: Default::default(),
        })
    }

    /// The underlying database (for the engine's tables and batches).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// One of the engine's tables.
    pub fn table(&self, cf: &'static str) -> Table<'_> {
        self.db.table(cf)
    }

    /// Applies a batch atomically and durably.
    ///
    /// # Errors
    /// [`ObjectError::Db`] on a RocksDB failure.
    pub fn commit(&self, batch: Batch) -> Result<()> {
        self.db.write(batch, true)
    }

    /// Applies a batch atomically, not synced: a crash may lose all of it, never part.
    ///
    /// # Errors
    /// [`ObjectError::Db`] on a RocksDB failure.
    pub fn write_unsynced(&self, batch: Batch) -> Result<()> {
        self.db.write(batch, false)
    }

    // ---- chunks and files ----

    /// Chunks `source`, stores the chunks it does not have yet and the file object, and
    /// returns the file's id and size.
    ///
    /// A big source is cut on this thread while a second one hashes and stores its chunks
    /// (the chunk ids and the whole-file hash are two blake3 passes over every byte, about
    /// as much work as the cutting), a block of chunks at a time ([`crate::chunker::Blocks`]):
    /// a source that ends within its first block is handled here, so a small file costs
    /// no thread.
    ///
    /// # Errors
    /// [`ObjectError::Read`] if the source fails, [`ObjectError::Db`] on a store failure.
    pub fn ingest(&self, source: impl Read) -> Result<(FileId, u64, IngestStats)> {
        self.ingest_expecting(source, 0)
    }

    /// [`Store::ingest`] of a source expected to hold `len` bytes (a file's size as
    /// listed): its first block is read in one call (see
    /// [`ChunkerParams::blocks_expecting`]). The id is the content's, whatever it holds.
    ///
    /// # Errors
    /// As [`Store::ingest`].
    pub fn ingest_expecting(
        &self,
        source: impl Read,
        len: u64,
    ) -> Result<(FileId, u64, IngestStats)> {
        let mut blocks = self.chunker.blocks_expecting(source, len);
        let mut state = Ingest::new(self);
        let Some(first) = blocks.next_block().map_err(ObjectError::Read)? else {
            return state.finish();
        };
        state.whole.update(first.bytes());
        if blocks.ended() {
            first.chunks().try_for_each(|c| state.add_chunk(c))?;
            return state.finish();
        }
        // From here the whole-file hash is made on this thread, beside the cutting, and
        // the blocks' buffers come back to be read into again. A block is handed over only
        // when the worker is ready for it: two buffers per big file (a first copy reads
        // sixteen at once), one filled while the other is stored.
        let mut whole = std::mem::take(&mut state.whole);
        let state = std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Block>(0);
            let (back, spare) = std::sync::mpsc::channel::<Block>();
            let worker = s.spawn(move || -> Result<Ingest<'_>> {
                for block in rx {
                    block.chunks().try_for_each(|c| state.add_chunk(c))?;
                    let _ = back.send(block);
                }
                Ok(state)
            });
            let mut next = Some(first);
            let mut failed = None;
            while let Some(block) = next.take() {
                // A send fails only when the worker stopped on an error: it says which.
                if tx.send(block).is_err() {
                    break;
                }
                if let Ok(used) = spare.try_recv() {
                    blocks.recycle(used);
                }
                match blocks.next_block() {
                    Ok(Some(block)) => {
                        whole.update(block.bytes());
                        next = Some(block);
                    }
                    Ok(None) => {}
                    Err(e) => failed = Some(ObjectError::Read(e)),
                }
            }
            drop(tx);
            // A store failure is said first: it ends the run, where a read failure is the
            // source's own.
            let state = worker.join().expect("the ingest worker does not panic")?;
            match failed {
                Some(e) => Err(e),
                None => Ok(state),
            }
        })?;
        Ingest { whole, ..state }.finish()
    }

    /// Stores several contents held in memory (small files read whole) in one write to the
    /// database instead of a write per chunk and per file: the chunks it does not hold yet,
    /// without the write-ahead log, and the file objects, held back until those chunks are
    /// flushed ([`crate::db::Db::write_deferred`]). The ids are those [`Store::ingest`]
    /// gives, in order.
    ///
    /// # Errors
    /// [`ObjectError::Db`] on a store failure.
    pub fn ingest_many(&self, contents: &[&[u8]]) -> Result<Vec<FileId>> {
        let chunks_table = self.db.table(keys::CF_CHUNKS);
        let files = self.db.table(keys::CF_FILES);
        let mut batch = Batch::new();
        let mut queued = std::collections::HashSet::new();
        let mut ids = Vec::with_capacity(contents.len());
        let (mut read, mut stored) = (0u64, 0u64);
        let mut queue_chunk = |data: &[u8], list: &mut Vec<(ChunkId, u32)>| -> Result<()> {
            let id = ChunkId::of(data);
            if !queued.contains(&id.0) && !chunks_table.contains(id.as_bytes())? {
                batch.put(keys::CF_CHUNKS, id.as_bytes(), data);
                queued.insert(id.0);
                stored += data.len() as u64;
            }
            list.push((
                id,
                u32::try_from(data.len()).expect("chunks are at most 256 KiB"),
            ));
            Ok(())
        };
        let mut objects = Vec::with_capacity(contents.len());
        for content in contents {
            let mut list = Vec::new();
            let id = if content.is_empty() {
                FileId::of(content)
            } else if content.len() < self.chunker.min as usize {
                // One chunk, the whole file: its id is the file's (both are its blake3).
                queue_chunk(content, &mut list)?;
                FileId(list[0].0 .0)
            } else {
                for cut in self.chunker.cuts(content) {
                    queue_chunk(&content[cut], &mut list)?;
                }
                FileId::of(content)
            };
            read += content.len() as u64;
            ids.push(id);
            objects.push(FileObject {
                id,
                size: content.len() as u64,
                chunks: list,
            });
        }
        // The chunks go without the log; the file objects wait for a flush of them (see
        // `Db::write_deferred`). One held back already is written again: the same bytes.
        let mut seen = std::collections::HashSet::new();
        let mut deferred = Vec::new();
        for object in objects {
            if seen.insert(object.id.0) && !files.contains_written(object.id.as_bytes())? {
                deferred.push((object.id.as_bytes().to_vec(), object.encode()));
            }
        }
        if !batch.is_empty() || !deferred.is_empty() {
            self.db.write_deferred(batch, deferred)?;
        }
        self.ingested.0.fetch_add(read, Ordering::Relaxed);
        self.ingested.1.fetch_add(stored, Ordering::Relaxed);
        Ok(ids)
    }

    /// Since the store was opened: bytes ingested (read, chunked and hashed) and bytes of new
    /// chunks stored (before compression).
    pub fn ingested(&self) -> (u64, u64) {
        (
            self.ingested.0.load(Ordering::Relaxed),
            self.ingested.1.load(Ordering::Relaxed),
        )
    }

    /// Stores a byte slice as a file.
    ///
    /// # Errors
    /// As [`Store::ingest`].
    pub fn ingest_bytes(&self, bytes: &[u8]) -> Result<FileId> {
        Ok(self.ingest(bytes)?.0)
    }

    /// True when the file object is present, and so its chunks: they are stored before it,
    /// and garbage collection removes a chunk only in the batch that removes the last file
    /// object naming it. Not verified (reads are; `fsck` checks every chunk), and cheap:
    /// the scans ask it for every unchanged file, and reading the chunks (values in blob
    /// files) to learn that they exist would read the whole cache.
    ///
    /// # Errors
    /// [`ObjectError::Db`] on a store failure.
    pub fn has_file(&self, id: FileId) -> Result<bool> {
        self.db.table(keys::CF_FILES).contains(id.as_bytes())
    }

    /// [`Store::has_file`] for many ids at once, given in ascending order: each block of
    /// the file objects' table is read once.
    ///
    /// # Errors
    /// [`ObjectError::Db`] on a store failure.
    pub fn has_files_sorted(&self, ids: &[FileId]) -> Result<Vec<bool>> {
        let keys: Vec<&[u8]> = ids.iter().map(|id| id.as_bytes().as_slice()).collect();
        self.db.table(keys::CF_FILES).contains_sorted(&keys)
    }

    /// The file object for `id`, if present.
    ///
    /// # Errors
    /// [`ObjectError::Db`], or [`ObjectError::Decode`] if it is malformed.
    pub fn file_object(&self, id: FileId) -> Result<Option<FileObject>> {
        match self.db.table(keys::CF_FILES).get(id.as_bytes())? {
            Some(bytes) => Ok(Some(FileObject::decode(id, &bytes)?)),
            None => Ok(None),
        }
    }

    /// One chunk, verified against its id.
    ///
    /// # Errors
    /// [`ObjectError::MissingChunk`], [`ObjectError::CorruptChunk`], [`ObjectError::Db`].
    pub fn chunk(&self, id: ChunkId) -> Result<Vec<u8>> {
        let data = self
            .db
            .table(keys::CF_CHUNKS)
            .get(id.as_bytes())?
            .ok_or(ObjectError::MissingChunk(id))?;
        if ChunkId::of(&data) != id {
            return Err(ObjectError::CorruptChunk(id));
        }
        Ok(data)
    }

    /// Writes a file's content to `out`, verifying every chunk and the whole-file hash.
    ///
    /// Bytes are written as they are verified chunk by chunk; if the final whole-file hash
    /// does not match, the error says so and the caller must discard what it wrote (the engine
    /// writes to a temporary file and renames only on success).
    ///
    /// # Errors
    /// [`ObjectError::MissingFile`], chunk errors, [`ObjectError::CorruptFile`],
    /// [`ObjectError::Write`].
    pub fn read_file(&self, id: FileId, out: &mut impl Write) -> Result<u64> {
        let object = self.file_object(id)?.ok_or(ObjectError::MissingFile(id))?;
        // A file of one chunk whose id is the file's: the chunk's check is the whole file's
        // (both are the blake3 of the same bytes), so it is hashed once.
        let one_chunk = matches!(object.chunks[..], [(cid, _)] if cid.0 == id.0);
        let mut whole = blake3::Hasher::new();
        for (cid, len) in &object.chunks {
            let data = self.chunk(*cid)?;
            if data.len() != *len as usize {
                return Err(ObjectError::CorruptFile {
                    id,
                    detail: format!(
                        "chunk {} has {} bytes, expected {len}",
                        cid.short(),
                        data.len()
                    ),
                });
            }
            if !one_chunk {
                whole.update(&data);
            }
            out.write_all(&data).map_err(ObjectError::Write)?;
        }
        if !one_chunk && FileId(*whole.finalize().as_bytes()) != id {
            return Err(ObjectError::CorruptFile {
                id,
                detail: "content does not hash to the file's id".into(),
            });
        }
        Ok(object.size)
    }

    /// Reads a file's content and checks it (every chunk against its id, the whole against the
    /// file's id), writing it nowhere.
    ///
    /// # Errors
    /// As [`Store::read_file`].
    pub fn verify_file(&self, id: FileId) -> Result<()> {
        self.read_file(id, &mut std::io::sink()).map(|_| ())
    }

    /// Repairs the file `id` from `source`, a copy of its content found elsewhere (the
    /// workspace, the remote): the copy is chunked, every chunk of it that is missing or
    /// damaged in the store is written again as it goes (a chunk is named by its own hash,
    /// so writing it is right whatever the copy turns out to be), and, if the whole copy
    /// hashes to `id`, the file object is written too. Returns false, writing no file
    /// object, when the copy is not `id`'s content.
    ///
    /// # Errors
    /// [`ObjectError::Read`] if the source fails, [`ObjectError::Db`] on a store failure.
    pub fn repair_file(&self, id: FileId, source: impl Read) -> Result<bool> {
        let chunks_table = self.db.table(keys::CF_CHUNKS);
        let mut whole = blake3::Hasher::new();
        let mut list = Vec::new();
        let mut size = 0u64;
        for chunk in self.chunker.chunks(source) {
            let data = chunk.map_err(ObjectError::Read)?;
            whole.update(&data);
            size += data.len() as u64;
            let cid = ChunkId::of(&data);
            list.push((
                cid,
                u32::try_from(data.len()).expect("chunks are at most 256 KiB"),
            ));
            // A read error (RocksDB's own checksum caught the damage) is damage too.
            let intact =
                matches!(chunks_table.get(cid.as_bytes()), Ok(Some(v)) if ChunkId::of(&v) == cid);
            if !intact {
                chunks_table.put(cid.as_bytes(), &data)?;
            }
        }
        if FileId(*whole.finalize().as_bytes()) != id {
            return Ok(false);
        }
        let mut batch = Batch::new();
        let object = FileObject {
            id,
            size,
            chunks: list,
        };
        batch.put(keys::CF_FILES, id.as_bytes(), &object.encode());
        self.commit(batch)?;
        Ok(true)
    }

    /// A file's whole content, verified.
    ///
    /// # Errors
    /// As [`Store::read_file`].
    pub fn read_file_bytes(&self, id: FileId) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_file(id, &mut out)?;
        Ok(out)
    }

    // ---- trees and snapshots ----

    /// Stores a tree (if new) and returns its id.
    ///
    /// # Errors
    /// [`ObjectError::Db`].
    pub fn put_tree(&self, tree: &Tree) -> Result<TreeId> {
        let bytes = tree.encode();
        let id = TreeId::of(&bytes);
        let table = self.db.table(keys::CF_TREES);
        if !table.contains(id.as_bytes())? {
            table.put(id.as_bytes(), &bytes)?;
        }
        Ok(id)
    }

    /// Reads a tree, verified against its id.
    ///
    /// # Errors
    /// [`ObjectError::MissingTree`], [`ObjectError::Decode`] (also when the hash differs).
    pub fn tree(&self, id: TreeId) -> Result<Tree> {
        let bytes = self
            .db
            .table(keys::CF_TREES)
            .get(id.as_bytes())?
            .ok_or(ObjectError::MissingTree(id))?;
        if TreeId::of(&bytes) != id {
            return Err(ObjectError::Decode {
                what: format!("tree {}", id.short()),
                detail: "bytes do not match the tree's hash".into(),
            });
        }
        Tree::decode(&bytes)
    }

    /// Stores a snapshot and returns its id.
    ///
    /// # Errors
    /// [`ObjectError::Db`].
    pub fn put_snapshot(&self, snapshot: &Snapshot) -> Result<SnapshotId> {
        let bytes = snapshot.encode();
        let id = SnapshotId::of(&bytes);
        self.db
            .table(keys::CF_SNAPSHOTS)
            .put(id.as_bytes(), &bytes)?;
        Ok(id)
    }

    /// Reads a snapshot, verified against its id.
    ///
    /// # Errors
    /// [`ObjectError::MissingSnapshot`], [`ObjectError::Decode`].
    pub fn snapshot(&self, id: SnapshotId) -> Result<Snapshot> {
        let bytes = self
            .db
            .table(keys::CF_SNAPSHOTS)
            .get(id.as_bytes())?
            .ok_or(ObjectError::MissingSnapshot(id))?;
        if SnapshotId::of(&bytes) != id {
            return Err(ObjectError::Decode {
                what: format!("snapshot {}", id.short()),
                detail: "bytes do not match the snapshot's hash".into(),
            });
        }
        Snapshot::decode(&bytes)
    }

    /// The snapshot a ref names.
    ///
    /// # Errors
    /// [`ObjectError::Db`], [`ObjectError::Decode`] for a malformed ref.
    pub fn get_ref(&self, name: &str) -> Result<Option<SnapshotId>> {
        match self.db.table(keys::CF_REFS).get(name.as_bytes())? {
            Some(v) => SnapshotId::from_slice(&v)
                .map(Some)
                .ok_or_else(|| ObjectError::Decode {
                    what: format!("ref {name}"),
                    detail: "not a 32-byte id".into(),
                }),
            None => Ok(None),
        }
    }

    /// Adds "set ref `name` to `id`" to a batch (applied with [`Store::commit`]).
    pub fn set_ref_in(batch: &mut Batch, name: &str, id: SnapshotId) {
        batch.put(keys::CF_REFS, name.as_bytes(), id.as_bytes());
    }

    /// Every ref.
    ///
    /// # Errors
    /// [`ObjectError::Db`].
    pub fn refs(&self) -> Result<Vec<(String, SnapshotId)>> {
        let mut out = Vec::new();
        for (k, v) in self.db.table(keys::CF_REFS).scan_prefix(b"")? {
            if let (Ok(name), Some(id)) = (String::from_utf8(k), SnapshotId::from_slice(&v)) {
                out.push((name, id));
            }
        }
        Ok(out)
    }

    // ---- flat views ----

    /// Writes a flat map of paths (relative, `/`-separated bytes, no leading slash) to entries
    /// as trees, bottom-up, and returns the root tree's id. Directory entries' `tree` fields are
    /// filled in; a path whose parent is missing from the map gets no parent entry metadata
    /// (its parent directory is created with mode 0o755).
    ///
    /// # Errors
    /// [`ObjectError::Db`].
    pub fn write_flat(&self, flat: &crate::Flat) -> Result<TreeId> {
        // Ancestors the map does not hold get a default directory entry.
        let mut implicit: BTreeMap<Vec<u8>, Entry> = BTreeMap::new();
        for path in flat.keys() {
            let mut p = split_parent(path).0;
            while !p.is_empty() && !flat.contains_key(p) && !implicit.contains_key(p) {
                let (parent, name) = split_parent(p);
                let mut e = Entry::new(name, EntryKind::Dir);
                e.mode = 0o755;
                implicit.insert(p.to_vec(), e);
                p = parent;
            }
        }
        // Children grouped by parent path, borrowed: an entry is copied only into its own
        // directory's tree, one directory at a time (the grouping copied every entry and made
        // a path per ancestor per entry: 106 ms for 100,000 files, twice per first copy).
        let mut children: BTreeMap<&[u8], Vec<&Entry>> = BTreeMap::new();
        children.insert(&[], Vec::new());
        for (path, entry) in flat.iter().chain(&implicit) {
            if entry.kind == EntryKind::Dir {
                children.entry(path.as_slice()).or_default();
            }
            children
                .entry(split_parent(path).0)
                .or_default()
                .push(entry);
        }
        // Deepest directories first: a directory's tree is built after all its descendants.
        let mut dirs: Vec<&[u8]> = children.keys().copied().collect();
        dirs.sort_by_key(|p| std::cmp::Reverse(depth(p)));
        let mut built: HashMap<Vec<u8>, TreeId> = HashMap::with_capacity(dirs.len());
        for dir in dirs {
            let mut entries: Vec<Entry> = children
                .remove(dir)
                .unwrap_or_default()
                .into_iter()
                .cloned()
                .collect();
            for e in entries.iter_mut() {
                if e.kind == EntryKind::Dir {
                    let child = join(dir, &e.name);
                    e.tree = Some(Box::new(
                        *built
                            .get(&child)
                            .expect("children are built before parents"),
                    ));
                }
            }
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            let id = self.put_tree(&Tree { entries })?;
            built.insert(dir.to_vec(), id);
        }
        Ok(*built.get(&Vec::new()).expect("the root is always built"))
    }

    /// Reads a tree recursively into a flat map of path → entry (see [`Store::write_flat`]).
    /// A flat map is keyed by path, so directories come back without their subtree ids, as
    /// scans make them: reading back what [`Store::write_flat`] wrote gives the same map.
    ///
    /// # Errors
    /// Tree read errors.
    pub fn read_flat(&self, root: TreeId) -> Result<crate::Flat> {
        // Gathered in path order: the list is the tree, no sort of the whole is needed (a
        // fifth of reading the base of 100,000 files).
        Ok(crate::Flat::from_vec(self.read_sorted(root)?))
    }

    /// Every entry under `root` with its path, in path order, read in that order: a
    /// directory's subtree is visited where `name/` sorts among its siblings, not right after
    /// `name` (`a.txt` comes before `a/x`: `.` < `/`).
    fn read_sorted(&self, root: TreeId) -> Result<Vec<(Vec<u8>, Entry)>> {
        let mut out = Vec::new();
        let mut stack = vec![Pending::Subtree(Vec::new(), root)];
        let mut here = Vec::new();
        while let Some(item) = stack.pop() {
            let (prefix, id) = match item {
                Pending::Entry(path, entry) => {
                    out.push((path, entry));
                    continue;
                }
                Pending::Subtree(prefix, id) => (prefix, id),
            };
            for mut entry in self.tree(id)?.entries {
                let path = join(&prefix, &entry.name);
                if let Some(t) = entry.tree.take() {
                    here.push(Pending::Subtree(path.clone(), *t));
                }
                here.push(Pending::Entry(path, entry));
            }
            // Last first: the stack gives back the smallest next.
            here.sort_unstable_by(|a, b| b.key().cmp(a.key()));
            stack.append(&mut here);
        }
        Ok(out)
    }

    /// The entry at `path` (as in [`Store::write_flat`]) under the tree `root`, as
    /// [`Store::read_flat`] gives it, reading only the trees on the way to it: a tree per
    /// directory in the path. `None` when nothing is there.
    ///
    /// # Errors
    /// Tree read errors.
    pub fn entry_at(&self, root: TreeId, path: &[u8]) -> Result<Option<Entry>> {
        let mut tree = root;
        let mut names = path.split(|&b| b == b'/').peekable();
        while let Some(name) = names.next() {
            let mut entries = self.tree(tree)?.entries;
            let Ok(i) = entries.binary_search_by(|e| e.name.as_slice().cmp(name)) else {
                return Ok(None);
            };
            let mut entry = entries.swap_remove(i);
            match (names.peek(), entry.tree.take()) {
                (None, _) => return Ok(Some(entry)),
                (Some(_), Some(subtree)) => tree = *subtree,
                (Some(_), None) => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The entries of the directory `dir` (the root when empty) under the tree `root`, with
    /// their subtree ids, reading only the trees on the way to it. `None` when no directory
    /// is there.
    ///
    /// # Errors
    /// Tree read errors.
    pub fn children_at(&self, root: TreeId, dir: &[u8]) -> Result<Option<Vec<Entry>>> {
        let mut tree = root;
        if !dir.is_empty() {
            for name in dir.split(|&b| b == b'/') {
                let entries = self.tree(tree)?.entries;
                let Ok(i) = entries.binary_search_by(|e| e.name.as_slice().cmp(name)) else {
                    return Ok(None);
                };
                match entries[i].tree.as_deref() {
                    Some(&subtree) => tree = subtree,
                    None => return Ok(None),
                }
            }
        }
        Ok(Some(self.tree(tree)?.entries))
    }

    /// The root tree of the snapshot a ref names (`None` if the ref is unset).
    ///
    /// # Errors
    /// Ref and snapshot read errors.
    pub fn ref_root(&self, name: &str) -> Result<Option<TreeId>> {
        match self.get_ref(name)? {
            Some(id) => Ok(Some(self.snapshot(id)?.root)),
            None => Ok(None),
        }
    }

    /// The flat map of the snapshot a ref names (empty if the ref is unset).
    ///
    /// # Errors
    /// Ref, snapshot and tree read errors.
    pub fn read_ref_flat(&self, name: &str) -> Result<crate::Flat> {
        match self.ref_root(name)? {
            Some(root) => self.read_flat(root),
            None => Ok(crate::Flat::new()),
        }
    }

    // ---- garbage collection ----

    /// Removes every object not reachable from the refs or from `extra_files` (file objects
    /// the engine keeps outside trees, such as conflict variants). Snapshots are kept only
    /// when a ref names them: parents are history, and the journal keeps history.
    ///
    /// # Errors
    /// Read errors of reachable objects (gc refuses to run on a damaged store: run fsck).
    pub fn gc(&self, extra_files: &[FileId]) -> Result<GcReport> {
        self.gc_except(extra_files, &std::collections::HashSet::new())
    }

    /// [`Store::gc`], also removing the content of the files in `collectable` although trees
    /// name them (the engine's remote-only files: their content may leave the cache).
    ///
    /// # Errors
    /// As [`Store::gc`].
    pub fn gc_except(
        &self,
        extra_files: &[FileId],
        collectable: &std::collections::HashSet<FileId>,
    ) -> Result<GcReport> {
        self.gc_keeping(&[], extra_files, collectable)
    }

    /// [`Store::gc_except`], also keeping the snapshots `extra_snapshots` and everything
    /// they reach (the engine's history, for restoring older versions); one of them already
    /// gone is passed over.
    ///
    /// # Errors
    /// As [`Store::gc`].
    pub fn gc_keeping(
        &self,
        extra_snapshots: &[SnapshotId],
        extra_files: &[FileId],
        collectable: &std::collections::HashSet<FileId>,
    ) -> Result<GcReport> {
        let mut live_snapshots = std::collections::HashSet::new();
        let mut live_trees = std::collections::HashSet::new();
        let mut live_files: std::collections::HashSet<FileId> =
            extra_files.iter().copied().collect();
        let mut roots: Vec<SnapshotId> = self.refs()?.into_iter().map(|(_, sid)| sid).collect();
        for &sid in extra_snapshots {
            if self.snapshot(sid).is_ok() {
                roots.push(sid);
            }
        }
        for sid in roots {
            if !live_snapshots.insert(sid) {
                continue;
            }
            let snap = self.snapshot(sid)?;
            let mut stack = vec![snap.root];
            while let Some(t) = stack.pop() {
                if !live_trees.insert(t) {
                    continue;
                }
                for e in self.tree(t)?.entries {
                    if let Some(sub) = e.tree {
                        stack.push(*sub);
                    }
                    if let Some(f) = e.file {
                        if !collectable.contains(&f) {
                            live_files.insert(f);
                        }
                    }
                }
            }
        }
        let mut live_chunks = std::collections::HashSet::new();
        for f in &live_files {
            if let Some(object) = self.file_object(*f)? {
                live_chunks.extend(object.chunks.iter().map(|(c, _)| *c));
            }
        }
        let mut report = GcReport::default();
        let mut batch = Batch::new();
        let mut sweep = |cf: &'static str, live: &dyn Fn(&[u8]) -> bool, count: &mut u64| {
            self.db.table(cf).for_each_prefix(b"", |k, _| {
                if !live(k) {
                    batch.delete(cf, k);
                    *count += 1;
                }
                true
            })
        };
        sweep(
            keys::CF_SNAPSHOTS,
            &|k| SnapshotId::from_slice(k).is_some_and(|id| live_snapshots.contains(&id)),
            &mut report.snapshots,
        )?;
        sweep(
            keys::CF_TREES,
            &|k| TreeId::from_slice(k).is_some_and(|id| live_trees.contains(&id)),
            &mut report.trees,
        )?;
        sweep(
            keys::CF_FILES,
            &|k| FileId::from_slice(k).is_some_and(|id| live_files.contains(&id)),
            &mut report.files,
        )?;
        sweep(
            keys::CF_CHUNKS,
            &|k| ChunkId::from_slice(k).is_some_and(|id| live_chunks.contains(&id)),
            &mut report.chunks,
        )?;
        crate::failpoint::hit("gc-before-commit");
        self.commit(batch)?;
        // Also after a gc whose compaction was interrupted: nothing else reclaims the
        // space of its chunks (everyday compactions leave blob files alone).
        if report.chunks > 0 || self.db.blob_garbage()? > 0 {
            crate::failpoint::hit("gc-before-compact");
            self.db.compact()?;
        }
        Ok(report)
    }
}

/// Splits `a/b/c` into (`a/b`, `c`); a top-level name has an empty parent.
pub fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// What [`Store::read_flat`] has still to do, in the order of the paths it stands for.
enum Pending {
    /// An entry to give out at its path.
    Entry(Vec<u8>, Entry),
    /// A directory's subtree to read, at the path with a `/` after it.
    Subtree(Vec<u8>, TreeId),
}

impl Pending {
    /// Where it sorts: its path, and for a subtree a `/` after it (every path in it begins
    /// so, and no name holds a `/`).
    fn key(&self) -> impl Iterator<Item = &u8> + '_ {
        let (path, slash) = match self {
            Pending::Entry(path, _) => (path, None),
            Pending::Subtree(path, _) => (path, Some(&b'/')),
        };
        path.iter().chain(slash)
    }
}

/// Joins a parent path and a name.
pub fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        return name.to_vec();
    }
    let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
    p.extend_from_slice(parent);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

fn depth(path: &[u8]) -> usize {
    if path.is_empty() {
        0
    } else {
        1 + path.iter().filter(|&&b| b == b'/').count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_entry(store: &Store, name: &[u8], content: &[u8]) -> Entry {
        let mut e = Entry::new(name, EntryKind::File);
        e.file = Some(store.ingest_bytes(content).expect("ingest"));
        e.size = content.len() as u64;
        e.mode = 0o644;
        e
    }

    fn bytes_under(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .expect("list the store")
            .map(|e| e.expect("entry").metadata().expect("stat").len())
            .sum()
    }

    #[test]
    fn contents_stored_together_get_the_ids_and_objects_of_contents_stored_one_by_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let together = Store::create(&dir.path().join("a")).expect("create");
        let alone = Store::create(&dir.path().join("b")).expect("create");
        let noise = |n: usize, seed: u32| -> Vec<u8> {
            (0..n as u32)
                .map(|i| ((i ^ seed).wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect()
        };
        // Empty; one chunk; exactly the smallest chunk; several chunks; the same twice.
        let min = ChunkerParams::DEFAULT.min as usize;
        let contents = [
            Vec::new(),
            b"hello".to_vec(),
            noise(min - 1, 1),
            noise(min, 2),
            noise(600_000, 3),
            b"hello".to_vec(),
            noise(600_000, 3),
            // Several blocks (`chunker::BLOCK`): `ingest` cuts it on one thread and stores
            // it on a second.
            noise(3_500_000, 4),
        ];
        let slices: Vec<&[u8]> = contents.iter().map(Vec::as_slice).collect();
        let ids = together.ingest_many(&slices).expect("ingest");
        assert_eq!(ids.len(), contents.len());
        for (content, id) in contents.iter().zip(&ids) {
            assert_eq!(alone.ingest_bytes(content).expect("ingest"), *id);
            assert_eq!(
                together.file_object(*id).expect("read"),
                alone.file_object(*id).expect("read"),
            );
            assert_eq!(together.read_file_bytes(*id).expect("read"), *content);
        }
        assert!(
            together
                .file_object(ids[4])
                .expect("read")
                .expect("there")
                .chunks
                .len()
                > 1,
            "the big one was cut"
        );
        // What both stores were given, counted once per new chunk.
        assert_eq!(together.ingested(), alone.ingested());
    }

    #[test]
    fn a_gc_whose_compaction_was_cut_short_is_reclaimed_by_the_next_gc() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s");
        let store = Store::create(&path).expect("create");
        let noise = |seed: u32| -> Vec<u8> {
            (0..1_000_000u32)
                .flat_map(|i| (i ^ seed).wrapping_mul(2_654_435_761).to_le_bytes())
                .collect()
        };
        // In the same blob file: one file kept (gc is told to keep it), one dropped.
        let kept = store.ingest_bytes(&noise(3)).expect("ingest");
        let id = store.ingest_bytes(&noise(4)).expect("ingest");
        store.db.flush().expect("flush");
        let before = bytes_under(&path);
        // What a gc killed before its compaction leaves: the records gone, the blobs not.
        let object = store.file_object(id).expect("read").expect("there");
        let mut b = Batch::new();
        b.delete(keys::CF_FILES, id.as_bytes());
        for (c, _) in &object.chunks {
            b.delete(keys::CF_CHUNKS, c.as_bytes());
        }
        store.commit(b).expect("delete");
        store.db.flush().expect("flush");
        store.db.compact_as_every_day();
        let kept_blobs = bytes_under(&path);
        assert!(
            kept_blobs > before * 3 / 4,
            "everyday compactions keep the blobs: {kept_blobs} of {before}"
        );
        assert!(store.db.blob_garbage().expect("garbage") > 3_000_000);

        let report = store.gc(&[kept]).expect("gc");
        assert_eq!(report.chunks, 0, "nothing left to delete: {report:?}");
        let after = bytes_under(&path);
        assert!(
            after < before * 2 / 3,
            "{after} bytes after gc (from {before})"
        );
        assert_eq!(store.db.blob_garbage().expect("garbage"), 0);
        assert_eq!(store.read_file_bytes(kept).expect("kept"), noise(3));
    }

    #[test]
    fn gc_gives_the_space_of_removed_chunks_back_and_keeps_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s");
        let store = Store::create(&path).expect("create");
        let noise = |seed: u32| -> Vec<u8> {
            (0..1_000_000u32)
                .flat_map(|i| (i ^ seed).wrapping_mul(2_654_435_761).to_le_bytes())
                .collect()
        };
        // Two files of 4 MB that lz4 cannot shrink much; only the first stays referenced.
        let kept = noise(1);
        let mut tree = crate::Flat::new();
        tree.insert(b"kept".to_vec(), file_entry(&store, b"kept", &kept));
        store.ingest_bytes(&noise(2)).expect("ingest the other");
        let root = store.write_flat(&tree).expect("tree");
        let snap = store
            .put_snapshot(&Snapshot {
                root,
                parent: None,
                time_ns: 0,
                description: "test".into(),
            })
            .expect("snapshot");
        let mut b = Batch::new();
        Store::set_ref_in(&mut b, keys::REF_BASE, snap);
        store.commit(b).expect("ref");
        store.db.flush().expect("flush");
        let before = bytes_under(&path);
        assert!(before > 7_000_000, "{before} bytes before gc");

        let report = store.gc(&[]).expect("gc");
        assert!(report.chunks > 0, "{report:?}");
        let after = bytes_under(&path);
        assert!(after < 5_500_000, "{after} bytes after gc (from {before})");
        assert_eq!(
            store
                .read_file_bytes(
                    tree.get(b"kept".as_slice())
                        .expect("kept")
                        .file
                        .expect("id")
                )
                .expect("read the kept file"),
            kept
        );
    }

    #[test]
    fn a_source_failing_after_its_first_block_fails_the_ingest() {
        struct FailsLate(usize);
        impl Read for FailsLate {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    return Err(std::io::Error::other("the share went away"));
                }
                let n = buf.len().min(self.0);
                buf[..n].fill(7);
                self.0 -= n;
                Ok(n)
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::create(&dir.path().join("s")).expect("create");
        // Past the first block: the cutting goes on beside the storing thread.
        let failed = store.ingest(FailsLate(crate::chunker::BLOCK * 5 / 2));
        assert!(
            matches!(&failed, Err(ObjectError::Read(e)) if e.to_string() == "the share went away"),
            "{failed:?}"
        );
    }

    #[test]
    fn ingest_read_back_and_dedup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::create(&dir.path().join("s")).expect("create");
        let data: Vec<u8> = (0..1_000_000u32)
            .flat_map(|i| i.wrapping_mul(7919).to_le_bytes())
            .collect();
        let (id, size, stats) = store.ingest(&data[..]).expect("ingest");
        assert_eq!(size, data.len() as u64);
        assert!(stats.new_chunks > 1);
        let (_, _, again) = store.ingest(&data[..]).expect("ingest again");
        assert_eq!(again.new_chunks, 0);
        assert_eq!(store.read_file_bytes(id).expect("read"), data);
    }

    #[test]
    fn file_objects_held_back_are_written_before_anyone_reads_or_names_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s");
        let contents: Vec<Vec<u8>> = (0..10u32)
            .map(|i| (0..3_000 + i * 1_000).map(|j| (j * 31 + i) as u8).collect())
            .collect();
        let slices: Vec<&[u8]> = contents.iter().map(Vec::as_slice).collect();
        fn files(store: &Store) -> Table<'_> {
            store.table(keys::CF_FILES)
        }
        {
            let store = Store::create(&path).expect("create");
            let ids = store.ingest_many(&slices).expect("ingest");
            // Held back: not written yet, but a reader finds them (asking writes them).
            assert!(!files(&store)
                .contains_written(ids[0].as_bytes())
                .expect("ask"));
            assert_eq!(store.read_file_bytes(ids[3]).expect("read"), contents[3]);
            assert!(files(&store)
                .contains_written(ids[0].as_bytes())
                .expect("ask"));
            // Held back again, then a record that may name them is written: they go first.
            let more = store.ingest_many(&[b"another content, long enough to matter" as &[u8]]);
            let more = more.expect("ingest")[0];
            assert!(!files(&store)
                .contains_written(more.as_bytes())
                .expect("ask"));
            store
                .table(keys::CF_STATE)
                .put(b"names", more.as_bytes())
                .expect("put");
            assert!(files(&store)
                .contains_written(more.as_bytes())
                .expect("ask"));
            // Held back at close: written then.
            store
                .ingest_many(&[b"a last one" as &[u8]])
                .expect("ingest");
        }
        let store = Store::open(&path).expect("open");
        assert_eq!(
            store
                .read_file_bytes(FileId::of(b"a last one"))
                .expect("read"),
            b"a last one"
        );
        for c in &contents {
            let (id, _, _) = store.ingest(c.as_slice()).expect("ingest");
            assert_eq!(store.read_file_bytes(id).expect("read"), *c);
        }
    }

    #[test]
    fn a_file_object_never_reaches_the_log_before_a_chunk_it_shares_is_flushed() {
        // A small file's chunk goes without the log and its file object is held back; a
        // bigger file streamed after it starts with the same bytes, finds that chunk stored
        // and writes nothing of it. Its file object must wait too. A reader opening the
        // store beside the writer replays the log: every file object it sees must read
        // whole (as after a kill, when the memtable is gone).
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s");
        let store = Store::create(&path).expect("create");
        // Incompressible bytes, every chunk of them unlike any other: blake3's output.
        let random = |seed: &[u8], n: usize| {
            let mut out = vec![0; n];
            blake3::Hasher::new()
                .update(seed)
                .finalize_xof()
                .fill(&mut out);
            out
        };
        let small = random(b"small", 200_000);
        let mut big = small.clone();
        big.extend(random(b"big", 1 << 20));
        store
            .ingest_many(&[small.as_slice()])
            .expect("ingest the small file");
        let (id, _, stats) = store.ingest(big.as_slice()).expect("ingest the big file");
        assert!(
            stats.new_chunks < stats.chunks,
            "the two share chunks: {stats:?}"
        );
        let beside = Store::open_read_only(&path).expect("open beside");
        for (key, _) in beside.table(keys::CF_FILES).scan_prefix(b"").expect("scan") {
            let f = FileId::from_slice(&key).expect("an id");
            beside
                .verify_file(f)
                .unwrap_or_else(|e| panic!("{}: {e}", f.short()));
        }
        drop(beside);
        assert_eq!(store.read_file_bytes(id).expect("read"), big);
    }

    #[test]
    fn another_format_version_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s");
        {
            let store = Store::create(&path).expect("create");
            store
                .table(keys::CF_META)
                .put(keys::META_FORMAT, &(FORMAT_VERSION + 1).to_le_bytes())
                .expect("put");
        }
        let err = Store::open(&path).expect_err("a newer format must be refused");
        assert!(
            matches!(err, ObjectError::Format { found, expected, .. } if found == FORMAT_VERSION + 1 && expected == FORMAT_VERSION),
            "{err}"
        );
    }

    #[test]
    fn corrupt_chunk_is_never_served() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::create(&dir.path().join("s")).expect("create");
        let id = store.ingest_bytes(b"precious").expect("ingest");
        let object = store.file_object(id).expect("read").expect("present");
        let (cid, _) = object.chunks[0];
        store
            .table(keys::CF_CHUNKS)
            .put(cid.as_bytes(), b"pRecious")
            .expect("overwrite");
        let err = store
            .read_file_bytes(id)
            .expect_err("corruption must be reported");
        assert!(
            matches!(err, ObjectError::CorruptChunk(c) if c == cid),
            "{err}"
        );
    }

    /// Names that sort around `/` (`.`, `-`, `!` and control bytes below it, `0` above),
    /// nested: read back in path order, with nothing left out.
    #[test]
    fn a_tree_is_read_in_path_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::create(&dir.path().join("s")).expect("create");
        let mut flat = crate::Flat::new();
        for d in ["a", "a/b", "a-b", "a/b/c", "a\x01", "a0"] {
            flat.insert(d.as_bytes().to_vec(), Entry::new(b"d", EntryKind::Dir));
        }
        for f in [
            "a.txt", "a/x", "a/b.c", "a/b/c/d", "a/b!", "a-b/z", "a!", "a0/y", "a\x01/q", "b",
        ] {
            let name = crate::store::split_parent(f.as_bytes()).1.to_vec();
            flat.insert(
                f.as_bytes().to_vec(),
                file_entry(&store, &name, f.as_bytes()),
            );
        }
        // Names as tree entries have them.
        let flat: crate::Flat = flat
            .into_iter()
            .map(|(p, mut e)| {
                e.name = crate::Name::from_slice(crate::store::split_parent(&p).1);
                (p, e)
            })
            .collect();
        let root = store.write_flat(&flat).expect("write");
        let sorted = store.read_sorted(root).expect("read");
        let paths: Vec<&Vec<u8>> = sorted.iter().map(|(p, _)| p).collect();
        let want: Vec<&Vec<u8>> = flat.keys().collect();
        assert_eq!(paths, want);
    }

    /// Directories a flat map leaves out are written as default ones (mode 0755), at every
    /// depth, beside and under the ones it holds; the trees are those of the map with them.
    #[test]
    fn a_flat_map_without_its_directories_gets_default_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::create(&dir.path().join("s")).expect("create");
        let dir_entry = |name: &[u8], mode: u32| {
            let mut d = Entry::new(name, EntryKind::Dir);
            d.mode = mode;
            d
        };
        let mut sparse = crate::Flat::new();
        sparse.insert(b"x/y/z.txt".to_vec(), file_entry(&store, b"z.txt", b"z"));
        sparse.insert(b"p".to_vec(), dir_entry(b"p", 0o700));
        sparse.insert(b"p/q/r.txt".to_vec(), file_entry(&store, b"r.txt", b"r"));
        sparse.insert(b"p.txt".to_vec(), file_entry(&store, b"p.txt", b"p"));
        let mut whole = sparse.clone();
        whole.insert(b"x".to_vec(), dir_entry(b"x", 0o755));
        whole.insert(b"x/y".to_vec(), dir_entry(b"y", 0o755));
        whole.insert(b"p/q".to_vec(), dir_entry(b"q", 0o755));
        let root = store.write_flat(&sparse).expect("write");
        assert_eq!(store.read_flat(root).expect("read"), whole);
        // Each entry alone, as the whole read gives it; nothing where nothing is.
        for (path, entry) in &whole {
            assert_eq!(
                store.entry_at(root, path).expect("read").as_ref(),
                Some(entry)
            );
        }
        let names = |dir: &[u8]| -> Option<Vec<Vec<u8>>> {
            let children = store.children_at(root, dir).expect("read")?;
            Some(children.into_iter().map(|e| e.name.to_vec()).collect())
        };
        assert_eq!(
            names(b""),
            Some(vec![b"p".to_vec(), b"p.txt".to_vec(), b"x".to_vec()])
        );
        assert_eq!(names(b"x/y"), Some(vec![b"z.txt".to_vec()]));
        assert_eq!(names(b"p.txt"), None, "a file has no children");
        assert_eq!(names(b"none"), None);
        for absent in [
            &b"p/q/none"[..],
            b"x/y/z.txt/under",
            b"p.tx",
            b"zz",
            b"x/y/z",
        ] {
            assert_eq!(store.entry_at(root, absent).expect("read"), None);
        }
        assert_eq!(store.write_flat(&whole).expect("write"), root);
        assert_eq!(
            store.write_flat(&crate::Flat::new()).expect("empty"),
            store.put_tree(&Tree::default()).expect("empty tree")
        );
    }

    #[test]
    fn flat_round_trip_and_gc() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::create(&dir.path().join("s")).expect("create");
        let mut flat = crate::Flat::new();
        flat.insert(b"a.txt".to_vec(), file_entry(&store, b"a.txt", b"a"));
        let mut d = Entry::new(b"d", EntryKind::Dir);
        d.mode = 0o700;
        flat.insert(b"d".to_vec(), d);
        flat.insert(b"d/e\n\xff".to_vec(), file_entry(&store, b"e\n\xff", b"e"));
        let root = store.write_flat(&flat).expect("write");
        let back = store.read_flat(root).expect("read");
        // Equal as a whole: a caller compares a scan with what it read back to know whether
        // anything changed (a directory's subtree id must not make them differ).
        assert_eq!(back, flat);
        assert_eq!(store.write_flat(&back).expect("write again"), root);
        let orphan = store.ingest_bytes(b"orphan").expect("ingest");
        let snap = Snapshot {
            root,
            parent: None,
            time_ns: 0,
            description: "t".into(),
        };
        let sid = store.put_snapshot(&snap).expect("snapshot");
        let mut b = Batch::new();
        Store::set_ref_in(&mut b, "base", sid);
        store.commit(b).expect("commit");
        let report = store.gc(&[]).expect("gc");
        assert_eq!(report.files, 1);
        assert!(store.file_object(orphan).expect("read").is_none());
        assert_eq!(store.read_flat(root).expect("read").len(), 3);
    }
}

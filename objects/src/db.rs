//! The one module that talks to RocksDB.
//!
//! One database per workspace, under `.cachesync/store`, with a column family per kind of
//! record (see [`crate::keys`]). Chunk bytes go to blob files (BlobDB) so compaction never
//! rewrites them, compressed with lz4. Writes that make state durable (refs, journal marks)
//! are synced; a synced write also makes every earlier write durable, because the write-ahead
//! log is sequential.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rocksdb::{
    ColumnFamilyDescriptor, DBCompressionType, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};

use crate::error::{ObjectError, Result};
use crate::keys;

/// An open database.
pub struct Db {
    db: DB,
    path: PathBuf,
    writable: bool,
    /// File objects held back until the chunks written without the log are flushed
    /// ([`Db::write_deferred`], [`Db::put_file_object`]).
    deferred: std::sync::Mutex<Vec<(Vec<u8>, Vec<u8>)>>,
    /// Writes without the log begun, each counted before it is made: a chunk anyone can
    /// see was counted.
    unlogged: AtomicU64,
    /// Of those, how many a finished flush of the chunks made durable.
    durable: AtomicU64,
    /// Held to read by each write without the log, to write by the flush that makes them
    /// durable: every write it counts is made before it starts.
    gate: std::sync::RwLock<()>,
}

/// File objects waiting past this many are written, after a flush of the chunks.
const DEFERRED_MAX: usize = 65_536;

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

fn cf_options(name: &str, cache: &rocksdb::Cache) -> Options {
    let mut opts = Options::default();
    opts.set_compression_type(DBCompressionType::Lz4);
    // Bloom filters: a lookup of a key that is not there (a new chunk while ingesting, a
    // path not in the index) is answered without reading a data block.
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    table.set_block_cache(cache);
    opts.set_block_based_table_factory(&table);
    // Chunks of 1 KiB and more, and any other record of [`BIG_RECORD`] and more, are kept
    // in blob files. A big record in a table file costs its size several times over at the
    // flush: RocksDB builds a data block that holds it and compresses that block (the plan
    // of a first copy of 100,000 files, 18 MB of JSON, took 56 MB of a 168 MB peak there).
    opts.set_enable_blob_files(true);
    if name == keys::CF_CHUNKS {
        opts.set_min_blob_size(1024);
        opts.set_blob_compression_type(DBCompressionType::Lz4);
        // Chunks reach the memtable whole (they go to a blob file at its flush), and a
        // first copy writes them faster than a flush empties one: with the family's own
        // 64 MiB limit (the shared limit below only starts flushes), a first copy of the
        // Linux source held 76 MB of memtables at its peak.
        opts.set_write_buffer_size(CHUNK_MEMTABLE);
    } else {
        opts.set_min_blob_size(BIG_RECORD);
    }
    // Everyday compactions leave blob files alone: chunks are only ever deleted by a gc,
    // which then compacts with blob garbage collection on over every blob file
    // (`compact`), so there is nothing for them to reclaim. On, they relocated the oldest
    // quarter of the blobs at each compaction: a first copy wrote a quarter of its chunks
    // twice (a 1 GiB clone: 12% of its profile); with every blob file (1.0) the store grew
    // to twice the working set.
    opts.set_enable_blob_gc(false);
    opts.set_blob_gc_age_cutoff(1.0);
    opts
}

/// The chunks' memtable: it is flushed (to a blob file) once it holds this much.
const CHUNK_MEMTABLE: usize = 16 << 20;

/// Records (other than chunks) of this size and more are kept in blob files.
const BIG_RECORD: u64 = 64 << 10;

/// The memtables of all column families together: past this, RocksDB flushes the biggest.
/// Each family's own limit (64 MiB by default) let a first copy of 100,000 files hold 44 MB
/// of them at its peak.
const WRITE_BUFFERS: usize = 32 << 20;

/// One block cache for every column family. Each family's table factory made its own
/// 32 MiB cache by default: 27 MB of blocks were held at the peak of a first copy of 100,000
/// files. A command is one process that reads each block about once, so little is lost.
const BLOCK_CACHE: usize = 8 << 20;

fn block_cache() -> rocksdb::Cache {
    rocksdb::Cache::new_lru_cache(BLOCK_CACHE)
}

/// Every command opens the store, so opening must be quick: table files are opened on one
/// thread (RocksDB's default starts 16 per column family, which costs more than it saves on
/// a store of a few files each), and their statistics are not loaded at open. RocksDB's info
/// log keeps warnings and errors only: at its default level every open wrote about 160 KB
/// of options and statistics to `store/LOG`, which the cache budget counts.
fn quick_open(opts: &mut Options) {
    opts.set_max_file_opening_threads(1);
    opts.set_skip_stats_update_on_db_open(true);
    opts.set_log_level(rocksdb::LogLevel::Warn);
}

/// The write-ahead log kept at most (see [`Db::open`]).
const MAX_WAL: u64 = 64 << 20;

/// Above this many bytes of write-ahead log, closing the store flushes every memtable, so
/// that the log can go: otherwise the next command would replay it before doing anything.
const FLUSH_AT_CLOSE: u64 = 4 << 20;

impl Drop for Db {
    fn drop(&mut self) {
        if self.writable {
            // Best effort: file objects that are not written name content nothing durable
            // names either (every logged write settles them first).
            let _ = self.settle();
            self.flush_if_much_pending();
        }
    }
}

impl Db {
    /// At close: when much of the write-ahead log is not yet in table files, flushes it, so
    /// the next command does not replay it before doing anything.
    fn flush_if_much_pending(&self) {
        if wal_bytes(&self.path) > FLUSH_AT_CLOSE {
            // Every column family, not only the chunks': the log can only go once nothing
            // in it is unflushed, and a small family left in memory (the index, the trees)
            // would keep all of it, chunks included, to be replayed. Best effort: what is
            // not flushed stays in the log, durable, and is replayed.
            let cfs: Vec<_> = keys::ALL_CFS
                .iter()
                .chain(&[rocksdb::DEFAULT_COLUMN_FAMILY_NAME])
                .map(|name| self.cf(name))
                .collect();
            let _ = self
                .db
                .flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default());
        }
    }
}

/// Bytes of write-ahead log (`*.log`) in the database directory `path`. The memtables do
/// not tell how much the next open would replay: a family flushed on its own (past
/// [`WRITE_BUFFERS`]) leaves its part of a log that another family's few unflushed records
/// still keep (a first copy of 100,000 files left 47 MB of log behind that way).
fn wal_bytes(path: &Path) -> u64 {
    let Ok(dir) = std::fs::read_dir(path) else {
        return 0;
    };
    dir.flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .filter_map(|e| e.metadata().ok())
        .map(|md| md.len())
        .sum()
}

impl Db {
    /// Opens (creating when `create`) the database at `path`.
    ///
    /// # Errors
    /// [`ObjectError::Db`] when RocksDB cannot open it (missing, locked, damaged).
    pub fn open(path: &Path, create: bool) -> Result<Db> {
        let mut opts = Options::default();
        opts.create_if_missing(create);
        opts.create_missing_column_families(true);
        // One info log, rotated at each open: its header (the options of every column family,
        // about 120 KB) is written whatever the level, and the cache budget counts it.
        opts.set_keep_log_file_num(1);
        opts.set_max_log_file_size(1 << 20);
        opts.set_compression_type(DBCompressionType::Lz4);
        // Past this much write-ahead log, RocksDB flushes the column families that hold
        // its oldest part, so it can be deleted. By default (four times all the write
        // buffers, about 1.8 GB here) a first copy of 1.2 GB kept every byte of it in the
        // log, beside the blob files: twice the store on disk, and all of it replayed by
        // the next command (2.2 s instead of 0.4 for a status of the Linux source).
        opts.set_max_total_wal_size(MAX_WAL);
        opts.set_db_write_buffer_size(WRITE_BUFFERS);
        quick_open(&mut opts);
        let cache = block_cache();
        let cfs = keys::ALL_CFS
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, cf_options(name, &cache)));
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|e| db_error(path, e))?;
        Ok(Db {
            db,
            path: path.to_path_buf(),
            writable: true,
            deferred: Default::default(),
            unlogged: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            gate: Default::default(),
        })
    }

    /// Opens the database at `path` for reading only, beside a process that has it open for
    /// writing (it sees the state as of this call).
    ///
    /// # Errors
    /// [`ObjectError::Db`] when RocksDB cannot open it.
    pub fn open_read_only(path: &Path) -> Result<Db> {
        let mut opts = Options::default();
        quick_open(&mut opts);
        let cache = block_cache();
        let cfs = keys::ALL_CFS
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, cf_options(name, &cache)));
        let db = DB::open_cf_descriptors_read_only(&opts, path, cfs, false)
            .map_err(|e| db_error(path, e))?;
        Ok(Db {
            db,
            path: path.to_path_buf(),
            writable: false,
            deferred: Default::default(),
            unlogged: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            gate: Default::default(),
        })
    }

    /// The sequence number of the last write: every write moves it on (by the number of
    /// records it writes), so an unchanged number means an unchanged database.
    pub fn sequence(&self) -> u64 {
        self.db.latest_sequence_number()
    }

    /// Whether it was opened to write (not with [`Db::open_read_only`]).
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A table (column family) of this database.
    pub fn table(&self, cf: &'static str) -> Table<'_> {
        Table { db: self, cf }
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("every column family in keys::ALL_CFS is opened by Db::open")
    }

    /// Applies a batch atomically; `sync` makes it (and all earlier writes) durable first.
    ///
    /// # Errors
    /// [`ObjectError::Db`] on a RocksDB failure.
    ///
    /// A big record (see [`BIG_RECORD`]; chunks aside) is flushed to its blob file at once,
    /// with the rest of its table's memtable: kept there, it held its size in memory until
    /// the table's next flush (18 MB of a first copy's peak, from its plan's record).
    pub fn write(&self, batch: Batch, sync: bool) -> Result<()> {
        self.settle()?;
        let mut wb = WriteBatch::default();
        let mut big: Vec<&'static str> = Vec::new();
        for op in batch.ops {
            match op {
                BatchOp::Put(cf, k, v) => {
                    if cf != keys::CF_CHUNKS && v.len() as u64 >= BIG_RECORD && !big.contains(&cf) {
                        big.push(cf);
                    }
                    wb.put_cf(self.cf(cf), k, v);
                }
                BatchOp::Delete(cf, k) => wb.delete_cf(self.cf(cf), k),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db
            .write_opt(wb, &wo)
            .map_err(|e| db_error(&self.path, e))?;
        for cf in big {
            // Best effort: the write is done (and durable when `sync`); unflushed, the
            // record stays in the memtable and the log until the next flush.
            let _ = self.db.flush_cf(self.cf(cf));
        }
        Ok(())
    }

    /// Flushes and compacts every column family, so deleted records (and the blob files of
    /// deleted chunks) give their disk space back.
    ///
    /// # Errors
    /// [`ObjectError::Db`] on a RocksDB failure.
    pub fn compact(&self) -> Result<()> {
        self.flush()?;
        let mut opts = rocksdb::CompactOptions::default();
        opts.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        let gc = |on: &str| {
            keys::ALL_CFS.iter().try_for_each(|cf| {
                self.db
                    .set_options_cf(self.cf(cf), &[("enable_blob_garbage_collection", on)])
                    .map_err(|e| db_error(&self.path, e))
            })
        };
        // Every blob file may be rewritten by this compaction: all garbage goes.
        gc("true")?;
        for cf in keys::ALL_CFS {
            self.db
                .compact_range_cf_opt(self.cf(cf), None::<&[u8]>, None::<&[u8]>, &opts);
        }
        gc("false")
    }

    /// An everyday compaction of every column family (blob files left alone), as RocksDB
    /// runs by itself.
    #[cfg(test)]
    pub(crate) fn compact_as_every_day(&self) {
        for cf in keys::ALL_CFS {
            self.db
                .compact_range_cf(self.cf(cf), None::<&[u8]>, None::<&[u8]>);
        }
    }

    /// Bytes of deleted chunks still in blob files (a compaction interrupted after a gc
    /// leaves them: only `compact` reclaims them).
    ///
    /// # Errors
    /// [`ObjectError::Db`] on a RocksDB failure.
    pub fn blob_garbage(&self) -> Result<u64> {
        Ok(self
            .db
            .property_int_value_cf(
                self.cf(keys::CF_CHUNKS),
                "rocksdb.live-blob-file-garbage-size",
            )
            .map_err(|e| db_error(&self.path, e))?
            .unwrap_or(0))
    }

    /// Writes `chunks` (puts to the chunks' table) without the write-ahead log, and holds
    /// `files` (file objects, key and value, naming those chunks) back until the chunks are
    /// flushed: past [`DEFERRED_MAX`] of them, at the next logged write, at the next read
    /// of the file objects' table, and at close ([`Db::settle`]). Chunks stored so are
    /// written once (to a blob file or a table file at the flush) instead of twice, and no
    /// durable record ever names a chunk a crash lost: a file object is written after the
    /// chunks are durable, and anything naming it after that.
    ///
    /// # Errors
    /// [`ObjectError::Db`] on a RocksDB failure.
    pub fn write_deferred(&self, chunks: Batch, files: Vec<(Vec<u8>, Vec<u8>)>) -> Result<()> {
        let mut wb = WriteBatch::default();
        for op in chunks.ops {
            match op {
                BatchOp::Put(cf, k, v) if cf == keys::CF_CHUNKS => wb.put_cf(self.cf(cf), k, v),
                _ => unreachable!("only chunks are written without the log"),
            }
        }
        if !wb.is_empty() {
            self.write_unlogged(wb)?;
        }
        let full = {
            let mut deferred = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
            deferred.extend(files);
            deferred.len() >= DEFERRED_MAX
        };
        if full {
            self.settle()?;
        }
        Ok(())
    }

    /// Writes chunks without the write-ahead log, each write counted before it is made.
    fn write_unlogged(&self, wb: WriteBatch) -> Result<()> {
        let _gate = self.gate.read().unwrap_or_else(|p| p.into_inner());
        self.unlogged.fetch_add(1, Ordering::SeqCst);
        let mut wo = WriteOptions::default();
        wo.disable_wal(true);
        self.db
            .write_opt(wb, &wo)
            .map_err(|e| db_error(&self.path, e))
    }

    /// Whether a write without the log may not be durable yet.
    fn unflushed(&self) -> bool {
        self.unlogged.load(Ordering::SeqCst) > self.durable.load(Ordering::SeqCst)
    }

    /// Writes one file object (key, value): at once, through the log, when every chunk
    /// written without it is durable; else held back as [`Db::write_deferred`] holds them.
    /// A file object may name a chunk another writer put without the log and nothing
    /// flushed yet (found by a lookup, so not written again).
    ///
    /// # Errors
    /// [`ObjectError::Db`] on a RocksDB failure.
    pub fn put_file_object(&self, key: &[u8], value: Vec<u8>) -> Result<()> {
        let full = {
            let mut deferred = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
            if deferred.is_empty() && !self.unflushed() {
                return self
                    .db
                    .put_cf(self.cf(keys::CF_FILES), key, value)
                    .map_err(|e| db_error(&self.path, e));
            }
            deferred.push((key.to_vec(), value));
            deferred.len() >= DEFERRED_MAX
        };
        if full {
            self.settle()?;
        }
        Ok(())
    }

    /// Makes every chunk written without the log durable (a flush of the chunks' table,
    /// which RocksDB syncs), then writes the file objects held back. Holds the file objects'
    /// lock throughout: a reader never finds one taken but not yet written.
    ///
    /// # Errors
    /// [`ObjectError::Db`] on a RocksDB failure.
    pub fn settle(&self) -> Result<()> {
        let mut deferred = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
        if deferred.is_empty() && !self.unflushed() {
            return Ok(());
        }
        {
            // No write without the log is under way: those counted are all in the memtable
            // the flush writes out.
            let _gate = self.gate.write().unwrap_or_else(|p| p.into_inner());
            let counted = self.unlogged.load(Ordering::SeqCst);
            if counted > self.durable.load(Ordering::SeqCst) {
                self.db
                    .flush_cf(self.cf(keys::CF_CHUNKS))
                    .map_err(|e| db_error(&self.path, e))?;
                self.durable.fetch_max(counted, Ordering::SeqCst);
            }
        }
        if !deferred.is_empty() {
            let mut wb = WriteBatch::default();
            let files = self.cf(keys::CF_FILES);
            for (k, v) in deferred.iter() {
                wb.put_cf(files, k, v);
            }
            self.db.write(wb).map_err(|e| db_error(&self.path, e))?;
            deferred.clear();
        }
        Ok(())
    }

    /// Flushes memtables to disk (used before measuring disk use).
    ///
    /// # Errors
    /// [`ObjectError::Db`] on a RocksDB failure.
    pub fn flush(&self) -> Result<()> {
        self.settle()?;
        for cf in keys::ALL_CFS {
            self.db
                .flush_cf(self.cf(cf))
                .map_err(|e| db_error(&self.path, e))?;
        }
        Ok(())
    }
}

fn db_error(path: &Path, e: rocksdb::Error) -> ObjectError {
    ObjectError::Db {
        path: path.to_path_buf(),
        message: e.into_string(),
    }
}

/// One column family: get, put, delete and ordered scans.
#[derive(Clone, Copy)]
pub struct Table<'a> {
    db: &'a Db,
    cf: &'static str,
}

impl<'a> Table<'a> {
    /// Before a read of the file objects' table: the ones held back are written first
    /// ([`Db::settle`]), so that a reader finds every file object stored.
    fn settle_to_read(&self) -> Result<()> {
        if self.cf == keys::CF_FILES {
            self.db.settle()?;
        }
        Ok(())
    }

    /// True when `key` is present, as far as what is written goes: a file object held back
    /// ([`Db::write_deferred`]) is not seen, and none is written for the asking.
    ///
    /// # Errors
    /// [`ObjectError::Db`] on a RocksDB failure.
    pub fn contains_written(&self, key: &[u8]) -> Result<bool> {
        // One lookup: the bloom filters answer absent keys cheaply (key_may_exist first
        // would look a present key up twice).
        let cf = self.db.cf(self.cf);
        Ok(self
            .db
            .db
            .get_pinned_cf(cf, key)
            .map_err(|e| db_error(&self.db.path, e))?
            .is_some())
    }

    /// The value at `key`.
    ///
    /// # Errors
    /// [`ObjectError::Db`] on a RocksDB failure.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.settle_to_read()?;
        self.db
            .db
            .get_cf(self.db.cf(self.cf), key)
            .map_err(|e| db_error(&self.db.path, e))
    }

    /// True when `key` is present.
    ///
    /// # Errors
    /// [`ObjectError::Db`] on a RocksDB failure.
    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        self.settle_to_read()?;
        self.contains_written(key)
    }

    /// For each of `keys` (in ascending order), whether it is present. One iterator goes
    /// through them in order, so each block of the table is read once however many keys
    /// it holds; point lookups in random order read a block per key once the table no
    /// longer fits the block cache (a million file objects).
    ///
    /// # Errors
    /// [`ObjectError::Db`] on a RocksDB failure.
    pub fn contains_sorted(&self, keys: &[&[u8]]) -> Result<Vec<bool>> {
        self.settle_to_read()?;
        debug_assert!(keys.windows(2).all(|w| w[0] <= w[1]), "keys in order");
        let mut iter = self.db.db.raw_iterator_cf(self.db.cf(self.cf));
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            // Where the iterator stands may already be at or past this key; when the keys
            // asked for are most of the table (a sync asks after every file it knows), the
            // next key is usually the one wanted, and a step costs a fraction of a seek.
            let at = iter.valid().then(|| iter.key()).flatten();
            if at.is_some_and(|k| k < *key) {
                iter.next();
            }
            let at = iter.valid().then(|| iter.key()).flatten();
            if at.is_none_or(|k| k < *key) {
                iter.seek(key);
            }
            out.push(iter.valid() && iter.key() == Some(*key));
        }
        iter.status().map_err(|e| db_error(&self.db.path, e))?;
        Ok(out)
    }

    /// Writes one value (not synced).
    ///
    /// # Errors
    /// [`ObjectError::Db`] on a RocksDB failure.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        // A record put here may name content: chunks written without the log are made
        // durable, and file objects held back written, first. Not for a chunk: it names
        // nothing.
        if self.cf != keys::CF_CHUNKS {
            self.db.settle()?;
        }
        self.db
            .db
            .put_cf(self.db.cf(self.cf), key, value)
            .map_err(|e| db_error(&self.db.path, e))
    }

    /// Writes one chunk without the write-ahead log: it is in memory only until the
    /// chunks' next flush, and a crash before then loses it. A file object naming it is
    /// written through [`Db::put_file_object`], which waits for that flush.
    ///
    /// # Errors
    /// [`ObjectError::Db`] on a RocksDB failure.
    pub fn put_unlogged(&self, key: &[u8], value: &[u8]) -> Result<()> {
        assert_eq!(self.cf, keys::CF_CHUNKS, "only chunks go without the log");
        let mut wb = WriteBatch::default();
        wb.put_cf(self.db.cf(self.cf), key, value);
        self.db.write_unlogged(wb)
    }

    /// Deletes one key (not synced).
    ///
    /// # Errors
    /// [`ObjectError::Db`] on a RocksDB failure.
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        self.db.settle()?;
        self.db
            .db
            .delete_cf(self.db.cf(self.cf), key)
            .map_err(|e| db_error(&self.db.path, e))
    }

    /// Every `(key, value)` whose key starts with `prefix`, in key order.
    ///
    /// # Errors
    /// [`ObjectError::Db`] on a RocksDB failure.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        self.for_each_prefix(prefix, |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            true
        })?;
        Ok(out)
    }

    /// Calls `f` on every `(key, value)` whose key starts with `prefix`, in key order, until
    /// it returns false.
    ///
    /// # Errors
    /// [`ObjectError::Db`] on a RocksDB failure.
    pub fn for_each_prefix(
        &self,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        self.settle_to_read()?;
        // A raw iterator lends each key and value: the boxed iterator copies both into
        // fresh allocations (two per item, a tenth of loading the index of 100,000 files).
        let mut iter = self.db.db.raw_iterator_cf(self.db.cf(self.cf));
        iter.seek(prefix);
        while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
            if !k.starts_with(prefix) || !f(k, v) {
                return Ok(());
            }
            iter.next();
        }
        iter.status().map_err(|e| db_error(&self.db.path, e))
    }

    /// The greatest key that starts with `prefix`, if any (its value is not read).
    ///
    /// # Errors
    /// [`ObjectError::Db`] on a RocksDB failure.
    pub fn last_key_with_prefix(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>> {
        self.settle_to_read()?;
        // Every key with the prefix sorts below the prefix with its last byte raised (after
        // trailing 0xff bytes are dropped); with no such bound, start from the end. A raw
        // iterator: only keys are looked at.
        let mut bound = prefix.to_vec();
        while bound.last() == Some(&0xff) {
            bound.pop();
        }
        let mut iter = self.db.db.raw_iterator_cf(self.db.cf(self.cf));
        match bound.last_mut() {
            Some(b) => {
                *b += 1;
                iter.seek_for_prev(&bound);
            }
            None => iter.seek_to_last(),
        }
        while let Some(k) = iter.key() {
            if k.starts_with(prefix) {
                return Ok(Some(k.to_vec()));
            }
            if k < prefix {
                break;
            }
            iter.prev();
        }
        iter.status().map_err(|e| db_error(&self.db.path, e))?;
        Ok(None)
    }

    /// The last `(key, value)` of the table, if any.
    ///
    /// # Errors
    /// [`ObjectError::Db`] on a RocksDB failure.
    pub fn last(&self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.settle_to_read()?;
        let mut iter = self
            .db
            .db
            .iterator_cf(self.db.cf(self.cf), IteratorMode::End);
        match iter.next() {
            Some(item) => {
                let (k, v) = item.map_err(|e| db_error(&self.db.path, e))?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
            None => Ok(None),
        }
    }
}

enum BatchOp {
    Put(&'static str, Vec<u8>, Vec<u8>),
    Delete(&'static str, Vec<u8>),
}

/// Writes to several tables, applied atomically by [`Db::write`] or [`crate::Store::commit`].
#[derive(Default)]
pub struct Batch {
    ops: Vec<BatchOp>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Adds a put.
    pub fn put(&mut self, cf: &'static str, key: &[u8], value: &[u8]) {
        self.ops
            .push(BatchOp::Put(cf, key.to_vec(), value.to_vec()));
    }

    /// Adds a put of a value already made (not copied: a plan's record may be megabytes).
    pub fn put_owned(&mut self, cf: &'static str, key: &[u8], value: Vec<u8>) {
        self.ops.push(BatchOp::Put(cf, key.to_vec(), value));
    }

    /// Adds a delete.
    pub fn delete(&mut self, cf: &'static str, key: &[u8]) {
        self.ops.push(BatchOp::Delete(cf, key.to_vec()));
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_big_record_leaves_memory_for_a_blob_file_at_once_and_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let db = Db::open(&path, true).expect("open");
        let in_memory = |db: &Db| {
            db.db
                .property_int_value_cf(db.cf(keys::CF_JOURNAL), "rocksdb.size-all-mem-tables")
                .expect("property")
                .expect("a number")
        };
        let big: Vec<u8> = (0..BIG_RECORD as usize * 8)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut batch = Batch::new();
        batch.put(keys::CF_JOURNAL, b"small", b"a header");
        batch.put_owned(keys::CF_JOURNAL, b"big", big.clone());
        db.write(batch, true).expect("write");
        assert!(
            in_memory(&db) < BIG_RECORD,
            "{} bytes still in the memtable",
            in_memory(&db)
        );
        assert_eq!(files_named(&path, ".blob").len(), 1, "one blob file");
        // Records under the size stay in memory until the family's next flush.
        let mut batch = Batch::new();
        batch.put(keys::CF_JOURNAL, b"medium", &[7; 1000]);
        db.write(batch, true).expect("write");
        assert!(in_memory(&db) > 1000);
        let journal = db.table(keys::CF_JOURNAL);
        assert_eq!(journal.get(b"big").expect("get"), Some(big.clone()));
        assert_eq!(
            journal.get(b"small").expect("get"),
            Some(b"a header".to_vec())
        );
        drop(db);
        let db = Db::open(&path, false).expect("open again");
        assert_eq!(
            db.table(keys::CF_JOURNAL).get(b"big").expect("get"),
            Some(big)
        );
    }

    #[test]
    fn closing_leaves_little_log_even_when_the_chunks_were_flushed_on_their_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let db = Db::open(&path, true).expect("open");
        let chunks = db.table(keys::CF_CHUNKS);
        let state = db.table(keys::CF_STATE);
        for i in 0u32..96 {
            chunks
                .put(&i.to_be_bytes(), &[i as u8; 64 << 10])
                .expect("put");
            state.put(&i.to_be_bytes(), b"a small record").expect("put");
        }
        // As RocksDB does past its write buffers: the chunks' memtable alone.
        db.db
            .flush_cf(db.cf(keys::CF_CHUNKS))
            .expect("flush the chunks");
        assert!(wal_bytes(&path) > FLUSH_AT_CLOSE, "{}", wal_bytes(&path));
        drop(db);
        assert!(
            wal_bytes(&path) < 1 << 20,
            "{} bytes of log left",
            wal_bytes(&path)
        );
        let db = Db::open(&path, false).expect("open again");
        assert_eq!(
            db.table(keys::CF_STATE)
                .get(&95u32.to_be_bytes())
                .expect("get")
                .as_deref(),
            Some(&b"a small record"[..])
        );
    }

    #[test]
    fn contains_sorted_answers_as_contains_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(&dir.path().join("db"), true).expect("open");
        let t = db.table(keys::CF_FILES);
        let mut x = 7u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_be_bytes()
        };
        let present: Vec<[u8; 8]> = (0..3000).map(|_| next()).collect();
        for (i, k) in present.iter().enumerate() {
            t.put(k, b"v").expect("put");
            if i == 1500 {
                db.flush().expect("flush"); // keys in a table file and in the memtable
            }
        }
        let mut asked: Vec<Vec<u8>> = present.iter().step_by(3).map(|k| k.to_vec()).collect();
        asked.extend((0..2000).map(|_| next().to_vec()));
        // A run of neighbours in the table, as a sync asks (each the next key).
        let mut in_order = present.clone();
        in_order.sort_unstable();
        asked.extend(in_order[100..600].iter().map(|k| k.to_vec()));
        asked.push(present[0].to_vec()); // twice
        asked.push(Vec::new());
        asked.push(vec![0xff; 9]);
        asked.sort();
        let keys: Vec<&[u8]> = asked.iter().map(Vec::as_slice).collect();
        let got = t.contains_sorted(&keys).expect("sorted");
        for (k, g) in keys.iter().zip(&got) {
            assert_eq!(*g, t.contains(k).expect("contains"), "{k:?}");
        }
        assert!(got.iter().filter(|g| **g).count() >= 1000);
        assert_eq!(t.contains_sorted(&[]).expect("none"), Vec::<bool>::new());
    }

    #[test]
    fn last_key_with_prefix_finds_the_greatest_key_under_it_and_nothing_beside_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(&dir.path().join("db"), true).expect("open");
        let t = db.table(crate::keys::CF_JOURNAL);
        assert_eq!(t.last_key_with_prefix(b"op/").expect("last"), None);
        for k in [
            &b"a"[..],
            b"op/\x01",
            b"op/\x02",
            b"op/\xff\xff",
            b"op0",
            b"st/\x09",
        ] {
            t.put(k, b"v").expect("put");
        }
        assert_eq!(
            t.last_key_with_prefix(b"op/").expect("last"),
            Some(b"op/\xff\xff".to_vec())
        );
        assert_eq!(
            t.last_key_with_prefix(b"op/\x01").expect("last"),
            Some(b"op/\x01".to_vec())
        );
        assert_eq!(
            t.last_key_with_prefix(b"op/\xff").expect("last"),
            Some(b"op/\xff\xff".to_vec())
        );
        assert_eq!(t.last_key_with_prefix(b"b").expect("last"), None);
        assert_eq!(
            t.last_key_with_prefix(b"").expect("last"),
            Some(b"st/\x09".to_vec())
        );
        assert_eq!(t.last_key_with_prefix(b"zz").expect("last"), None);
    }

    /// The files in `dir` whose names end with `suffix`, with their sizes.
    fn files_named(dir: &Path, suffix: &str) -> Vec<(String, u64)> {
        std::fs::read_dir(dir)
            .expect("list")
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.ends_with(suffix)
                    .then(|| (name, e.metadata().map_or(0, |m| m.len())))
            })
            .collect()
    }

    #[test]
    fn the_write_ahead_log_stays_bounded_and_is_gone_after_a_big_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let db = Db::open(&path, true).expect("open");
        let chunks = db.table(keys::CF_CHUNKS);
        let index = db.table(keys::CF_INDEX);
        // 160 MiB of incompressible chunks, and beside them a few small records that a
        // family of their own keeps in memory (as the index and the trees of a first copy).
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut block = vec![0u8; 1 << 20];
        let mut most = 0;
        for i in 0u32..160 {
            for b in block.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.copy_from_slice(&x.to_le_bytes());
            }
            chunks.put(&i.to_be_bytes(), &block).expect("put");
            index.put(&i.to_be_bytes(), b"small").expect("put");
            most = most.max(wal_bytes(&path));
        }
        // Bounded while it runs: a log past MAX_WAL makes RocksDB flush the families that
        // hold its oldest part (one more write buffer may be on its way).
        assert!(most < MAX_WAL + (96 << 20), "the log reached {most} bytes");
        // Closed after much was written: every family flushed, so the next open has
        // nothing to replay (a replay would write what it recovered to new table files).
        drop(db);
        let tables = |p: &Path| {
            let mut t: Vec<String> = files_named(p, ".sst")
                .into_iter()
                .chain(files_named(p, ".blob"))
                .map(|f| f.0)
                .collect();
            t.sort();
            t
        };
        let before = tables(&path);
        let db = Db::open(&path, false).expect("open again");
        assert_eq!(tables(&path), before, "the open replayed the log");
        assert_eq!(
            db.table(keys::CF_INDEX)
                .get(&159u32.to_be_bytes())
                .expect("get"),
            Some(b"small".to_vec())
        );
    }
}

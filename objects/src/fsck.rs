//! fsck: verify everything reachable from the refs (and from the engine's extra roots).

use std::collections::HashSet;

use crate::id::{ChunkId, FileId, SnapshotId, TreeId};
use crate::store::Store;
use crate::ObjectError;

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsckProblem {
    /// What kind of object (`ref`, `snapshot`, `tree`, `file`, `chunk`).
    pub object: &'static str,
    /// Its id (hex) or name.
    pub id: String,
    /// Where it was reached from (a ref name and path, when known).
    pub context: String,
    /// What is wrong.
    pub detail: String,
}

/// What fsck checked and found.
#[derive(Clone, Debug, Default)]
pub struct FsckReport {
    /// Snapshots verified.
    pub snapshots: u64,
    /// Trees verified.
    pub trees: u64,
    /// File objects verified (every chunk read and hashed, and the whole file).
    pub files: u64,
    /// Distinct chunks verified.
    pub chunks: u64,
    /// Bytes of content verified.
    pub bytes: u64,
    /// Everything that is wrong.
    pub problems: Vec<FsckProblem>,
}

impl FsckReport {
    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

struct Walker<'a> {
    uncached_ok: &'a HashSet<FileId>,
    store: &'a Store,
    report: FsckReport,
    seen_trees: HashSet<TreeId>,
    seen_files: HashSet<FileId>,
    bad_chunks: HashSet<ChunkId>,
    good_chunks: HashSet<ChunkId>,
}

impl Store {
    /// Verifies every snapshot, tree, file and chunk reachable from the refs and from
    /// `extra_files` (named by `context` in problems). Never stops at the first problem.
    pub fn fsck(&self, extra_files: &[(FileId, String)]) -> FsckReport {
        self.fsck_except(extra_files, &HashSet::new())
    }

    /// [`Store::fsck`], where the files in `uncached_ok` may be missing (the engine's
    /// remote-only files); what is there is still verified.
    pub fn fsck_except(
        &self,
        extra_files: &[(FileId, String)],
        uncached_ok: &HashSet<FileId>,
    ) -> FsckReport {
        // Extra roots (the engine's conflict variants) are walked first and must always be
        // there; only files reached from the refs may be excused.
        let none = HashSet::new();
        let mut w = Walker {
            uncached_ok: &none,
            store: self,
            report: FsckReport::default(),
            seen_trees: HashSet::new(),
            seen_files: HashSet::new(),
            bad_chunks: HashSet::new(),
            good_chunks: HashSet::new(),
        };
        for (id, context) in extra_files {
            w.file(*id, context);
        }
        w.uncached_ok = uncached_ok;
        match self.refs() {
            Ok(refs) => {
                for (name, sid) in refs {
                    w.snapshot(sid, &name);
                }
            }
            Err(e) => w.problem("ref", "*".into(), String::new(), e.to_string()),
        }
        w.report
    }
}

impl Walker<'_> {
    fn problem(&mut self, object: &'static str, id: String, context: String, detail: String) {
        self.report.problems.push(FsckProblem {
            object,
            id,
            context,
            detail,
        });
    }

    fn snapshot(&mut self, sid: SnapshotId, name: &str) {
        match self.store.snapshot(sid) {
            Ok(snap) => {
                self.report.snapshots += 1;
                self.tree(snap.root, &format!("{name}:/"));
            }
            Err(e) => self.problem(
                "snapshot",
                sid.to_hex(),
                format!("ref {name}"),
                e.to_string(),
            ),
        }
    }

    fn tree(&mut self, id: TreeId, context: &str) {
        if !self.seen_trees.insert(id) {
            return;
        }
        match self.store.tree(id) {
            Ok(tree) => {
                self.report.trees += 1;
                for e in tree.entries {
                    let ctx = format!("{context}{}", String::from_utf8_lossy(&e.name));
                    if let Some(t) = e.tree {
                        self.tree(*t, &format!("{ctx}/"));
                    }
                    if let Some(f) = e.file {
                        self.file(f, &ctx);
                    }
                }
            }
            Err(e) => self.problem("tree", id.to_hex(), context.into(), e.to_string()),
        }
    }

    fn file(&mut self, id: FileId, context: &str) {
        if id == FileId::NOT_CACHED || !self.seen_files.insert(id) {
            return;
        }
        let object = match self.store.file_object(id) {
            Ok(Some(o)) => o,
            Ok(None) if self.uncached_ok.contains(&id) => return,
            Ok(None) => {
                return self.problem("file", id.to_hex(), context.into(), "missing".into());
            }
            Err(e) => return self.problem("file", id.to_hex(), context.into(), e.to_string()),
        };
        self.report.files += 1;
        let mut whole = blake3::Hasher::new();
        let mut complete = true;
        for (cid, len) in &object.chunks {
            if self.bad_chunks.contains(cid) {
                complete = false;
                continue;
            }
            match self.store.chunk(*cid) {
                Ok(data) if data.len() == *len as usize => {
                    if self.good_chunks.insert(*cid) {
                        self.report.chunks += 1;
                    }
                    self.report.bytes += data.len() as u64;
                    whole.update(&data);
                }
                Ok(data) => {
                    complete = false;
                    self.problem(
                        "chunk",
                        cid.to_hex(),
                        context.into(),
                        format!("{} bytes, the file object says {len}", data.len()),
                    );
                }
                Err(e) => {
                    complete = false;
                    self.bad_chunks.insert(*cid);
                    let detail = match e {
                        ObjectError::MissingChunk(_) => "missing".to_string(),
                        ObjectError::CorruptChunk(_) => "corrupt: bytes do not match hash".into(),
                        other => other.to_string(),
                    };
                    self.problem("chunk", cid.to_hex(), context.into(), detail);
                }
            }
        }
        if complete && FileId(*whole.finalize().as_bytes()) != id {
            self.problem(
                "file",
                id.to_hex(),
                context.into(),
                "content does not hash to the file's id".into(),
            );
        }
    }
}

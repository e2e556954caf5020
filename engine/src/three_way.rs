//! Three-way situations for the engine's unit tests: the base, local and remote trees of a
//! path set, each written in a few lines, and what reconcile and the plan make of them.
//! Compiled for tests only.

use cachesync_objects::{Entry, EntryKind, FileId};

use crate::plan::{Direction, Plan};
use crate::reconcile::{reconcile, Change};
use crate::scan::Flat;

/// A regular file holding `content`, mode 0644.
pub(crate) fn file(content: &str) -> Entry {
    let mut e = Entry::new(b"f", EntryKind::File);
    e.file = Some(FileId::of(content.as_bytes()));
    e.size = content.len() as u64;
    e.mode = 0o644;
    e
}

/// A directory with permission bits `mode`.
pub(crate) fn dir_mode(mode: u32) -> Entry {
    let mut e = Entry::new(b"d", EntryKind::Dir);
    e.mode = mode;
    e
}

/// A directory, mode 0755.
pub(crate) fn dir() -> Entry {
    dir_mode(0o755)
}

/// A symlink to `target`.
pub(crate) fn symlink(target: &str) -> Entry {
    let mut e = Entry::new(b"l", EntryKind::Symlink);
    e.target = target.as_bytes().to_vec();
    e.size = target.len() as u64;
    e.mode = 0o777;
    e
}

/// A flat tree of `(path, entry)`.
pub(crate) fn tree(items: &[(&str, Entry)]) -> Flat {
    items
        .iter()
        .map(|(p, e)| (p.as_bytes().to_vec(), e.clone()))
        .collect()
}

/// Base, local and remote trees.
#[derive(Clone, Debug, Default)]
pub(crate) struct ThreeWay {
    pub base: Flat,
    pub local: Flat,
    pub remote: Flat,
}

impl ThreeWay {
    /// All three sides hold `items`: the state right after a sync.
    pub fn agreed(items: &[(&str, Entry)]) -> ThreeWay {
        let t = tree(items);
        ThreeWay {
            base: t.clone(),
            local: t.clone(),
            remote: t,
        }
    }

    /// The workspace sets `path` to `entry` (`None`: removes it).
    pub fn local(mut self, path: &str, entry: Option<Entry>) -> ThreeWay {
        set(&mut self.local, path, entry);
        self
    }

    /// The server sets `path` to `entry` (`None`: removes it).
    pub fn remote(mut self, path: &str, entry: Option<Entry>) -> ThreeWay {
        set(&mut self.remote, path, entry);
        self
    }

    /// What reconcile makes of it.
    pub fn changes(&self) -> Vec<Change> {
        reconcile(&self.base, &self.local, &self.remote)
    }

    /// The plan in `direction`.
    pub fn plan(&self, direction: Direction) -> Plan {
        Plan::build(self.changes(), direction)
    }

    /// The plan's steps as `sync` prints them (`remote write   a.txt`).
    pub fn steps(&self, direction: Direction) -> Vec<String> {
        self.plan(direction)
            .steps
            .iter()
            .map(|s| s.line())
            .collect()
    }
}

/// Sets `path` in `t`; what is not a directory (or `None`, a removal) takes everything that
/// was under the path with it.
fn set(t: &mut Flat, path: &str, entry: Option<Entry>) {
    if entry.as_ref().is_none_or(|e| e.kind != EntryKind::Dir) {
        t.retain(|p, _| !crate::paths::is_within(p, path.as_bytes()));
    }
    if let Some(e) = entry {
        t.insert(path.as_bytes().to_vec(), e);
    }
}

//! The working set: what must be in the workspace when the network goes.
//!
//! Pinned paths (and everything under a pinned directory) are always materialized and never
//! culled. The hoard profile gives every other path a priority (the highest of the matching
//! `GLOB PRIORITY` rules, [`DEFAULT_PRIORITY`] when none matches): prefetch fetches the
//! highest first, culling drops the lowest first. Paths under a never-cache directory are
//! left remote-only unless asked for with `get`.

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::config::Config;
use crate::paths::is_within;

/// The priority of a path no hoard rule matches.
pub const DEFAULT_PRIORITY: i32 = 50;

/// The compiled pins, hoard rules and never-cache directories.
pub struct WorkingSet {
    pins: Vec<Vec<u8>>,
    never: Vec<Vec<u8>>,
    globs: GlobSet,
    priorities: Vec<i32>,
}

fn clean(p: &str) -> Vec<u8> {
    p.trim_matches('/').as_bytes().to_vec()
}

impl WorkingSet {
    /// Compiles the working set of a config.
    ///
    /// # Errors
    /// A message naming the rule that is not `GLOB PRIORITY` or has a bad glob.
    pub fn new(config: &Config) -> Result<WorkingSet, String> {
        let mut b = GlobSetBuilder::new();
        let mut priorities = Vec::new();
        for rule in &config.hoard {
            let (glob, prio) = rule
                .trim()
                .rsplit_once(char::is_whitespace)
                .ok_or_else(|| format!("hoard rule {rule:?} is not \"GLOB PRIORITY\""))?;
            let prio: i32 = prio
                .parse()
                .map_err(|_| format!("hoard rule {rule:?}: {prio:?} is not a whole number"))?;
            let glob = glob.trim().trim_start_matches('/');
            // A glob without a slash matches the name anywhere, as in gitignore.
            let pattern = if glob.contains('/') {
                glob.to_string()
            } else {
                format!("**/{glob}")
            };
            b.add(Glob::new(&pattern).map_err(|e| format!("hoard rule {rule:?}: {e}"))?);
            priorities.push(prio);
        }
        Ok(WorkingSet {
            pins: config
                .pins
                .iter()
                .chain(&config.always_cache)
                .map(|p| clean(p))
                .collect(),
            never: config.never_cache.iter().map(|p| clean(p)).collect(),
            globs: b.build().map_err(|e| e.to_string())?,
            priorities,
        })
    }

    /// True when `path` is pinned (itself or a parent directory).
    pub fn is_pinned(&self, path: &[u8]) -> bool {
        self.pins.iter().any(|p| is_within(path, p))
    }

    /// True when some directory is never cached.
    pub fn has_never_cache(&self) -> bool {
        !self.never.is_empty()
    }

    /// True when `path` is under a never-cache directory (and not pinned).
    pub fn is_never_cached(&self, path: &[u8]) -> bool {
        !self.is_pinned(path) && self.never.iter().any(|p| is_within(path, p))
    }

    /// The hoard priority of `path` (`i32::MAX` when pinned, `i32::MIN` when never cached).
    pub fn priority(&self, path: &[u8]) -> i32 {
        if self.is_pinned(path) {
            return i32::MAX;
        }
        if self.is_never_cached(path) {
            return i32::MIN;
        }
        if self.globs.is_empty() {
            return DEFAULT_PRIORITY;
        }
        // Borrowed: the globs match paths relative to the root.
        let p = std::path::Path::new(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(path),
        );
        self.globs
            .matches(p)
            .into_iter()
            .map(|i| self.priorities[i])
            .max()
            .unwrap_or(DEFAULT_PRIORITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_pins_and_never_cache() {
        let mut c = Config::new("/r".into());
        c.hoard = vec!["src/** 100".into(), "*.iso 0".into(), "docs/*.md 70".into()];
        c.pins = vec!["notes".into()];
        c.never_cache = vec!["scratch/".into()];
        let w = WorkingSet::new(&c).expect("valid");
        assert_eq!(w.priority(b"src/main.rs"), 100);
        assert_eq!(w.priority(b"images/big.iso"), 0);
        assert_eq!(w.priority(b"docs/guide.md"), 70);
        assert_eq!(w.priority(b"README"), DEFAULT_PRIORITY);
        assert_eq!(w.priority(b"notes/todo.txt"), i32::MAX);
        assert!(w.is_never_cached(b"scratch/x"));
        assert_eq!(w.priority(b"scratch/x"), i32::MIN);
        c.hoard = vec!["src/**".into()];
        assert!(WorkingSet::new(&c).is_err());
        // Without hoard rules, pins and never-cache directories still count.
        c.hoard.clear();
        let w = WorkingSet::new(&c).expect("valid");
        assert_eq!(w.priority(b"src/main.rs"), DEFAULT_PRIORITY);
        assert_eq!(w.priority(b"notes/todo.txt"), i32::MAX);
        assert_eq!(w.priority(b"scratch/x"), i32::MIN);
    }
}

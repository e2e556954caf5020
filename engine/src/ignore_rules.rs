//! Ignore rules: `.cachesyncignore` (gitignore syntax) plus built-in defaults.
//!
//! Ignored paths are never synced either way. The defaults cover cachesync's own files (the
//! `.cachesync/` directory, the remote marker, temporary files of interrupted writes) and
//! editors' swap and backup files.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::error::{Result, SyncError};

/// The workspace's metadata directory.
pub const META_DIR: &str = ".cachesync";
/// The marker file at the remote root.
pub const MARKER: &str = ".cachesync-remote";
/// Prefix of temporary files cachesync writes before renaming them into place.
pub const TMP_PREFIX: &str = ".cachesync-tmp.";
/// Where local data that has nowhere to go is kept, inside the workspace.
pub const LOST_FOUND: &str = ".cachesync-lost+found";
/// The user's ignore file at the workspace root.
pub const IGNORE_FILE: &str = ".cachesyncignore";

const DEFAULTS: &[&str] = &[
    "/.cachesync/",
    "/.cachesync-remote",
    "/.cachesync-lost+found/",
    ".cachesync-tmp.*",
    "*.swp",
    "*.swo",
    "*.swx",
    ".*.sw?",
    "*~",
    ".#*",
    "#*#",
    "4913",
    ".DS_Store",
];

/// The compiled rules.
pub struct IgnoreRules {
    defaults: Gitignore,
    user: Gitignore,
    /// What the rules were made of (the built-in patterns and the ignore file's bytes).
    fingerprint: [u8; 32],
}

impl IgnoreRules {
    /// Built-in defaults plus `root/.cachesyncignore` when present.
    ///
    /// # Errors
    /// [`SyncError::Config`] when the ignore file has an invalid pattern.
    pub fn load(root: &Path) -> Result<IgnoreRules> {
        let mut b = GitignoreBuilder::new(root);
        for pat in DEFAULTS {
            b.add_line(None, pat).expect("built-in patterns are valid");
        }
        let defaults = b.build().expect("built-in patterns are valid");
        let mut u = GitignoreBuilder::new(root);
        let file = root.join(IGNORE_FILE);
        let mut made_of = blake3::Hasher::new();
        for pat in DEFAULTS {
            made_of.update(pat.as_bytes()).update(b"\n");
        }
        made_of.update(b"\0");
        if let Ok(bytes) = std::fs::read(&file) {
            made_of.update(&bytes);
        }
        if file.exists() {
            if let Some(e) = u.add(&file) {
                return Err(SyncError::Config {
                    path: file,
                    detail: e.to_string(),
                });
            }
        }
        let user = u.build().map_err(|e| SyncError::Config {
            path: file,
            detail: e.to_string(),
        })?;
        Ok(IgnoreRules {
            defaults,
            user,
            fingerprint: *made_of.finalize().as_bytes(),
        })
    }

    /// A digest of what the rules were made of: equal digests, the same rules.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// True when `rel` (relative to the root) is ignored. Parents are checked by the walk:
    /// an ignored directory is not descended into.
    pub fn is_ignored(&self, rel: &[u8], is_dir: bool) -> bool {
        // Borrowed, not joined to anything: the rules match paths relative to the root.
        let p = Path::new(std::ffi::OsStr::from_bytes(rel));
        let name = crate::paths::split_parent(rel).1;
        (may_match_a_default(name) && self.defaults.matched(p, is_dir).is_ignore())
            || self.user.matched(p, is_dir).is_ignore()
    }

    /// True when `rel` or one of its parent directories is ignored.
    pub fn is_ignored_with_parents(&self, rel: &[u8], is_dir: bool) -> bool {
        if IgnoreRules::is_internal(rel) {
            return true;
        }
        let p = Path::new(std::ffi::OsStr::from_bytes(rel));
        let hit = |g: &Gitignore| g.matched_path_or_any_parents(p, is_dir).is_ignore();
        hit(&self.defaults) || hit(&self.user)
    }

    /// Leaves out of `tree` what the rules ignore, as [`IgnoreRules::is_ignored_with_parents`]
    /// would, in one ordered pass: a path whose parent directory was kept is judged by its own
    /// name only (its parents were judged already), and only the others by their parents too.
    pub fn retain_unignored(&self, tree: &mut crate::scan::Flat) {
        let mut kept_dirs: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
        // A map is visited in order, so a directory comes before what is in it.
        tree.retain(|p, e| {
            let is_dir = e.kind == cachesync_objects::EntryKind::Dir;
            let parent = crate::paths::split_parent(p).0;
            let ignored = if parent.is_empty() || kept_dirs.contains(parent) {
                IgnoreRules::is_internal(p) || self.is_ignored(p, is_dir)
            } else {
                self.is_ignored_with_parents(p, is_dir)
            };
            if is_dir && !ignored {
                kept_dirs.insert(p.clone());
            }
            !ignored
        });
    }

    /// True for cachesync's own files, which are ignored whatever the user's rules say.
    pub fn is_internal(rel: &[u8]) -> bool {
        let name = crate::paths::split_parent(rel).1;
        rel == META_DIR.as_bytes()
            || rel == MARKER.as_bytes()
            || rel == LOST_FOUND.as_bytes()
            || name.starts_with(TMP_PREFIX.as_bytes())
    }
}

/// False only for a name no pattern of [`DEFAULTS`] can match: every one of them matches
/// a name (the root-anchored ones too), one starting with `.` or `#`, ending with `~`,
/// holding `.sw` or being `4913`. Most names are none of these, and asking the compiled
/// rules costs more than the rest of a workspace walk's look at a file (a status of
/// 100,000 files spent a tenth of its time there). A test holds it to [`DEFAULTS`].
fn may_match_a_default(name: &[u8]) -> bool {
    matches!(name.first(), Some(b'.' | b'#'))
        || name.last() == Some(&b'~')
        || name == b"4913"
        || name.windows(3).any(|w| w == b".sw")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name the built-in rules ignore passes the quick test in front of them: names
    /// made of the characters the patterns name, at the root and deeper, as files and
    /// directories.
    #[test]
    fn the_quick_test_lets_through_every_name_the_defaults_match() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = IgnoreRules::load(dir.path()).expect("load");
        let alphabet: &[&[u8]] = &[
            b".",
            b"#",
            b"~",
            b"sw",
            b"p",
            b"o",
            b"x",
            b"4913",
            b"a",
            b"cachesync",
            b"-tmp",
            b"-remote",
            b"-lost+found",
            b"DS_Store",
            b"swp",
        ];
        let mut names: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..4 {
            let longer: Vec<Vec<u8>> = names
                .iter()
                .flat_map(|n| alphabet.iter().map(move |a| [n.as_slice(), a].concat()))
                .collect();
            names.extend(longer);
        }
        let mut ignored = 0;
        for name in names.iter().filter(|n| !n.is_empty()) {
            for rel in [name.clone(), [b"d/".as_slice(), name].concat()] {
                for is_dir in [false, true] {
                    let p = Path::new(std::ffi::OsStr::from_bytes(&rel));
                    if rules.defaults.matched(p, is_dir).is_ignore() {
                        ignored += 1;
                        assert!(
                            may_match_a_default(name),
                            "{}",
                            String::from_utf8_lossy(&rel)
                        );
                    }
                }
            }
        }
        assert!(ignored > 1000, "the names exercise the patterns: {ignored}");
        for pat in DEFAULTS {
            let name = pat.trim_matches('/').replace(['*', '?'], "x");
            assert!(may_match_a_default(name.as_bytes()), "{pat}");
        }
        assert!(!may_match_a_default(b"main.rs"));
    }

    #[test]
    fn defaults_and_user_rules() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(IGNORE_FILE), "build/\n*.o\n!keep.o\n").expect("write");
        let rules = IgnoreRules::load(dir.path()).expect("load");
        assert!(rules.is_ignored(b".cachesync", true));
        assert!(rules.is_ignored(b"src/.main.rs.swp", false));
        assert!(rules.is_ignored(b"a/.cachesync-tmp.x.1234", false));
        assert!(rules.is_ignored(b"build", true));
        assert!(rules.is_ignored(b"x/y.o", false));
        assert!(!rules.is_ignored(b"keep.o", false));
        assert!(!rules.is_ignored(b"src/main.rs", false));
        assert!(!rules.is_ignored(b"sub/.cachesync", true));
    }

    /// The ordered pass keeps exactly what a path-by-path check with parents keeps, with
    /// ignored directories, re-included names, internal names and a file whose directory
    /// is missing from the tree.
    #[test]
    fn retain_unignored_is_the_check_with_parents() {
        use cachesync_objects::{Entry, EntryKind};
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join(IGNORE_FILE),
            "build/\n*.o\n!keep.o\ndocs/*.tmp\n/top-only\n",
        )
        .expect("write");
        let rules = IgnoreRules::load(dir.path()).expect("load");
        let dirs = [
            "build",
            "build/sub",
            "docs",
            "src",
            "src/build",
            "src/top-only",
            "a",
        ];
        let files = [
            "build/x.c",
            "build/sub/y.c",
            "build/keep.o",
            "docs/a.tmp",
            "docs/a.md",
            "docs/sub/b.tmp",
            "src/main.rs",
            "src/main.o",
            "src/keep.o",
            "src/build/z.c",
            "src/top-only/w",
            "top-only",
            "a/.cachesync-tmp.1",
            ".cachesync-remote",
            "orphan/build/q.c",
            "orphan/ok.txt",
            "a.b",
            "a/c",
        ];
        let mut tree = crate::scan::Flat::new();
        for d in dirs {
            tree.insert(d.as_bytes().to_vec(), Entry::new(b"d", EntryKind::Dir));
        }
        for f in files {
            tree.insert(f.as_bytes().to_vec(), Entry::new(b"f", EntryKind::File));
        }
        let mut want = tree.clone();
        want.retain(|p, e| !rules.is_ignored_with_parents(p, e.kind == EntryKind::Dir));
        let mut got = tree;
        rules.retain_unignored(&mut got);
        let keys = |t: &crate::scan::Flat| -> Vec<String> {
            t.keys()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect()
        };
        assert_eq!(keys(&got), keys(&want));
        assert!(
            !got.contains_key(b"build/sub/y.c".as_slice()),
            "inside an ignored directory"
        );
        assert!(got.contains_key(b"src/keep.o".as_slice()), "re-included");
        assert!(
            !got.contains_key(b"orphan/build/q.c".as_slice()),
            "its directory not listed"
        );
    }
}

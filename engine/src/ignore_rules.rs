//! Ignore rules: `.cachesyncignore` (gitignore syntax) plus built-in defaults.
//!
//! Ignored paths are never synced either way. The defaults cover cachesync's own files (the
//! `.cachesync/` directory, the remote marker, temporary files of interrupted writes) and
//! editors' swap and backup files.

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
        let p = crate::paths::under(Path::new(""), rel);
        let hit = |g: &Gitignore| g.matched(&p, is_dir).is_ignore();
        hit(&self.defaults) || hit(&self.user)
    }

    /// True when `rel` or one of its parent directories is ignored.
    pub fn is_ignored_with_parents(&self, rel: &[u8], is_dir: bool) -> bool {
        if IgnoreRules::is_internal(rel) {
            return true;
        }
        let p = crate::paths::under(Path::new(""), rel);
        let hit = |g: &Gitignore| g.matched_path_or_any_parents(&p, is_dir).is_ignore();
        hit(&self.defaults) || hit(&self.user)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

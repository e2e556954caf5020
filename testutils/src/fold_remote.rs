//! A test double for a remote that folds case (as SMB shares and some NFS exports do): names
//! are kept as created but looked up without regard to ASCII case, so `README` and `Readme`
//! are one file, and renaming onto either replaces it. This kernel has no case-folding file
//! system to test against (ext4 casefold needs CONFIG_UNICODE), hence the double.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cachesync_engine::fs_remote::FsRemote;
use cachesync_engine::paths::{join, split_parent};
use cachesync_engine::remote::{Remote, RemoteEntry, RemoteRead, RemoteWrite};
use cachesync_engine::workspace::RemoteFactory;
use cachesync_objects::EntryKind;

/// A directory remote with case-insensitive, case-preserving lookups.
#[derive(Clone, Debug)]
pub struct FoldRemote {
    inner: FsRemote,
}

impl FoldRemote {
    /// Wraps the directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> FoldRemote {
        FoldRemote {
            inner: FsRemote::new(root),
        }
    }

    /// A [`RemoteFactory`] that reaches every remote directory through a `FoldRemote`.
    pub fn factory() -> RemoteFactory {
        Arc::new(|root: &Path| Arc::new(FoldRemote::new(root)) as Arc<dyn Remote>)
    }

    /// The path as stored: each component replaced by the existing name that matches it
    /// without regard to case, or kept as given where nothing matches.
    fn resolve(&self, path: &[u8]) -> Vec<u8> {
        let mut out: Vec<u8> = Vec::new();
        for part in path.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
            let existing = std::fs::read_dir(self.inner.abs(&out)).ok().and_then(|rd| {
                rd.flatten()
                    .map(|e| cachesync_engine::paths::bytes(Path::new(&e.file_name())).to_vec())
                    .find(|n| n.eq_ignore_ascii_case(part))
            });
            out = join(&out, existing.as_deref().unwrap_or(part));
        }
        out
    }

    /// The path with its parent resolved and its last component as given.
    fn resolve_parent(&self, path: &[u8]) -> Vec<u8> {
        let (parent, name) = split_parent(path);
        join(&self.resolve(parent), name)
    }
}

impl Remote for FoldRemote {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn list(&self, dir: &[u8], tick: &dyn Fn()) -> io::Result<Vec<RemoteEntry>> {
        self.inner.list(&self.resolve(dir), tick)
    }
    fn stat(&self, path: &[u8]) -> io::Result<Option<RemoteEntry>> {
        self.inner.stat(&self.resolve(path))
    }
    fn open(&self, path: &[u8]) -> io::Result<Box<dyn RemoteRead>> {
        self.inner.open(&self.resolve(path))
    }
    fn create(&self, path: &[u8]) -> io::Result<Box<dyn RemoteWrite>> {
        // Exclusive creation fails when the name exists in any case.
        self.inner.create(&self.resolve(path))
    }
    fn rename(&self, from: &[u8], to: &[u8]) -> io::Result<()> {
        let src = self.resolve(from);
        let existing = self.resolve(to);
        let wanted = self.resolve_parent(to);
        if existing != wanted && src != existing {
            // Replaces the file that holds the name in another case, keeping the new case.
            self.inner.rename(&src, &existing)?;
            return self.inner.rename(&existing, &wanted);
        }
        self.inner.rename(&src, &wanted)
    }
    fn remove_file(&self, path: &[u8]) -> io::Result<()> {
        self.inner.remove_file(&self.resolve(path))
    }
    fn remove_dir(&self, path: &[u8]) -> io::Result<()> {
        self.inner.remove_dir(&self.resolve(path))
    }
    fn mkdir(&self, path: &[u8], mode: u32) -> io::Result<()> {
        self.inner.mkdir(&self.resolve(path), mode)
    }
    fn set_mode(&self, path: &[u8], mode: u32) -> io::Result<()> {
        self.inner.set_mode(&self.resolve(path), mode)
    }
    fn symlink(&self, target: &[u8], path: &[u8]) -> io::Result<()> {
        self.inner.symlink(target, &self.resolve(path))
    }
    fn mknod(&self, path: &[u8], kind: EntryKind, mode: u32, rdev: u64) -> io::Result<()> {
        self.inner.mknod(&self.resolve(path), kind, mode, rdev)
    }
    fn canonical_root(&self) -> io::Result<PathBuf> {
        self.inner.canonical_root()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_fold_case_and_names_keep_theirs() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("Docs")).expect("mkdir");
        std::fs::write(dir.path().join("Docs/Readme"), "r").expect("write");
        let remote = FoldRemote::new(dir.path());
        let e = remote.stat(b"docs/README").expect("stat").expect("found");
        assert_eq!(e.name, b"Readme");
        assert!(
            remote.create(b"DOCS/readme").is_err(),
            "the name exists in another case"
        );

        // Renaming onto another case of an existing name replaces it, keeping the new case.
        std::fs::write(dir.path().join("new"), "n").expect("write");
        remote.rename(b"new", b"docs/README").expect("rename");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("Docs"))
            .expect("list")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["README"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("Docs/README")).expect("read"),
            "n"
        );
    }
}

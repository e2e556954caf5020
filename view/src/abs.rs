//! Workspace paths the kernel can take whatever their length.
//!
//! A path through the view may be as long as PATH_MAX allows counted from the mount point;
//! the same file in the workspace is further down (the workspace root comes first), so its
//! absolute path can pass PATH_MAX and every call on it fail with ENAMETOOLONG. Such a path
//! is reached through its parent directory instead: the directories are opened one by one
//! from the root (`O_PATH`, each name short), and the file is named as
//! `/proc/self/fd/N/NAME`, short whatever the depth, for as long as the [`Abs`] lives.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

/// Absolute paths at least this long go through their parent directory (PATH_MAX is 4096
/// with its terminating NUL; the margin keeps `/proc/self/fd/N/` plus a name well inside).
const LONG: usize = 3800;

/// A workspace file's path, usable with any file call while this lives.
#[derive(Debug)]
pub struct Abs {
    path: PathBuf,
    /// The parent directory the path goes through, for a long one.
    _dir: Option<OwnedFd>,
}

impl Abs {
    /// The workspace file `rel` (relative, `/`-separated) under `root`.
    pub fn new(root: &Path, rel: &[u8]) -> Abs {
        let full = cachesync_engine::paths::under(root, rel);
        if full.as_os_str().len() < LONG {
            return Abs {
                path: full,
                _dir: None,
            };
        }
        let (parent, name) = cachesync_engine::paths::split_parent(rel);
        match open_dir(root, parent) {
            Ok(dir) => {
                let mut path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
                path.push(OsStr::from_bytes(name));
                Abs {
                    path,
                    _dir: Some(dir),
                }
            }
            // A missing directory on the way: the call on the full path fails as it must
            // (ENAMETOOLONG at worst).
            Err(_) => Abs {
                path: full,
                _dir: None,
            },
        }
    }
}

/// Opens the directory `rel` under `root` one name at a time.
fn open_dir(root: &Path, rel: &[u8]) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut dir = rustix::fs::open(root, flags, Mode::empty())?;
    for name in rel.split(|&b| b == b'/').filter(|n| !n.is_empty()) {
        dir = rustix::fs::openat(&dir, OsStr::from_bytes(name), flags, Mode::empty())?;
    }
    Ok(dir)
}

impl std::ops::Deref for Abs {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for Abs {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_longer_than_path_max_is_reached_through_its_parent() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let name = "d".repeat(250);
        let mut rel = Vec::new();
        for _ in 0..20 {
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.as_bytes());
            std::fs::create_dir(Abs::new(tmp.path(), &rel)).expect("mkdir");
        }
        rel.extend_from_slice(b"/file");
        assert!(
            cachesync_engine::paths::under(tmp.path(), &rel)
                .as_os_str()
                .len()
                > 4096
        );
        std::fs::write(Abs::new(tmp.path(), &rel), b"deep").expect("write");
        assert_eq!(
            std::fs::read(Abs::new(tmp.path(), &rel)).expect("read"),
            b"deep"
        );
        std::fs::remove_file(Abs::new(tmp.path(), &rel)).expect("unlink");
        assert!(Abs::new(tmp.path(), &rel).symlink_metadata().is_err());
        let short = Abs::new(tmp.path(), b"a");
        assert_eq!(&*short, tmp.path().join("a"), "a short path is itself");
    }
}

//! The remote: a directory reached through ordinary file-system calls.
//!
//! [`Remote`] is the small set of calls cachesync makes (list, stat, read, create, rename,
//! remove, ...). [`crate::fs_remote::FsRemote`] implements it with plain calls on a mounted
//! directory; [`crate::timed::TimedRemote`] runs every call with a timeout and turns
//! network-class failures into "disconnected" (never "deleted"). Paths are relative, as bytes,
//! `/`-separated; the empty path is the remote root.

use std::io::{self, Read};

use cachesync_objects::EntryKind;

/// What [`Remote::read_small`] gives: the bytes and the attributes after the read, or
/// `None` when the file is larger than asked.
pub type SmallRead = Option<(Vec<u8>, RemoteEntry)>;

/// One directory entry as the remote reports it (attributes come with the listing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteEntry {
    /// The name (last component).
    pub name: Vec<u8>,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Size.
    pub size: u64,
    /// The remote's inode number (never an identity: sshfs renumbers at every mount).
    pub ino: u64,
    /// Device number, for devices.
    pub rdev: u64,
    /// Symlink target, for symlinks.
    pub target: Vec<u8>,
    /// For a symlink the listing shows but whose target could not be read: the errno, and
    /// `target` is empty. sshfs refuses targets that are absolute or contain `..` (EPERM); a
    /// listing does not fail for one such entry, the scan decides what it means (see
    /// [`crate::scan::Unreadable`]).
    pub target_errno: Option<i32>,
}

/// A file being read from the remote.
pub trait RemoteRead: io::Read + Send {
    /// Closes the file, returning once the remote has closed it. A file dropped instead is
    /// closed too, but nothing waits for that: a step that removes or renames over the file
    /// must come after this returns (a FUSE mount such as sshfs keeps a file removed while
    /// open as `.fuse_hidden*`).
    ///
    /// # Errors
    /// The underlying I/O error.
    fn close(self: Box<Self>) -> io::Result<()>;
}

impl RemoteRead for std::fs::File {
    fn close(self: Box<Self>) -> io::Result<()> {
        drop(self);
        Ok(())
    }
}

/// A new file being written on the remote (under a temporary name).
pub trait RemoteWrite: io::Write + Send {
    /// Sets mode and mtime, fsyncs and closes. Only after this succeeds may the file be
    /// renamed over its real name.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn finish(self: Box<Self>, mode: u32, mtime_ns: i64) -> io::Result<()>;

    /// Closes a file given up before [`RemoteWrite::finish`], returning once the remote has
    /// closed it (see [`RemoteRead::close`]).
    ///
    /// # Errors
    /// The underlying I/O error.
    fn close(self: Box<Self>) -> io::Result<()> {
        drop(self);
        Ok(())
    }

    /// Appends `len` bytes of the remote file `src`, from offset `from`, copied on the server
    /// (`copy_file_range`): the bytes never travel to this machine. Only called when
    /// [`Remote::copies_on_server`] says the share can.
    ///
    /// # Errors
    /// The underlying I/O error; `Unsupported` where the remote has no such call.
    fn copy_range(&mut self, src: &[u8], from: u64, len: u64) -> io::Result<()> {
        let _ = (src, from, len);
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Writes all of `data` at offset `at` (a file opened with [`Remote::open_in_place`]).
    ///
    /// # Errors
    /// The underlying I/O error; `Unsupported` where the remote has no such call.
    fn write_at(&mut self, at: u64, data: &[u8]) -> io::Result<()> {
        let _ = (at, data);
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Cuts or extends the file to `len` bytes.
    ///
    /// # Errors
    /// The underlying I/O error; `Unsupported` where the remote has no such call.
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let _ = len;
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// The calls cachesync makes on a remote. Implementations make plain calls and may block;
/// [`crate::timed::TimedRemote`] bounds them.
pub trait Remote: Send + Sync + 'static {
    /// The remote root, for messages.
    fn describe(&self) -> String;
    /// Lists a directory with each entry's attributes. A directory that cannot be read is an
    /// error, never an empty listing. `tick` is called after each entry, so that a large
    /// directory on a slow link is bounded per call, not as a whole.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn list(&self, dir: &[u8], tick: &dyn Fn()) -> io::Result<Vec<RemoteEntry>>;
    /// The attributes of one path (not following symlinks); `None` if it does not exist.
    ///
    /// # Errors
    /// The underlying I/O error (other than "not found").
    fn stat(&self, path: &[u8]) -> io::Result<Option<RemoteEntry>>;
    /// Opens a file for reading.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn open(&self, path: &[u8]) -> io::Result<Box<dyn RemoteRead>>;
    /// A whole file of at most `max` bytes, and its attributes as they were after the read,
    /// in one call; the file is closed (the close done) before this returns. `Ok(None)`
    /// when it holds more than `max` bytes (then read it with [`Remote::open`]). The helper
    /// process answers it in one round trip instead of four (open, read, close, stat): most
    /// of a small file's cost in a first copy.
    ///
    /// # Errors
    /// The underlying I/O error ("not found" when the file went between the read and the
    /// stat).
    fn read_small(&self, path: &[u8], max: u64) -> io::Result<SmallRead> {
        read_small_with(self, path, max, || {})
    }
    /// [`Remote::read_small`] of several files in one call: one result per path, in their
    /// order, each file's own error in its result; `tick` is called after each file, so that
    /// a call reading many files over a slow link is bounded per file, not as a whole. A
    /// first copy of many small files makes one call per batch instead of one per file
    /// (each call crosses two thread pools and the helper's pipe both ways).
    ///
    /// # Errors
    /// Only a failure of the call itself (the helper process gone, say).
    fn read_small_many(
        &self,
        paths: &[Vec<u8>],
        max: u64,
        tick: &dyn Fn(),
    ) -> io::Result<Vec<io::Result<SmallRead>>> {
        Ok(paths
            .iter()
            .map(|p| {
                let read = self.read_small(p, max);
                tick();
                read
            })
            .collect())
    }
    /// Whether the share copies a range of one of its files into another on the server,
    /// without the bytes crossing the network (local file systems; NFS 4.2; SMB). Where it
    /// does, a big file is patched by copying it to a temporary and writing only what
    /// changed ([`RemoteWrite::copy_range`]).
    ///
    /// # Errors
    /// The underlying I/O error.
    fn copies_on_server(&self) -> io::Result<bool> {
        Ok(false)
    }
    /// Opens an existing file for writing in place ([`RemoteWrite::write_at`],
    /// [`RemoteWrite::set_len`]); its content is kept.
    ///
    /// # Errors
    /// The underlying I/O error; `Unsupported` where the remote has no such call.
    fn open_in_place(&self, path: &[u8]) -> io::Result<Box<dyn RemoteWrite>> {
        let _ = path;
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Creates a new file, failing if it exists.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn create(&self, path: &[u8]) -> io::Result<Box<dyn RemoteWrite>>;
    /// Renames `from` over `to` (atomically replacing a file at `to`).
    ///
    /// # Errors
    /// The underlying I/O error.
    fn rename(&self, from: &[u8], to: &[u8]) -> io::Result<()>;
    /// Renames `from` to `to` without a window for a third party: with `exchange` false,
    /// only if nothing is at `to` (`RENAME_NOREPLACE`: AlreadyExists otherwise); with
    /// `exchange` true, swapping what is at the two names (`RENAME_EXCHANGE`). `Ok(false)`
    /// when the file system cannot (sshfs and most network file systems): the caller then
    /// checks and renames, with a short window between the two.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn rename_atomic(&self, from: &[u8], to: &[u8], exchange: bool) -> io::Result<bool> {
        let _ = (from, to, exchange);
        Ok(false)
    }
    /// Removes a file, symlink or special file.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn remove_file(&self, path: &[u8]) -> io::Result<()>;
    /// Removes an empty directory.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn remove_dir(&self, path: &[u8]) -> io::Result<()>;
    /// Creates a directory.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn mkdir(&self, path: &[u8], mode: u32) -> io::Result<()>;
    /// Sets permission bits (not on symlinks).
    ///
    /// # Errors
    /// The underlying I/O error.
    fn set_mode(&self, path: &[u8], mode: u32) -> io::Result<()>;
    /// Creates a symlink.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn symlink(&self, target: &[u8], path: &[u8]) -> io::Result<()>;
    /// Creates a fifo, socket node or device.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn mknod(&self, path: &[u8], kind: EntryKind, mode: u32, rdev: u64) -> io::Result<()>;
    /// The remote root with symlinks resolved (to find the mount it lives on).
    ///
    /// # Errors
    /// The underlying I/O error.
    fn canonical_root(&self) -> io::Result<std::path::PathBuf>;
}

/// [`Remote::read_small`] made of the other calls; `before_close` runs between the read and
/// the close (the helper's pause point).
///
/// # Errors
/// As [`Remote::read_small`].
pub fn read_small_with<R: Remote + ?Sized>(
    remote: &R,
    path: &[u8],
    max: u64,
    before_close: impl FnOnce(),
) -> io::Result<SmallRead> {
    let mut file = remote.open(path)?;
    let bytes = read_up_to(&mut file, max + 1)?;
    before_close();
    file.close()?;
    if bytes.len() as u64 > max {
        return Ok(None);
    }
    let after = remote
        .stat(path)?
        .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
    Ok(Some((bytes, after)))
}

/// The first read of a small file asks for this many bytes (fewer if that is more than
/// it may hold). `read_to_end` into an empty buffer asks for 32 bytes, then twice as many
/// each time: the kernel sizes its readahead from the request, so a 40 KB file on a FUSE
/// share was two or three round trips of reads (sshfs at +20 ms: 23-37 ms, then 28 and 9),
/// and a dozen `read` calls on any share.
const FIRST_READ: usize = 64 << 10;

thread_local! {
    /// Each thread's read buffer for [`read_up_to`], kept from file to file (a fresh one
    /// would be cleared for every file).
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Reads `file` to its end, or to `limit` bytes if it holds more: [`FIRST_READ`] bytes
/// asked at once, then twice as many at each call.
fn read_up_to(file: &mut dyn Read, limit: u64) -> io::Result<Vec<u8>> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    READ_BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        let mut filled = 0;
        let result = loop {
            if filled == buf.len() {
                if filled >= limit {
                    break Ok(());
                }
                // Strictly more than `filled`, as `filled < limit`.
                buf.resize((filled * 2).max(FIRST_READ).min(limit), 0);
            }
            match file.read(&mut buf[filled..]) {
                Ok(0) => break Ok(()),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        let bytes = buf[..filled].to_vec();
        // A big file's buffer is not kept for the next small one.
        if buf.len() > 4 * FIRST_READ {
            buf.truncate(FIRST_READ);
            buf.shrink_to_fit();
        }
        result.map(|()| bytes)
    })
}

/// True for the errors that mean "the remote is not answering" rather than "no such file":
/// ETIMEDOUT, ENOTCONN, EIO, ESTALE, EHOSTDOWN, EHOSTUNREACH, ECONNABORTED, ECONNRESET,
/// ENETUNREACH, ENETDOWN, ECONNREFUSED.
pub fn is_network_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ETIMEDOUT
                | libc::ENOTCONN
                | libc::EIO
                | libc::ESTALE
                | libc::EHOSTDOWN
                | libc::EHOSTUNREACH
                | libc::ECONNABORTED
                | libc::ECONNRESET
                | libc::ENETUNREACH
                | libc::ENETDOWN
                | libc::ECONNREFUSED
        )
    ) || matches!(
        e.kind(),
        io::ErrorKind::TimedOut
            | io::ErrorKind::NotConnected
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader of `len` bytes (byte `i` is `i as u8`) that gives at most `chunk` bytes a
    /// call, fails once with EINTR first, and records the size of every buffer it is given.
    struct Recorder {
        len: usize,
        pos: usize,
        chunk: usize,
        interrupted: bool,
        asked: Vec<usize>,
    }

    impl Read for Recorder {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.asked.push(buf.len());
            if !self.interrupted {
                self.interrupted = true;
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(self.chunk).min(self.len - self.pos);
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = (self.pos + i) as u8;
            }
            self.pos += n;
            Ok(n)
        }
    }

    #[test]
    fn a_small_file_is_read_whole_up_to_the_limit_asking_for_much_at_once() {
        let limit = 3 * FIRST_READ as u64 + 5;
        for len in [
            0,
            1,
            FIRST_READ - 1,
            FIRST_READ,
            FIRST_READ + 1,
            limit as usize - 1,
            limit as usize,
            limit as usize + 1,
            10 * FIRST_READ,
        ] {
            for chunk in [7, 4096, usize::MAX] {
                let mut r = Recorder {
                    len,
                    pos: 0,
                    chunk,
                    interrupted: false,
                    asked: Vec::new(),
                };
                let got = read_up_to(&mut r, limit).expect("read");
                let want: Vec<u8> = (0..len.min(limit as usize)).map(|i| i as u8).collect();
                assert_eq!(got, want, "len {len}, chunk {chunk}");
                assert!(
                    r.asked[1] >= FIRST_READ,
                    "first real read: {:?}",
                    &r.asked[..2]
                );
                assert!(r.asked.iter().all(|&a| a > 0), "never an empty buffer");
                if chunk == usize::MAX {
                    // A file that fits is read by one call, and one that says it is over.
                    assert!(r.asked.len() <= 2 + 3, "len {len}: {:?}", r.asked);
                }
            }
        }
        // The buffer of a big read is not kept at its size.
        READ_BUF.with(|b| assert!(b.borrow().len() <= 4 * FIRST_READ));
    }
}

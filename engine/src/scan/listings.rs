//! Directory listings kept between statuses, as git's untracked cache keeps them: a
//! directory whose stat is as it was when it was read holds the names it held then, so a
//! status's walk stats those names instead of reading the directory again.
//!
//! Reading the directories is most of what a walk costs beyond its stats: on the Linux
//! source (78,579 files in 5,000 directories), `find` with a stat per entry spent 187 ms in
//! the kernel, and 74 ms of that reading directories.
//!
//! Why a listing can be trusted: creating, removing or renaming an entry sets the
//! directory's mtime and ctime to the time of the change, and nothing sets a ctime back. A
//! listing is kept with the directory's device, inode, mtime and ctime as they were stat'ed
//! *before* it was read (so the names are at least as new as the stat), and only when that
//! mtime and ctime are older than the walk's start by more than
//! [`crate::index::RACY_WINDOW_NS`]: a change after the reading then leaves a later time,
//! even on a file system whose clock ticks coarsely. Each listing stands on its own (it
//! names no answer and no other listing), so any walk may keep them and any walk may use
//! them, and a listing that no longer holds is never used: its directory's stat differs.
//!
//! Kept in `.cachesync/status-dirs`, written aside and renamed, with a blake3 of the rest
//! at its end: a file that does not check out is not read.

use std::collections::HashMap;
use std::path::Path;

/// The file beside the store that holds the listings.
const FILE: &str = "status-dirs";

/// What tells a directory unchanged since its listing was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirKey {
    /// The file system's device.
    pub dev: u64,
    /// The directory's inode.
    pub ino: u64,
    /// Its mtime, ns.
    pub mtime_ns: i64,
    /// Its ctime, ns.
    pub ctime_ns: i64,
}

impl DirKey {
    /// The key of the directory at `path` (not followed if a symlink), as a stat shows it
    /// now.
    ///
    /// # Errors
    /// The stat's.
    pub fn of(path: &Path) -> std::io::Result<DirKey> {
        let st = rustix::fs::statx(
            rustix::fs::CWD,
            path,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            rustix::fs::StatxFlags::BASIC_STATS,
        )?;
        Ok(DirKey {
            dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
            mtime_ns: ns(st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec),
            ctime_ns: ns(st.stx_ctime.tv_sec, st.stx_ctime.tv_nsec),
        })
    }

    /// Whether a listing read after a stat giving this key may be kept by a walk begun at
    /// `begun_ns`.
    pub fn settled(&self, begun_ns: i64) -> bool {
        self.mtime_ns.max(self.ctime_ns) < begun_ns.saturating_sub(crate::index::RACY_WINDOW_NS)
    }
}

/// Nanoseconds of a statx time.
pub fn ns(sec: i64, nsec: u32) -> i64 {
    sec.saturating_mul(1_000_000_000)
        .saturating_add(i64::from(nsec))
}

/// One directory's listing: its key and the names in it, each laid out as its length (two
/// bytes, little endian) then its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirListing {
    /// The directory's key, stat'ed before it was read.
    pub key: DirKey,
    names: Vec<u8>,
}

impl DirListing {
    /// A listing of no name yet.
    pub fn new(key: DirKey) -> DirListing {
        DirListing {
            key,
            names: Vec::new(),
        }
    }

    /// Adds a name (a name has at most 255 bytes on every file system Linux has).
    pub fn push(&mut self, name: &[u8]) {
        let len = u16::try_from(name.len()).expect("a file name is under 64 KiB");
        self.names.extend_from_slice(&len.to_le_bytes());
        self.names.extend_from_slice(name);
    }

    /// The names, in the order they were added.
    pub fn names(&self) -> Names<'_> {
        Names(&self.names)
    }
}

/// The names of a [`DirListing`].
pub struct Names<'a>(&'a [u8]);

impl<'a> Iterator for Names<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (len, rest) = self.0.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_le_bytes(*len));
        let (name, rest) = rest.split_at_checked(len)?;
        self.0 = rest;
        Some(name)
    }
}

/// The listings kept, by directory (relative to the workspace root; the root is empty).
#[derive(Default, Debug)]
pub struct Listings(HashMap<Vec<u8>, DirListing>);

impl Listings {
    /// The listings kept in the workspace whose metadata directory is `meta`; none when the
    /// file is missing or does not check out.
    pub fn read(meta: &Path) -> Listings {
        std::fs::read(meta.join(FILE))
            .ok()
            .and_then(|bytes| decode(&bytes))
            .unwrap_or_default()
    }

    /// The listing of `dir`, if it still holds: the directory's key is `now`.
    pub fn get(&self, dir: &[u8], now: &DirKey) -> Option<&DirListing> {
        self.0.get(dir).filter(|l| l.key == *now)
    }

    /// How many directories have a listing.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none has.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Keeps `listed` as the listings, in place of those kept (best effort: a workspace
    /// whose metadata directory cannot be written keeps reading its directories).
    pub fn write(meta: &Path, listed: &[(Vec<u8>, DirListing)]) {
        let bytes = encode(listed);
        let aside = meta.join(format!("{FILE}.new"));
        let _ =
            std::fs::write(&aside, &bytes).and_then(|()| std::fs::rename(&aside, meta.join(FILE)));
    }
}

fn encode(listed: &[(Vec<u8>, DirListing)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(listed.len() as u64).to_le_bytes());
    for (dir, l) in listed {
        out.extend_from_slice(&(dir.len() as u32).to_le_bytes());
        out.extend_from_slice(dir);
        for field in [
            l.key.dev,
            l.key.ino,
            l.key.mtime_ns as u64,
            l.key.ctime_ns as u64,
        ] {
            out.extend_from_slice(&field.to_le_bytes());
        }
        out.extend_from_slice(&(l.names.len() as u32).to_le_bytes());
        out.extend_from_slice(&l.names);
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

fn decode(bytes: &[u8]) -> Option<Listings> {
    let (body, sum) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
    if blake3::hash(body).as_bytes() != sum {
        return None;
    }
    let mut r = Reader(body);
    let count = r.u64()?;
    let mut map = HashMap::with_capacity(usize::try_from(count).ok()?.min(1 << 20));
    for _ in 0..count {
        let len = r.u32()? as usize;
        let dir = r.take(len)?.to_vec();
        let key = DirKey {
            dev: r.u64()?,
            ino: r.u64()?,
            mtime_ns: r.u64()? as i64,
            ctime_ns: r.u64()? as i64,
        };
        let len = r.u32()? as usize;
        let names = r.take(len)?.to_vec();
        let listing = DirListing { key, names };
        // Names that do not lay out whole: the file is not ours.
        if listing.names().map(<[u8]>::len).sum::<usize>() + 2 * listing.names().count()
            != listing.names.len()
        {
            return None;
        }
        map.insert(dir, listing);
    }
    r.0.is_empty().then_some(Listings(map))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> DirKey {
        DirKey {
            dev: 1,
            ino: n,
            mtime_ns: 10 * n as i64,
            ctime_ns: 11 * n as i64,
        }
    }

    #[test]
    fn listings_read_back_as_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut a = DirListing::new(key(1));
        for name in [&b"x"[..], b"", b"a name with spaces", &[0xff; 255]] {
            a.push(name);
        }
        let b = DirListing::new(key(2));
        Listings::write(dir.path(), &[(Vec::new(), a.clone()), (b"d/e".to_vec(), b)]);
        let read = Listings::read(dir.path());
        assert_eq!(read.len(), 2);
        let got = read.get(b"", &key(1)).expect("the root's listing");
        assert_eq!(got, &a);
        assert_eq!(got.names().count(), 4);
        assert_eq!(got.names().last(), Some(&[0xff; 255][..]));
        assert!(read.get(b"d/e", &key(2)).is_some());
        // Another key: the directory changed since.
        assert!(read.get(b"d/e", &key(3)).is_none());
        assert!(read.get(b"d", &key(2)).is_none());
    }

    #[test]
    fn a_damaged_file_is_not_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut a = DirListing::new(key(1));
        a.push(b"name");
        Listings::write(dir.path(), &[(b"d".to_vec(), a)]);
        let path = dir.path().join(FILE);
        let good = std::fs::read(&path).expect("read");
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            std::fs::write(&path, &bad).expect("write");
            assert!(Listings::read(dir.path()).is_empty(), "byte {at} flipped");
        }
        std::fs::write(&path, &good[..good.len() - 1]).expect("write");
        assert!(Listings::read(dir.path()).is_empty(), "cut short");
    }

    #[test]
    fn a_listing_is_kept_only_when_its_directory_settled_before_the_walk() {
        let begun = 100 * crate::index::RACY_WINDOW_NS;
        let window = crate::index::RACY_WINDOW_NS;
        let at = |t: i64| DirKey {
            dev: 1,
            ino: 1,
            mtime_ns: t,
            ctime_ns: 0,
        };
        assert!(at(begun - window - 1).settled(begun));
        assert!(!at(begun - window).settled(begun));
        assert!(!at(begun + 1).settled(begun));
        let ctime_late = DirKey {
            ctime_ns: begun,
            ..at(0)
        };
        assert!(!ctime_late.settled(begun));
    }
}

//! Deterministic trees: the same seed gives the same directories, names, sizes and bytes on
//! every machine (a pinned generator, splitmix64, not a library's that may change).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// splitmix64 (the tests' own generator, `cachesync_testutils::Rng`): small, fast, and fixed
/// forever.
pub struct Rng(cachesync_testutils::Rng);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(cachesync_testutils::Rng(seed))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for piece in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            piece.copy_from_slice(&v[..piece.len()]);
        }
    }
}

const WORDS: &[&str] = &[
    "src", "lib", "docs", "test", "assets", "util", "core", "net", "data", "build", "report",
    "image", "config", "model", "view", "client", "server", "cache", "index", "notes",
];

/// What [`generate`] made.
#[derive(Debug, Clone, Default)]
pub struct Made {
    /// Regular files, relative to the root, in creation order.
    pub files: Vec<PathBuf>,
    /// Directories created (the root not counted).
    pub dirs: usize,
    /// Bytes in all files.
    pub bytes: u64,
}

impl Made {
    /// Writes `content` at `rel` under `root` and counts it.
    fn add(&mut self, root: &Path, rel: PathBuf, content: &[u8]) -> io::Result<()> {
        write(&root.join(&rel), content)?;
        self.bytes += content.len() as u64;
        self.files.push(rel);
        Ok(())
    }
}

/// Writes a tree of `files` files totalling about `total` bytes under `root` (created if
/// missing): directories of about 20 files, up to 5 deep; mostly small files, a few large
/// ones; half text (compressible), half random bytes.
///
/// # Errors
/// I/O errors.
pub fn generate(root: &Path, files: usize, total: u64, seed: u64) -> io::Result<Made> {
    let mut rng = Rng::new(seed);
    // Sizes first (80% small, 17% medium, 3% large), then scaled to the total.
    let raw: Vec<u64> = (0..files)
        .map(|_| match rng.below(100) {
            0..=79 => 200 + rng.below(16 * 1024),
            80..=96 => 16 * 1024 + rng.below(240 * 1024),
            _ => 256 * 1024 + rng.below(4 * 1024 * 1024),
        })
        .collect();
    let sum: u64 = raw.iter().sum::<u64>().max(1);
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let sizes: Vec<u64> = raw
        .iter()
        .map(|&s| ((s as f64) * (total as f64) / (sum as f64)).max(1.0) as u64)
        .collect();

    fs::create_dir_all(root)?;
    let mut dirs: Vec<(PathBuf, usize)> = vec![(PathBuf::new(), 0)];
    let mut made = Made::default();
    let mut buf = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        if rng.below(20) == 0 || dirs.len() == 1 && i > 0 && rng.below(4) == 0 {
            add_dir(&mut rng, root, &mut dirs, 5)?;
        }
        let dir = dirs[usize_below(&mut rng, dirs.len())].0.clone();
        let text = rng.below(2) == 0;
        let ext = if text { "txt" } else { "bin" };
        let word = WORDS[usize_below(&mut rng, WORDS.len())];
        let rel = dir.join(format!("{word}-{i}.{ext}"));
        fill(&mut rng, &mut buf, size, text);
        made.add(root, rel, &buf)?;
    }
    made.dirs = dirs.len() - 1;
    Ok(made)
}

/// Creates a directory under one of `dirs` less than `max_depth` deep (chosen by `rng`) and
/// adds it to `dirs` (relative path, depth).
fn add_dir(
    rng: &mut Rng,
    root: &Path,
    dirs: &mut Vec<(PathBuf, usize)>,
    max_depth: usize,
) -> io::Result<()> {
    let parents: Vec<usize> = (0..dirs.len()).filter(|&d| dirs[d].1 < max_depth).collect();
    let (parent, depth) = dirs[parents[usize_below(rng, parents.len())]].clone();
    let word = WORDS[usize_below(rng, WORDS.len())];
    let dir = parent.join(format!("{word}{}", dirs.len()));
    fs::create_dir(root.join(&dir))?;
    dirs.push((dir, depth + 1));
    Ok(())
}

fn usize_below(rng: &mut Rng, n: usize) -> usize {
    usize::try_from(rng.below(n as u64)).expect("below a usize")
}

/// `size` bytes of text (lines of words) or of random bytes.
pub fn fill(rng: &mut Rng, buf: &mut Vec<u8>, size: u64, text: bool) {
    let size = usize::try_from(size).expect("a file fits in memory");
    buf.clear();
    if text {
        while buf.len() < size {
            let word = WORDS[usize_below(rng, WORDS.len())];
            buf.extend_from_slice(word.as_bytes());
            buf.push(if rng.below(10) == 0 { b'\n' } else { b' ' });
        }
        buf.truncate(size);
    } else {
        buf.resize(size, 0);
        rng.fill(buf);
    }
}

fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(bytes)
}

/// Rewrites `count` of `made`'s files (chosen by `seed`) with new bytes of the same size,
/// and dates them `round` seconds after a fixed time, so that size and mtime checks see the
/// change however coarse the file system's clock. Returns the paths changed.
///
/// # Errors
/// I/O errors.
pub fn change_files(
    root: &Path,
    made: &Made,
    count: usize,
    seed: u64,
    round: u64,
) -> io::Result<Vec<PathBuf>> {
    let mut rng = Rng::new(seed ^ 0xC4A1_6E5E);
    let mut changed = Vec::new();
    let mut buf = Vec::new();
    while changed.len() < count.min(made.files.len()) {
        let rel = &made.files[usize_below(&mut rng, made.files.len())];
        if changed.contains(rel) {
            continue;
        }
        let path = root.join(rel);
        let size = fs::metadata(&path)?.len();
        let text = rel.extension().is_some_and(|e| e == "txt");
        fill(&mut rng, &mut buf, size, text);
        write(&path, &buf)?;
        stamp(&path, round)?;
        changed.push(rel.clone());
    }
    Ok(changed)
}

/// Sets `path`'s mtime to a fixed date plus `round` seconds.
///
/// # Errors
/// I/O errors.
pub fn stamp(path: &Path, round: u64) -> io::Result<()> {
    // 2026-01-01T00:00:00Z, then a minute per round.
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600 + 60 * (round + 1));
    fs::File::options()
        .write(true)
        .open(path)?
        .set_modified(when)
}

/// Writes `files` small files (200 B to 8 KiB, half text) under `root`, in directories of
/// about 50, up to 4 deep.
///
/// # Errors
/// I/O errors.
pub fn generate_small(root: &Path, files: usize, seed: u64) -> io::Result<Made> {
    let mut rng = Rng::new(seed);
    fs::create_dir_all(root)?;
    let mut dirs: Vec<(PathBuf, usize)> = vec![(PathBuf::new(), 0)];
    let mut made = Made::default();
    let mut buf = Vec::new();
    for i in 0..files {
        if i % 50 == 0 {
            add_dir(&mut rng, root, &mut dirs, 4)?;
        }
        let dir = dirs[usize_below(&mut rng, dirs.len())].0.clone();
        let text = rng.below(2) == 0;
        let size = 200 + rng.below(8 * 1024 - 200);
        let rel = dir.join(format!("f{i}.{}", if text { "txt" } else { "bin" }));
        fill(&mut rng, &mut buf, size, text);
        made.add(root, rel, &buf)?;
    }
    made.dirs = dirs.len() - 1;
    Ok(made)
}

/// Writes one file of `size` random bytes at `path`, in 8 MiB pieces.
///
/// # Errors
/// I/O errors.
pub fn generate_one(path: &Path, size: u64, seed: u64) -> io::Result<()> {
    let mut rng = Rng::new(seed);
    let mut f = io::BufWriter::new(fs::File::create(path)?);
    let mut buf = vec![0u8; 8 << 20];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64)).expect("at most 8 MiB");
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()
}

/// Inverts the byte at offset `at` of `path`, in place (size unchanged, mtime now).
///
/// # Errors
/// I/O errors.
pub fn flip_byte(path: &Path, at: u64) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = fs::File::options().read(true).write(true).open(path)?;
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at))?;
    f.read_exact(&mut b)?;
    b[0] = !b[0];
    f.seek(SeekFrom::Start(at))?;
    f.write_all(&b)
}

/// The 4 KiB of `path` from offset `at` (or fewer at the end).
///
/// # Errors
/// I/O errors.
pub fn window(path: &Path, at: u64) -> io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = fs::File::open(path)?;
    f.seek(SeekFrom::Start(at))?;
    let mut buf = Vec::new();
    f.take(4096).read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generator is splitmix64 itself: its published first outputs for seed 0 (trees
    /// measured on other days stay byte for byte the same).
    #[test]
    fn the_generator_is_splitmix64() {
        let mut rng = Rng::new(0);
        let first: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        assert_eq!(
            first,
            [
                0xE220_A839_7B1D_CDAF,
                0x6E78_9E6A_A1B9_65F4,
                0x06C4_5D18_8009_454F
            ]
        );
    }

    #[test]
    fn same_seed_same_tree_other_seed_other_tree() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        let c = tempfile::tempdir().expect("tempdir");
        let ma = generate(a.path(), 300, 3_000_000, 7).expect("generate a");
        let mb = generate(b.path(), 300, 3_000_000, 7).expect("generate b");
        let mc = generate(c.path(), 300, 3_000_000, 8).expect("generate c");
        assert_eq!(ma.files, mb.files);
        assert_eq!(ma.files.len(), 300);
        assert!(ma.dirs >= 5, "only {} directories", ma.dirs);
        // Within a percent of the asked total (rounding per file).
        assert!(ma.bytes.abs_diff(3_000_000) < 30_000, "{} bytes", ma.bytes);
        for f in &ma.files {
            assert_eq!(
                fs::read(a.path().join(f)).ok(),
                fs::read(b.path().join(f)).ok()
            );
        }
        assert_ne!(ma.files, mc.files);
    }

    #[test]
    fn change_files_changes_content_and_mtime() {
        let a = tempfile::tempdir().expect("tempdir");
        let made = generate(a.path(), 50, 500_000, 1).expect("generate");
        let before: Vec<_> = made
            .files
            .iter()
            .map(|f| fs::read(a.path().join(f)).ok())
            .collect();
        let changed = change_files(a.path(), &made, 10, 1, 0).expect("change");
        assert_eq!(changed.len(), 10);
        let mut differ = 0;
        for (f, old) in made.files.iter().zip(&before) {
            let now = fs::read(a.path().join(f)).ok();
            if &now != old {
                differ += 1;
                assert!(changed.contains(f));
                assert_eq!(now.map(|n| n.len()), old.as_ref().map(Vec::len));
            }
        }
        assert_eq!(differ, 10);
    }
}

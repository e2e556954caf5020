//! Content-defined chunking with FastCDC (the 2020 variant).
//!
//! Sizes: minimum 16 KiB, average 64 KiB, maximum 256 KiB. An average of 64 KiB keeps the
//! number of chunks of a 200 MB working set near 3,000 (small index, few RocksDB keys per file),
//! while an edit in a large file still costs only one or two new chunks of about 64 KiB. The
//! parameters are stored in the store's metadata at creation, so a store is always read with
//! the parameters it was written with.

use std::io::{self, Read};
use std::ops::Range;

use fastcdc::v2020::FastCDC;

/// The chunker parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkerParams {
    /// Smallest chunk (except the last of a file).
    pub min: u32,
    /// Target average.
    pub avg: u32,
    /// Largest chunk.
    pub max: u32,
}

/// A source read through [`ChunkerParams::blocks`] is read this much at a time.
///
/// Each block's last, unfinished chunk (less than the largest chunk) is copied to the
/// start of the next block, which then reads this much more: about a fifth of the bytes (a
/// quarter at most) are copied once more, where fastcdc's own `StreamCDC` copied each chunk
/// out and moved its 256 KiB buffer's rest down at every chunk (five bytes moved per byte;
/// a quarter of an ingest of known content). Bigger blocks copy less but hold more: a first
/// copy reads up to sixteen big files at once.
pub const BLOCK: usize = 1 << 20;

/// A block's buffer is made this big at first, and doubled as it fills, up to [`BLOCK`]
/// (and the chunk carried from the block before).
const FIRST: usize = 64 << 10;

impl ChunkerParams {
    /// The parameters new stores use.
    pub const DEFAULT: ChunkerParams = ChunkerParams {
        min: 16 * 1024,
        avg: 64 * 1024,
        max: 256 * 1024,
    };

    /// Whether these parameters can be used: fastcdc's own bounds, in order, and a largest
    /// chunk no bigger than a block ([`BLOCK`]). A store refuses others.
    pub fn valid(&self) -> bool {
        (64..=self.avg).contains(&self.min)
            && self.avg <= self.max
            && self.max >= 1024
            && self.max as usize <= BLOCK
    }

    /// Where `data`, held whole in memory, is cut: its chunks as ranges of it, in order.
    /// Nothing is copied.
    pub fn cuts<'a>(&self, data: &'a [u8]) -> impl Iterator<Item = Range<usize>> + 'a {
        FastCDC::new(
            data,
            self.min as usize,
            self.avg as usize,
            self.max as usize,
        )
        .map(|c| c.offset..c.offset + c.length)
    }

    /// Reads `source` in blocks of whole chunks (see [`Blocks`]).
    pub fn blocks<R: Read>(&self, source: R) -> Blocks<R> {
        self.blocks_expecting(source, 0)
    }

    /// [`ChunkerParams::blocks`] of a source expected to hold `len` bytes: its first
    /// buffer is made big enough for them (up to [`BLOCK`]), so that it is read in one
    /// call where a call is a round trip (a remote file through the helper), and not grown.
    pub fn blocks_expecting<R: Read>(&self, source: R, len: u64) -> Blocks<R> {
        let first = usize::try_from(len.saturating_add(1)).unwrap_or(BLOCK);
        Blocks {
            source,
            params: *self,
            carry: Vec::new(),
            eof: false,
            spare: None,
            first: first.clamp(FIRST, BLOCK),
        }
    }

    /// Cuts `source` into chunks, yielding each chunk's bytes.
    pub fn chunks<R: Read>(&self, source: R) -> impl Iterator<Item = io::Result<Vec<u8>>> {
        let mut blocks = self.blocks(source);
        let mut ready = std::collections::VecDeque::new();
        let mut failed = false;
        std::iter::from_fn(move || loop {
            if let Some(chunk) = ready.pop_front() {
                return Some(Ok(chunk));
            }
            if failed {
                return None;
            }
            match blocks.next_block() {
                Ok(Some(block)) => {
                    ready.extend(block.chunks().map(<[u8]>::to_vec));
                    blocks.recycle(block);
                }
                Ok(None) => return None,
                Err(e) => {
                    failed = true;
                    return Some(Err(e));
                }
            }
        })
    }
}

/// Whole chunks read from a source, in one buffer: the chunks are its bytes up to
/// `len`, cut at `ends`.
#[derive(Debug)]
pub struct Block {
    buf: Vec<u8>,
    len: usize,
    ends: Vec<usize>,
}

impl Block {
    /// The block's bytes: its chunks, one after the other.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Each chunk's bytes, in order.
    pub fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(s, &e)| &self.buf[s..e])
    }
}

/// A source cut into chunks a block at a time ([`ChunkerParams::blocks`]): each block
/// holds [`BLOCK`] bytes read from the source, less the unfinished chunk at its end,
/// which starts the next. The cuts are those fastcdc makes over the whole source: a cut
/// looks at most one largest chunk ahead, and a block is cut only where that much is read
/// (or the source has ended).
#[derive(Debug)]
pub struct Blocks<R> {
    source: R,
    params: ChunkerParams,
    carry: Vec<u8>,
    eof: bool,
    spare: Option<Vec<u8>>,
    first: usize,
}

impl<R: Read> Blocks<R> {
    /// True once the source has ended and every chunk of it was handed out.
    pub fn ended(&self) -> bool {
        self.eof && self.carry.is_empty()
    }

    /// Gives back a block handed out, so that its buffer is read into again instead of a
    /// new one being made (and cleared).
    pub fn recycle(&mut self, block: Block) {
        self.spare = Some(block.buf);
    }

    /// The next block, or `None` once the source has ended.
    ///
    /// # Errors
    /// The source's read errors (an interrupted read is tried again).
    pub fn next_block(&mut self) -> io::Result<Option<Block>> {
        if self.ended() {
            return Ok(None);
        }
        // A block is the carried chunk and BLOCK bytes more: after the first, each block is
        // one read of BLOCK bytes where a read is a call (a remote file through the helper).
        let target = self.carry.len() + BLOCK;
        let mut buf = self.spare.take().unwrap_or_default();
        // A first buffer starts small (or sized for what the source is expected to hold) and
        // doubles as it fills: most files are small, and a buffer is cleared as it is made.
        // A carried chunk means a big source: its buffer is made whole at once.
        let want = if self.carry.is_empty() {
            self.first
        } else {
            target
        };
        if buf.len() < want {
            buf.resize(want, 0);
        }
        let mut len = self.carry.len();
        buf[..len].copy_from_slice(&self.carry);
        self.carry.clear();
        while !self.eof && len < target {
            if len == buf.len() {
                buf.resize((len * 2).min(target), 0);
            }
            let end = buf.len().min(target);
            match self.source.read(&mut buf[len..end]) {
                Ok(0) => self.eof = true,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let max = self.params.max as usize;
        let mut ends = Vec::new();
        let mut cut = 0;
        for chunk in self.params.cuts(&buf[..len]) {
            // Less than a largest chunk left and more to come: the cut could move.
            if !self.eof && len - chunk.start < max {
                break;
            }
            cut = chunk.end;
            ends.push(cut);
        }
        self.carry.extend_from_slice(&buf[cut..len]);
        if ends.is_empty() {
            // Only at the end: a block holds a largest chunk's worth at least
            // (`ChunkerParams::valid`), so one more to come always cuts.
            return if self.eof {
                Ok(None)
            } else {
                Err(io::Error::other(
                    "chunker: a block too small for its largest chunk",
                ))
            };
        }
        Ok(Some(Block {
            buf,
            len: cut,
            ends,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random bytes (xorshift), so boundaries are pinned without a file.
    fn seeded(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn boundaries_are_pinned() {
        let data = seeded(1 << 20, 42);
        let sizes: Vec<usize> = ChunkerParams::DEFAULT
            .chunks(&data[..])
            .map(|c| c.expect("in-memory read").len())
            .collect();
        assert_eq!(sizes.iter().sum::<usize>(), data.len());
        // Pinned: a change here changes every stored file's chunking; it needs a format bump.
        let pinned = [
            40186, 174507, 43098, 47806, 69210, 70077, 20351, 65828, 18356, 18515, 79741, 72494,
            174193, 32974, 74593, 46647,
        ];
        assert_eq!(sizes, pinned, "FastCDC boundaries moved");
    }

    #[test]
    fn an_edit_changes_few_chunks() {
        let mut data = seeded(4 << 20, 7);
        let before: Vec<Vec<u8>> = ChunkerParams::DEFAULT
            .chunks(&data[..])
            .map(|c| c.expect("read"))
            .collect();
        data[2 << 20] ^= 0xff;
        let after: Vec<Vec<u8>> = ChunkerParams::DEFAULT
            .chunks(&data[..])
            .map(|c| c.expect("read"))
            .collect();
        let changed = after.iter().filter(|c| !before.contains(c)).count();
        assert!((1..=2).contains(&changed), "{changed} chunks changed");
    }

    /// Hands out at most `step` bytes per read, and an interruption before every read; notes
    /// the size of each read asked, and is never asked again once it said it had ended.
    struct Dribble<'a> {
        data: &'a [u8],
        step: usize,
        interrupt: bool,
        asked: Vec<usize>,
        ended: bool,
    }

    impl<'a> Dribble<'a> {
        fn new(data: &'a [u8], step: usize) -> Dribble<'a> {
            Dribble {
                data,
                step,
                interrupt: false,
                asked: Vec::new(),
                ended: false,
            }
        }
    }

    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            assert!(!self.ended, "read again after its end");
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(io::ErrorKind::Interrupted.into());
            }
            self.asked.push(buf.len());
            let n = buf.len().min(self.step).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            self.ended = n == 0;
            Ok(n)
        }
    }

    /// Every chunk of `source` through [`Blocks`], its buffers recycled.
    fn through_blocks(p: ChunkerParams, source: &mut Dribble<'_>, expect: u64) -> Vec<Vec<u8>> {
        let mut blocks = p.blocks_expecting(source, expect);
        let mut got = Vec::new();
        while let Some(block) = blocks.next_block().expect("in memory") {
            got.extend(block.chunks().map(<[u8]>::to_vec));
            blocks.recycle(block);
        }
        assert!(blocks.ended(), "not ended");
        got
    }

    #[test]
    fn blocks_cut_where_the_whole_source_held_in_memory_is_cut() {
        let p = ChunkerParams::DEFAULT;
        let data = seeded(3 * BLOCK + 12_345, 9);
        let sizes = [
            0,
            1,
            p.min as usize - 1,
            p.max as usize + 1,
            BLOCK - 1,
            BLOCK,
            BLOCK + 1,
            BLOCK + p.max as usize,
            data.len(),
        ];
        for len in sizes {
            let whole = &data[..len];
            let expected: Vec<&[u8]> = p.cuts(whole).map(|r| &whole[r]).collect();
            // Read in small pieces and in big ones; a first buffer of the default size, one
            // sized for the whole source, and ones sized wrong either way.
            let hints = [0, len, len / 2, 2 * len + BLOCK];
            for (step, expect) in [7_919, 1 << 20]
                .into_iter()
                .flat_map(|s| hints.map(|h| (s, h)))
            {
                let got = through_blocks(p, &mut Dribble::new(whole, step), expect as u64);
                let what = format!("{len} bytes, reads of {step}, {expect} expected");
                assert_eq!(got.len(), expected.len(), "{what}");
                assert!(
                    got.iter().zip(&expected).all(|(g, e)| g == e),
                    "{what}: the chunks differ"
                );
            }
        }
    }

    #[test]
    fn a_read_error_ends_the_chunks_with_it() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("the share went away"))
            }
        }
        let mut chunks = ChunkerParams::DEFAULT.chunks(Broken);
        let err = chunks.next().expect("an item").expect_err("an error");
        assert_eq!(err.to_string(), "the share went away");
        assert!(chunks.next().is_none(), "nothing after the error");
    }

    #[test]
    fn chunks_of_the_largest_size_end_blocks_exactly_and_are_cut_the_same() {
        // Zeros never match a cut mask: every chunk is a largest one, and four of them fill
        // a block to its last byte, with nothing carried.
        let p = ChunkerParams::DEFAULT;
        let zeros = vec![0u8; 3 * BLOCK + 5_000];
        let expected: Vec<usize> = p.cuts(&zeros).map(|r| r.len()).collect();
        assert!(expected.iter().filter(|&&l| l == p.max as usize).count() >= 12);
        let got: Vec<usize> = through_blocks(p, &mut Dribble::new(&zeros, 1 << 20), 0)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn a_big_source_is_read_a_block_per_call() {
        // Each read is a call where the source is a remote file: after the first (sized
        // from the length expected), a block is one read of BLOCK bytes whatever is carried.
        let data = seeded(3 * BLOCK + BLOCK / 2, 3);
        let mut source = Dribble::new(&data, usize::MAX);
        let got = through_blocks(ChunkerParams::DEFAULT, &mut source, data.len() as u64);
        assert_eq!(got.concat(), data);
        assert_eq!(source.asked.len(), 5, "reads asked: {:?}", source.asked);
        assert_eq!(
            source.asked[..4],
            [BLOCK; 4],
            "reads asked: {:?}",
            source.asked
        );
    }

    #[test]
    fn parameters_beyond_a_block_or_out_of_order_are_not_valid() {
        assert!(ChunkerParams::DEFAULT.valid());
        let big = ChunkerParams {
            max: 2 * BLOCK as u32,
            ..ChunkerParams::DEFAULT
        };
        let upside_down = ChunkerParams {
            min: 1 << 20,
            ..ChunkerParams::DEFAULT
        };
        assert!(!big.valid() && !upside_down.valid());
    }
}

//! Newtype ids: every object is named by the blake3 hash of its canonical bytes.

use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The id of `bytes`: their blake3 hash.
            pub fn of(bytes: &[u8]) -> Self {
                Self(*blake3::hash(bytes).as_bytes())
            }

            /// The raw 32 bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Parses the 32 raw bytes of a key; `None` if the length is wrong.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                <[u8; 32]>::try_from(bytes).ok().map(Self)
            }

            /// Parses 64 hex digits.
            pub fn from_hex(hex: &str) -> Option<Self> {
                crate::id::parse_hex(hex).map(Self)
            }

            /// Lower-case hex, 64 digits.
            pub fn to_hex(&self) -> String {
                crate::id::to_hex(&self.0)
            }

            /// The first 12 hex digits, for messages.
            pub fn short(&self) -> String {
                self.to_hex()[..12].to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }
    };
}

id_type!(
    /// A chunk: blake3 of the chunk's bytes.
    ChunkId
);
id_type!(
    /// A file's content: blake3 of the whole file's bytes (so equal contents have equal ids,
    /// whatever the chunking).
    FileId
);
id_type!(
    /// A tree: blake3 of its canonical encoding.
    TreeId
);
id_type!(
    /// A snapshot: blake3 of its canonical encoding.
    SnapshotId
);

impl FileId {
    /// Stands for content that was never fetched (a remote-only file that changed on the
    /// server): its size and mtime stand for it until it is fetched. Never stored.
    pub const NOT_CACHED: FileId = FileId([0; 32]);
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

pub(crate) fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = FileId::of(b"hello");
        assert_eq!(FileId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(
            id.to_hex(),
            "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"
        );
        assert_eq!(FileId::from_hex("zz"), None);
    }
}

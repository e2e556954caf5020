//! Snapshots: a root tree, the snapshot it follows, a time and what it records.

use crate::encoding::{Decoder, Encoder};
use crate::error::Result;
use crate::id::{SnapshotId, TreeId};

const MAGIC: &[u8; 4] = b"CSSN";
const VERSION: u8 = 1;

/// A recorded state of a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The root directory.
    pub root: TreeId,
    /// The snapshot this one follows, if any.
    pub parent: Option<SnapshotId>,
    /// When it was taken, nanoseconds since the epoch.
    pub time_ns: i64,
    /// What it records (e.g. "base after sync", "remote scan").
    pub description: String,
}

impl Snapshot {
    /// Canonical encoding: magic `CSSN`, version 1, root id (32 bytes), parent flag u8 (0 or 1)
    /// and parent id (32 bytes when the flag is 1), time i64, description (u32 length + UTF-8).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_header(MAGIC, VERSION);
        e.raw(self.root.as_bytes());
        match self.parent {
            Some(p) => {
                e.u8(1);
                e.raw(p.as_bytes());
            }
            None => e.u8(0),
        }
        e.i64(self.time_ns);
        e.bytes(self.description.as_bytes());
        e.finish()
    }

    /// Decodes a snapshot.
    ///
    /// # Errors
    /// [`crate::ObjectError::Decode`] on malformed bytes.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot> {
        let (mut d, version) = Decoder::with_header(bytes, MAGIC, "snapshot")?;
        if version != VERSION {
            return Err(d.error("unknown version"));
        }
        let root = TreeId(d.id()?);
        let parent = match d.u8()? {
            0 => None,
            1 => Some(SnapshotId(d.id()?)),
            _ => return Err(d.error("bad parent flag")),
        };
        let time_ns = d.i64()?;
        let description = String::from_utf8(d.bytes()?.to_vec())
            .map_err(|_| d.error("description is not UTF-8"))?;
        d.finish()?;
        Ok(Snapshot {
            root,
            parent,
            time_ns,
            description,
        })
    }

    /// This snapshot's id.
    pub fn id(&self) -> SnapshotId {
        SnapshotId::of(&self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_stable_id() {
        let s = Snapshot {
            root: TreeId::of(b"root"),
            parent: Some(SnapshotId::of(b"p")),
            time_ns: 1_700_000_000_000_000_000,
            description: "base".into(),
        };
        assert_eq!(Snapshot::decode(&s.encode()).expect("decodes"), s);
        assert_eq!(s.id(), SnapshotId::of(&s.encode()));
        assert!(Snapshot::decode(&s.encode()[..10]).is_err());
    }
}

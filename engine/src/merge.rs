//! Three-way merge of text files edited on both sides.
//!
//! What counts as text: valid UTF-8, no NUL byte, at most [`crate::diff::MAX_DIFF_BYTES`]
//! (8 MiB) for each of base, client and server. Anything else is never merged. The merge is
//! line-based (the `similar` crate's `TextMerge`): edits in regions that do not overlap are
//! combined; overlapping, different edits are a conflict and both versions are kept.

use cachesync_objects::{Entry, EntryKind};
use similar::TextMerge;

use crate::diff::is_text;
use crate::error::Result;
use crate::reconcile::{Change, ConflictKind, Outcome};
use crate::workspace::Workspace;

/// What a three-way merge of three texts gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Merged {
    /// The edits did not overlap: the merged text.
    Clean(Vec<u8>),
    /// They overlap: the text with git-style conflict markers (for `resolve --edit`).
    Conflicted(Vec<u8>),
    /// One of the three is not text.
    NotText,
}

/// Merges `client` and `server`, both descended from `base`.
pub fn merge3(base: &[u8], client: &[u8], server: &[u8]) -> Merged {
    if !(is_text(base) && is_text(client) && is_text(server)) {
        return Merged::NotText;
    }
    let text = |b: &[u8]| {
        std::str::from_utf8(b)
            .expect("checked by is_text")
            .to_string()
    };
    let (b, c, s) = (text(base), text(client), text(server));
    let mut m = TextMerge::from_lines(b.as_str(), c.as_str(), s.as_str());
    m.labels("base", "client (yours)", "server");
    let out = m.to_string().into_bytes();
    if m.is_conflicted() {
        Merged::Conflicted(out)
    } else {
        Merged::Clean(out)
    }
}

/// Turns content conflicts between two text edits that do not overlap into merges: the
/// merged file is stored and becomes the outcome, to be written to both sides.
///
/// # Errors
/// Store errors.
pub fn auto_merge(ws: &Workspace, changes: &mut [Change]) -> Result<()> {
    for c in changes.iter_mut() {
        if c.outcome != Outcome::Conflict(ConflictKind::Content) {
            continue;
        }
        let (Some(b), Some(l), Some(r)) = (&c.base, &c.local, &c.remote) else {
            continue;
        };
        if ![b, l, r].iter().all(|e| e.kind == EntryKind::File) {
            continue;
        }
        let (Some(bf), Some(lf), Some(rf)) = (b.file, l.file, r.file) else {
            continue;
        };
        // Content never fetched, or culled from the store: no merge, a plain conflict.
        let cached = |f: cachesync_objects::FileId| {
            f != cachesync_objects::FileId::NOT_CACHED && ws.store.has_file(f).unwrap_or(false)
        };
        if !(cached(bf) && cached(lf) && cached(rf)) {
            continue;
        }
        let largest = b.size.max(l.size).max(r.size);
        if largest > crate::diff::MAX_DIFF_BYTES as u64 {
            continue;
        }
        let base = ws.store.read_file_bytes(bf)?;
        let client = ws.store.read_file_bytes(lf)?;
        let server = ws.store.read_file_bytes(rf)?;
        let Merged::Clean(merged) = merge3(&base, &client, &server) else {
            continue;
        };
        let Some(mode) = merge_mode(b, l, r) else {
            continue;
        };
        let id = ws.store.ingest_bytes(&merged)?;
        let mut entry: Entry = Entry::clone(l);
        entry.file = Some(id);
        entry.size = merged.len() as u64;
        entry.mode = mode;
        c.outcome = Outcome::Resolved(Some(crate::reconcile::Shared::new(entry)));
        c.merged = true;
    }
    Ok(())
}

/// The permission bits both sides agree to, if they do.
fn merge_mode(b: &Entry, l: &Entry, r: &Entry) -> Option<u32> {
    if l.mode == r.mode || b.mode == r.mode {
        Some(l.mode)
    } else if b.mode == l.mode {
        Some(r.mode)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn edits_apart_merge_and_edits_together_conflict() {
        let base = b"one\ntwo\nthree\nfour\nfive\n";
        let client = b"ONE\ntwo\nthree\nfour\nfive\n";
        let server = b"one\ntwo\nthree\nfour\nFIVE\n";
        assert_eq!(
            merge3(base, client, server),
            Merged::Clean(b"ONE\ntwo\nthree\nfour\nFIVE\n".to_vec())
        );
        let Merged::Conflicted(marked) = merge3(
            base,
            b"one\n2\nthree\nfour\nfive\n",
            b"one\nII\nthree\nfour\nfive\n",
        ) else {
            panic!("overlapping edits must conflict");
        };
        let marked = String::from_utf8(marked).expect("text");
        assert!(
            marked.contains("<<<<<<< client (yours)\n2\n=======\nII\n>>>>>>> server\n"),
            "{marked}"
        );
        assert_eq!(merge3(b"a\0b", b"a\0c", b"a\0b"), Merged::NotText);
    }

    /// Base, client and server: the client and server each replace or insert lines of the
    /// base; lines a side adds are tagged with the side, so they can be looked for.
    fn edit(base: &[String], ops: &[(usize, u8)], tag: &str) -> Vec<String> {
        let mut out = base.to_vec();
        for (n, (at, op)) in ops.iter().enumerate() {
            if out.is_empty() {
                out.push(format!("{tag}{n}"));
                continue;
            }
            let i = at % out.len();
            match op % 3 {
                0 => out[i] = format!("{tag}{n}"),
                1 => out.insert(i, format!("{tag}{n}")),
                _ => {
                    out.remove(i);
                }
            }
        }
        out
    }

    fn join(lines: &[String]) -> Vec<u8> {
        lines
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .into_bytes()
    }

    proptest! {
        /// For random base, client and server texts, the merge either succeeds and holds
        /// every line either side added, or reports a conflict whose marked text still holds
        /// them all: a line only one side added is never lost.
        #[test]
        fn no_added_line_is_lost(
            n in 0usize..12,
            client_ops in proptest::collection::vec((0usize..20, 0u8..3), 0..4),
            server_ops in proptest::collection::vec((0usize..20, 0u8..3), 0..4),
        ) {
            let base: Vec<String> = (0..n).map(|i| format!("base{i}")).collect();
            let client = edit(&base, &client_ops, "client");
            let server = edit(&base, &server_ops, "server");
            let added: Vec<&String> = client
                .iter()
                .chain(server.iter())
                .filter(|l| !l.starts_with("base"))
                .collect();
            let (out, clean) = match merge3(&join(&base), &join(&client), &join(&server)) {
                Merged::Clean(m) => (m, true),
                Merged::Conflicted(m) => (m, false),
                Merged::NotText => unreachable!("all text"),
            };
            let out = String::from_utf8(out).expect("text");
            let lines: Vec<&str> = out.lines().collect();
            for a in &added {
                prop_assert!(lines.contains(&a.as_str()), "{a} lost (clean: {clean}):\n{out}");
            }
            if clean {
                prop_assert!(!out.contains("<<<<<<<"));
                if client == base {
                    prop_assert_eq!(out.clone().into_bytes(), join(&server));
                }
                if server == base {
                    prop_assert_eq!(out.clone().into_bytes(), join(&client));
                }
            }
        }
    }
}

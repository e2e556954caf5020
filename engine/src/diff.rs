//! `diff`: what the workspace holds, against the base snapshot, from the cache alone (it
//! works offline); and the unified diff format `show` and `resolve` use too.

use cachesync_objects::{Entry, EntryKind};

use crate::error::Result;
use crate::paths::{display, is_within};
use crate::reconcile::same;
use crate::scan::Flat;
use crate::workspace::Workspace;

/// Files larger than this are not diffed line by line.
pub const MAX_DIFF_BYTES: usize = 8 << 20;

/// True when `bytes` can be shown (and merged) as text: UTF-8, no NUL, not too large.
pub fn is_text(bytes: &[u8]) -> bool {
    bytes.len() <= MAX_DIFF_BYTES && !bytes.contains(&0) && std::str::from_utf8(bytes).is_ok()
}

/// A unified diff of two versions of `path` (absent = `None`), git-style.
pub fn unified(path: &[u8], old: Option<(&Entry, &[u8])>, new: Option<(&Entry, &[u8])>) -> String {
    let name = display(path);
    let mut out = format!("diff --cachesync a/{name} b/{name}\n");
    let mode = |e: &Entry| {
        let kind = match e.kind {
            EntryKind::Symlink => 0o120000,
            EntryKind::Dir => 0o040000,
            _ => 0o100000,
        };
        format!("{:06o}", kind | e.mode)
    };
    match (old, new) {
        (None, Some((n, _))) => out.push_str(&format!("new file mode {}\n", mode(n))),
        (Some((o, _)), None) => out.push_str(&format!("deleted file mode {}\n", mode(o))),
        (Some((o, _)), Some((n, _))) if o.mode != n.mode || o.kind != n.kind => {
            out.push_str(&format!("old mode {}\nnew mode {}\n", mode(o), mode(n)));
        }
        _ => {}
    }
    let old_bytes = old.map_or(&[][..], |(_, b)| b);
    let new_bytes = new.map_or(&[][..], |(_, b)| b);
    if old_bytes == new_bytes {
        return out;
    }
    if !is_text(old_bytes) || !is_text(new_bytes) {
        out.push_str(&format!("Binary files a/{name} and b/{name} differ\n"));
        return out;
    }
    let a = std::str::from_utf8(old_bytes).expect("checked by is_text");
    let b = std::str::from_utf8(new_bytes).expect("checked by is_text");
    let diff = similar::TextDiff::from_lines(a, b);
    let old_name = if old.is_some() {
        format!("a/{name}")
    } else {
        "/dev/null".into()
    };
    let new_name = if new.is_some() {
        format!("b/{name}")
    } else {
        "/dev/null".into()
    };
    out.push_str(
        &diff
            .unified_diff()
            .context_radius(3)
            .header(&old_name, &new_name)
            .to_string(),
    );
    out
}

fn content(ws: &Workspace, e: &Entry) -> Result<Vec<u8>> {
    Ok(match (e.kind, e.file) {
        (EntryKind::File, Some(id)) => ws.store.read_file_bytes(id)?,
        (EntryKind::Symlink, _) => {
            let mut t = e.target.clone();
            t.push(b'\n');
            t
        }
        _ => Vec::new(),
    })
}

pub(crate) fn local_and_base(ws: &Workspace) -> Result<(Flat, crate::scan::LocalScan)> {
    let base = ws.synced_base()?;
    let local = crate::presence::scan_workspace(ws, &base)?;
    Ok((base, local))
}

/// What the user asked for.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Only these paths (and what is under them); empty: everything.
    pub paths: Vec<Vec<u8>>,
}

/// What `diff` gives: the unified diff text (empty when nothing changed).
pub type Outcome = String;

/// The unified diff of local changes against the base, for [`Options::paths`].
///
/// # Errors
/// Local scan and store errors.
pub fn run(ws: &Workspace, opts: &Options) -> Result<Outcome> {
    let paths = &opts.paths;
    let (base, scan) = local_and_base(ws)?;
    let local = scan.tree;
    let mut out = String::new();
    for (k, b, l) in crate::reconcile::zip2(&base, &local) {
        if !paths.is_empty() && !paths.iter().any(|p| is_within(k, p)) {
            continue;
        }
        if same(b, l) || b.or(l).is_some_and(|e| e.kind == EntryKind::Dir) {
            continue;
        }
        let old = b.map(|e| content(ws, e).map(|c| (e, c))).transpose()?;
        let new = l.map(|e| content(ws, e).map(|c| (e, c))).transpose()?;
        out.push_str(&unified(
            k,
            old.as_ref().map(|(e, c)| (*e, c.as_slice())),
            new.as_ref().map(|(e, c)| (*e, c.as_slice())),
        ));
    }
    Ok(out)
}

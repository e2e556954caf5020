//! The workspace walk, whose threads share the directories out: whatever thread reads what,
//! it finds every entry once, hashes only what the index cannot vouch for, and says so in
//! path order.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use cachesync_engine::ignore_rules::IgnoreRules;
use cachesync_engine::scan::{scan_local, LocalScan};
use cachesync_objects::{EntryKind, Store};

/// Every path under `root` (but `root/.cachesync`), as a plain recursive read sees it.
fn every_path(root: &Path, rel: &[u8], out: &mut BTreeSet<Vec<u8>>) {
    for item in fs::read_dir(root.join(std::ffi::OsStr::from_bytes(rel))).expect("read") {
        let item = item.expect("entry");
        let name = item.file_name();
        if rel.is_empty() && name == ".cachesync" {
            continue;
        }
        let mut p = rel.to_vec();
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(name.as_bytes());
        if item.file_type().expect("type").is_dir() {
            every_path(root, &p, out);
        }
        out.insert(p);
    }
}

/// A tree uneven enough that the threads take turns: a chain 40 deep, wide directories,
/// empty ones, and symlinks.
fn uneven_tree(root: &Path) {
    let mut deep = root.join("deep");
    for i in 0..40 {
        deep = deep.join(format!("level{i}"));
        fs::create_dir_all(&deep).expect("mkdir");
        fs::write(deep.join("f"), format!("{i}")).expect("write");
    }
    for d in 0..30 {
        let dir = root.join(format!("wide/d{d}"));
        fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..25 {
            fs::write(dir.join(format!("f{f}.txt")), format!("{d}/{f}\n")).expect("write");
        }
        std::os::unix::fs::symlink(format!("f{d}.txt"), dir.join("link")).expect("symlink");
    }
    fs::create_dir_all(root.join("empty/inner")).expect("mkdir");
    fs::write(root.join("top.txt"), "top\n").expect("write");
}

fn index_of(scan: &LocalScan) -> cachesync_engine::index::Index {
    scan.index_updates.iter().cloned().collect()
}

#[test]
fn a_walk_finds_every_entry_once_and_hashes_only_what_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    uneven_tree(root);
    let store = Store::create(&root.join(".cachesync/store")).expect("store");
    let rules = IgnoreRules::load(root).expect("rules");

    let first = scan_local(
        root,
        &rules,
        &store,
        &cachesync_engine::index::Index::default(),
    )
    .expect("scan");
    let mut expected = BTreeSet::new();
    every_path(root, b"", &mut expected);
    let found: BTreeSet<Vec<u8>> = first.tree.keys().cloned().collect();
    assert_eq!(found, expected);
    let files = first
        .tree
        .values()
        .filter(|e| e.kind == EntryKind::File)
        .count();
    assert_eq!(files, 40 + 30 * 25 + 1);
    assert_eq!(first.hashed, files as u64, "every file is new to the index");
    let updated: Vec<&Vec<u8>> = first.index_updates.iter().map(|(p, _)| p).collect();
    assert!(
        updated.windows(2).all(|w| w[0] < w[1]),
        "index updates in path order"
    );
    assert!(first.index_removals.is_empty());

    // Files written within the racy window are hashed again; once the index entries are
    // older than that, nothing is.
    let mut index = index_of(&first);
    for e in index.values_mut() {
        e.recorded_ns = e.mtime_ns.max(e.ctime_ns) + 10_000_000_000;
    }
    let again = scan_local(root, &rules, &store, &index).expect("scan");
    assert_eq!(again.hashed, 0);
    assert!(again.index_removals.is_empty());
    assert_eq!(again.tree, first.tree);

    // One file changed, one gone, one directory gone with its files: one hashed, and every
    // path gone leaves the index, in path order.
    fs::write(root.join("wide/d7/f3.txt"), "changed, and longer\n").expect("write");
    fs::remove_file(root.join("wide/d2/f0.txt")).expect("rm");
    let deep_prefix = (0..39)
        .map(|i| format!("level{i}"))
        .collect::<Vec<_>>()
        .join("/");
    fs::remove_dir_all(root.join("deep").join(&deep_prefix)).expect("rm -r");
    let after = scan_local(root, &rules, &store, &index).expect("scan");
    assert_eq!(after.hashed, 1);
    assert_eq!(after.index_updates.len(), 1);
    assert_eq!(after.index_updates[0].0, b"wide/d7/f3.txt".to_vec());
    let gone: Vec<String> = after
        .index_removals
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert_eq!(
        gone,
        vec![
            format!("deep/{deep_prefix}/f"),
            format!("deep/{deep_prefix}/level39/f"),
            "wide/d2/f0.txt".to_string(),
        ]
    );
    let mut expected = BTreeSet::new();
    every_path(root, b"", &mut expected);
    let found: BTreeSet<Vec<u8>> = after.tree.keys().cloned().collect();
    assert_eq!(found, expected);
}

#[test]
fn a_stat_walk_bounded_by_a_time_notes_the_entries_changed_after_it_and_stops_past_a_few() {
    stat_walk_bounded(false);
}

/// The same walks with every directory's listing kept by the first: the prints made from
/// the listings are the prints made by reading the directories, and a change is seen.
#[test]
fn a_stat_walk_from_kept_listings_prints_and_notes_as_one_reading_every_directory() {
    stat_walk_bounded(true);
}

fn stat_walk_bounded(with_listings: bool) {
    use cachesync_engine::scan::{scan_stats, Listings};
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    uneven_tree(root);
    let store = Store::create(&root.join(".cachesync/store")).expect("store");
    let rules = IgnoreRules::load(root).expect("rules");
    let kept = tempfile::tempdir().expect("tempdir");
    let mut whole = scan_stats(
        root,
        &rules,
        &store,
        None,
        0,
        with_listings.then(Listings::default).as_ref(),
    )
    .expect("walk");
    Listings::write(kept.path(), &whole.listed);
    let listings = with_listings.then(|| Listings::read(kept.path()));
    if let Some(l) = &listings {
        assert!(l.len() > 40, "{} listings", l.len());
    }
    let scan_stats = |root, rules, store, after, keep| {
        let out = scan_stats(root, rules, store, after, keep, listings.as_ref());
        if let (Ok(out), Some(l)) = (&out, &listings) {
            assert!(
                out.changed_after || out.dirs_reused + 2 >= l.len(),
                "{} of {} directories from their listings",
                out.dirs_reused,
                l.len()
            );
        }
        out
    };
    let newest = whole.prints.newest_ns;
    // Nothing changed since: the bounded walk is the whole walk.
    let mut bounded = scan_stats(root, &rules, &store, Some(newest), 0).expect("walk");
    assert!(!bounded.changed_after && bounded.changed.is_empty());
    assert_eq!(bounded.prints.digest(), whole.prints.digest());
    // A file deep in the tree changed (its ctime moves even with its mtime put back).
    let deep: std::path::PathBuf =
        (0..25).fold(root.join("deep"), |p, i| p.join(format!("level{i}")));
    let f = deep.join("f");
    let mtime = fs::metadata(&f).expect("stat").modified().expect("mtime");
    cachesync_testutils::wait_until(
        "the clock moved past the walk's newest entry",
        std::time::Duration::from_secs(5),
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_nanos() as i64
                > newest + 10_000_000
        },
    );
    fs::write(&f, "changed").expect("write");
    fs::File::options()
        .write(true)
        .open(&f)
        .expect("open")
        .set_modified(mtime)
        .expect("set mtime");
    let stopped = scan_stats(root, &rules, &store, Some(newest), 0).expect("walk");
    assert!(stopped.changed_after, "the walk did not see the change");
    let mut unbounded = scan_stats(root, &rules, &store, None, 0).expect("walk");
    assert!(!unbounded.changed_after);
    assert_ne!(
        unbounded.prints.digest(),
        whole.prints.digest(),
        "the change shows in the prints too"
    );
    // With room for a few, the walk notes the one changed and goes on to the end.
    let mut noted = scan_stats(root, &rules, &store, Some(newest), 4).expect("walk");
    assert!(!noted.changed_after);
    let changed: Vec<&[u8]> = noted.changed.iter().map(|(p, _)| p.as_slice()).collect();
    let rel = f.strip_prefix(root).expect("under the root");
    assert_eq!(changed, [rel.as_os_str().as_encoded_bytes()]);
    assert_eq!(noted.prints.digest(), unbounded.prints.digest());
}

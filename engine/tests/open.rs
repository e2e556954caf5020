//! Opening a workspace to look (`Workspace::open_to_look`, what `status` opens first): the
//! lock taken, the store opened to read only when it can be, and to write when that is what
//! it takes.

use cachesync_engine::{SyncError, Workspace};
use cachesync_objects::keys;

/// A workspace over an empty remote; returns the temporary directory and the workspace root.
fn workspace() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let remote = tmp.path().join("remote");
    std::fs::create_dir_all(&remote).expect("mkdir");
    let root = tmp.path().join("ws");
    drop(Workspace::init(&remote, &root, |_| {}).expect("init"));
    (tmp, root)
}

fn locked(root: &std::path::Path) -> bool {
    matches!(Workspace::open(root), Err(SyncError::Locked { .. }))
}

#[test]
fn looking_holds_the_lock_and_reads_only_until_asked_to_write() {
    let (_tmp, root) = workspace();
    let ws = Workspace::open_to_look(&root).expect("open to look");
    assert!(!ws.store.db().is_writable());
    assert!(locked(&root), "another command ran beside one that looks");
    let ws = ws.into_writable().expect("writable");
    assert!(ws.store.db().is_writable());
    assert!(locked(&root), "the lock was let go on the way to writing");
    ws.store
        .table(keys::CF_STATE)
        .put(b"test-key", b"written")
        .expect("a write");
    drop(ws);
    let ws = Workspace::open_to_look(&root).expect("open to look");
    let state = ws.store.table(keys::CF_STATE);
    assert_eq!(
        state.get(b"test-key").expect("get").as_deref(),
        Some(&b"written"[..])
    );
}

#[test]
fn a_store_that_only_opens_to_write_is_opened_to_write() {
    let (_tmp, root) = workspace();
    // A store made before a column family was added lacks it: opening to read only fails
    // on it, opening to write adds it.
    let dir = root.join(".cachesync/store");
    {
        let cfs: Vec<&str> = keys::ALL_CFS.to_vec();
        let mut db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &dir, &cfs)
            .expect("open the store's database");
        db.drop_cf(keys::CF_CONFLICTS).expect("drop a family");
    }
    assert!(cachesync_objects::Store::open_read_only(&dir).is_err());
    let ws = Workspace::open_to_look(&root).expect("opened all the same");
    assert!(ws.store.db().is_writable());
    assert!(cachesync_engine::conflict::open(&ws.store)
        .expect("the family is there again")
        .is_empty());
}

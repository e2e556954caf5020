//! Garbage collection removes what nothing refers to, and never a conflict variant or the
//! content of a local change not yet pushed.

mod common;

use common::{read, write_changed, Env};

#[test]
fn gc_keeps_variants_and_unpushed_content() {
    let env = Env::with_remote(&[("notes.txt", "v0\n"), ("shared.txt", "base\n")]);
    env.clone_ws();

    // Versions that only old snapshots refer to.
    for i in 1..4 {
        env.put_local("notes.txt", format!("version {i} of the notes\n"));
        env.ok(&["sync"]);
    }
    // A conflict (its server and base variants live only in the store) and an unpushed edit.
    env.put_local("shared.txt", "laptop's version\n");
    write_changed(&env.r("shared.txt"), b"server's version!\n");
    env.expect_code(7, &["sync"]);
    env.put_local("notes.txt", "unpushed final notes\n");
    env.ok(&["status"]);

    let gc = env.json(0, &["gc", "--json"]);
    assert!(
        gc["files"].as_u64().expect("files") >= 2,
        "old versions removed: {gc}"
    );
    assert_eq!(env.json(0, &["fsck", "--json"])["clean"], true);

    let server = env.ok(&["show", "shared.txt", "--variant", "server"]);
    assert_eq!(server.stdout, b"server's version!\n");
    let base = env.ok(&["show", "shared.txt", "--variant", "base"]);
    assert_eq!(base.stdout, b"base\n");

    env.ok(&["push", "notes.txt"]);
    assert_eq!(read(env.r("notes.txt")), "unpushed final notes\n");
}

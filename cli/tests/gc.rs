//! Garbage collection removes what nothing refers to, and never a conflict variant or the
//! content of a local change not yet pushed.

mod common;

use common::{read, write_changed, Env};

/// Sets config keys of the workspace.
fn configure(env: &Env, keys: &[(&str, serde_json::Value)]) {
    let config = env.w(".cachesync/config.json");
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).expect("config")).expect("json");
    for (k, v) in keys {
        c[*k] = v.clone();
    }
    std::fs::write(&config, c.to_string()).expect("write config");
}

/// No history kept (`restore --at`): only what the base, the conflicts and the unpushed
/// changes need.
fn keep_no_history(env: &Env) {
    configure(
        env,
        &[
            ("keep_operations", 0.into()),
            ("keep_operations_days", 0.into()),
        ],
    );
}

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

    keep_no_history(&env);
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

#[test]
fn resolved_conflicts_keep_their_variants_for_the_configured_days() {
    let env = Env::with_remote(&[("shared.txt", "base\n")]);
    env.clone_ws();
    env.put_local("shared.txt", "laptop's version\n");
    write_changed(&env.r("shared.txt"), b"server's version!\n");
    env.expect_code(7, &["sync"]);
    env.ok(&["resolve", "shared.txt", "--take", "client"]);
    env.ok(&["sync"]);
    assert_eq!(read(env.r("shared.txt")), "laptop's version\n");

    // Within keep_resolved_days (30 by default) the variants stay.
    let gc = env.json(0, &["gc", "--json"]);
    assert_eq!(gc["conflict_records"], 0, "{gc}");
    let server = env.ok(&["show", "shared.txt", "--variant", "server"]);
    assert_eq!(server.stdout, b"server's version!\n");
    let all = env.json(0, &["conflicts", "--all", "--json"]);
    assert_eq!(all.as_array().expect("records").len(), 1, "{all}");

    // With 0 days, gc drops the resolved record and the content only it kept (and no
    // operation's history keeps it either).
    keep_no_history(&env);
    configure(&env, &[("keep_resolved_days", 0.into())]);
    let gc = env.json(0, &["gc", "--json"]);
    assert_eq!(gc["conflict_records"], 1, "{gc}");
    assert!(gc["files"].as_u64().expect("files") >= 1, "{gc}");
    let all = env.json(0, &["conflicts", "--all", "--json"]);
    assert_eq!(all.as_array().expect("records").len(), 0, "{all}");
    assert_eq!(env.json(0, &["fsck", "--json"])["clean"], true);
}

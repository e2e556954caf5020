//! The fault suite, disk-full half: the workspace (with its store) or the remote on a small
//! tmpfs that fills up in the middle of a pull or a push. The run fails with a clear error
//! (EDISCONFULL, exit 6, when the workspace's disk is full), no partial file appears under a
//! real name on either side, no temporary is left, nothing is lost, and once there is room the
//! same command completes. A big file patched in place (as on sshfs) that the remote disk
//! cannot take is rolled back to what it held, never left half patched.

mod common;

use std::fs;
use std::path::Path;

use common::{age, noise, read, tree, Env, SmallDisk};

fn temporaries(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).expect("list").flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".cachesync-tmp.") {
                out.push(e.path().display().to_string());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) && name != ".cachesync" {
                stack.push(e.path());
            }
        }
    }
    out
}

#[test]
fn a_pull_into_a_full_workspace_disk_fails_clearly_and_completes_with_room() {
    let env = Env::with_remote(&[("a.txt", "alpha\n"), ("docs/b.txt", "bravo\n")]);
    let disk = SmallDisk::mount(&env.ws, "24m");
    env.clone_ws();
    env.put_local("a.txt", "alpha, edited here, not pushed\n");
    fs::write(env.r("big.bin"), noise(3, 40_000_000)).expect("write big");
    env.put_remote("docs/b.txt", "bravo, edited on the server\n");

    let r = env.run(["pull"]);
    assert_eq!(r.code, 6, "EDISCONFULL: {r}");
    assert!(
        r.stderr.contains("no space") && r.stderr.contains("free space"),
        "says what happened and what to do: {r}"
    );
    let local = tree(&env.ws);
    assert!(
        !local.contains_key(b"big.bin".as_slice()),
        "no partial file under the real name"
    );
    assert_eq!(read(env.w("a.txt")), "alpha, edited here, not pushed\n");
    assert_eq!(temporaries(&env.ws), Vec::<String>::new());

    disk.grow("256m");
    let fsck = env.run(["fsck"]);
    assert_eq!(fsck.code, 0, "{fsck}");
    env.ok(&["pull"]);
    assert_eq!(
        fs::read(env.w("big.bin")).expect("pulled"),
        fs::read(env.r("big.bin")).expect("remote")
    );
    assert_eq!(read(env.w("docs/b.txt")), "bravo, edited on the server\n");
    env.ok(&["push"]);
    env.assert_in_sync();
    assert_eq!(read(env.r("a.txt")), "alpha, edited here, not pushed\n");
}

#[test]
fn a_push_to_a_full_remote_disk_fails_clearly_and_completes_with_room() {
    let env = Env::new();
    let disk = SmallDisk::mount(&env.remote, "8m");
    env.put_remote("a.txt", "alpha\n");
    env.put_remote("keep.bin", noise(5, 1_000_000));
    env.clone_ws();
    let big = noise(4, 12_000_000);
    fs::write(env.w("big.bin"), &big).expect("write big");
    env.put_local("a.txt", "alpha, edited here\n");
    let before = tree(&env.remote);

    let r = env.run(["push"]);
    assert_ne!(r.code, 0, "{r}");
    assert!(
        r.stderr.contains("no space") && r.stderr.contains("remote"),
        "says which side is full: {r}"
    );
    let after = tree(&env.remote);
    for (path, node) in &after {
        assert!(
            before.get(path) == Some(node) || tree(&env.ws).get(path) == Some(node),
            "{:?} on the remote is neither old nor new",
            String::from_utf8_lossy(path)
        );
    }
    assert_eq!(temporaries(&env.remote), Vec::<String>::new());
    assert_eq!(fs::read(env.w("big.bin")).expect("kept"), big);
    assert_eq!(read(env.w("a.txt")), "alpha, edited here\n");
    let fsck = env.run(["fsck"]);
    assert_eq!(fsck.code, 0, "{fsck}");

    disk.grow("64m");
    env.ok(&["push"]);
    env.assert_in_sync();
    assert_eq!(fs::read(env.r("big.bin")).expect("pushed"), big);
}

/// A remote on a 40 MiB disk holding a 20 MB file, cloned, patched in place from then on,
/// and the edit: its first byte changed and 8 MB more at its end.
fn big_file_patched_in_place() -> (Env, SmallDisk, Vec<u8>, Vec<u8>) {
    let env = Env::new();
    let disk = SmallDisk::mount(&env.remote, "40m");
    let base = noise(7, 20_000_000);
    fs::write(env.r("big.img"), &base).expect("write big");
    age(&env.r("big.img"));
    env.clone_ws();
    let config = env.w(".cachesync/config.json");
    let mut c: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&config).expect("config")).expect("json");
    c["patch_big_files"] = serde_json::json!("in-place");
    fs::write(&config, c.to_string()).expect("write config");
    let mut target = base.clone();
    target[0] ^= 0x5a;
    target.extend(noise(8, 8_000_000));
    (env, disk, base, target)
}

/// Fills the remote disk up to about 3 MiB free: less than the patch needs to grow the file.
fn fill(env: &Env) {
    fs::write(env.r("filler.bin"), noise(9, 18_000_000)).expect("fill");
}

fn assert_base_on_the_remote(env: &Env, base: &[u8], r: &common::Run) {
    let now = fs::read(env.r("big.img")).expect("read");
    assert!(
        now == base,
        "the file on the remote is the base again, not half patched ({} bytes, {} expected): {r}",
        now.len(),
        base.len()
    );
}

#[test]
fn a_patch_in_place_the_remote_disk_cannot_take_is_rolled_back() {
    let (env, disk, base, target) = big_file_patched_in_place();
    fill(&env);
    env.put_local("big.img", &target);
    for _ in 0..2 {
        let r = env.run(["push"]);
        assert_ne!(r.code, 0, "{r}");
        assert!(r.stderr.contains("no space"), "says why: {r}");
        assert_base_on_the_remote(&env, &base, &r);
        assert!(fs::read(env.w("big.img")).expect("kept") == target);
        let st = env.json(0, &["status", "--json"]);
        assert!(
            !st["warnings"].to_string().contains("interrupted"),
            "nothing left half done: {st}"
        );
        let fsck = env.run(["fsck"]);
        assert_eq!(fsck.code, 0, "{fsck}");
    }

    disk.grow("80m");
    let r = env.json(0, &["push", "--json"]);
    assert_eq!(r["patched"][0]["how"], "in-place", "{r}");
    assert!(fs::read(env.r("big.img")).expect("pushed") == target);
    env.ok(&["pull"]);
    env.assert_in_sync();
}

#[test]
fn a_killed_patch_the_remote_disk_cannot_finish_is_rolled_back_then_made_again() {
    let (env, disk, base, target) = big_file_patched_in_place();
    env.put_local("big.img", &target);
    let r = env.run_with(
        &env.ws,
        ["push"],
        &[("CACHESYNC_FAILPOINT", std::ffi::OsStr::new("mid-patch:0"))],
    );
    assert_eq!(r.signal, Some(9), "killed at the point: {r}");
    let half = fs::read(env.r("big.img")).expect("read");
    assert!(half != base && half != target, "half patched");
    fill(&env);

    // The next run cannot finish the patch: it puts the base back, says so, and fails on
    // the push of the edit as the first run would have.
    let r = env.run(["push"]);
    assert_ne!(r.code, 0, "{r}");
    assert!(
        r.stderr.contains("put back as it was") || r.out().contains("put back as it was"),
        "says what became of the patch: {r}"
    );
    assert_base_on_the_remote(&env, &base, &r);
    assert!(fs::read(env.w("big.img")).expect("kept") == target);
    let fsck = env.run(["fsck"]);
    assert_eq!(fsck.code, 0, "{fsck}");

    disk.grow("80m");
    env.ok(&["push"]);
    assert!(fs::read(env.r("big.img")).expect("pushed") == target);
    env.ok(&["pull"]);
    env.assert_in_sync();
}

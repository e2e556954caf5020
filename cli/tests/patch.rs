//! A big file changed in the workspace is patched on the share, not sent whole: copied on
//! the server and patched where the share can copy (a local directory here), patched in
//! place elsewhere (`patch_big_files: "in-place"` stands in for sshfs; cli/tests/sshfs.rs
//! runs the real one). A patch in place killed midway is finished by the next run, unless
//! the file changed on the server meanwhile: then it is never written into.

use std::fs;
use std::os::unix::fs::MetadataExt;

mod common;
use common::{age, noise, steps, Env};

const BIG: usize = 12 << 20;

/// A remote holding one 12 MiB file, cloned, with `patch_big_files` set to `mode`.
fn setup(mode: &str) -> (Env, Vec<u8>) {
    let env = Env::new();
    let base = noise(1, BIG);
    fs::write(env.r("big.img"), &base).expect("write");
    age(&env.r("big.img"));
    env.clone_ws();
    env.set_config(|c| c["patch_big_files"] = serde_json::json!(mode));
    (env, base)
}

/// `base` with one byte changed at each of `offsets`.
fn edited(base: &[u8], offsets: &[usize]) -> Vec<u8> {
    let mut v = base.to_vec();
    for &o in offsets {
        v[o] ^= 0x5a;
    }
    v
}

fn written(report: &serde_json::Value) -> u64 {
    report["bytes_written"].as_u64().expect("bytes_written")
}

fn inode(path: &std::path::Path) -> u64 {
    fs::metadata(path).expect("stat").ino()
}

#[test]
fn on_a_share_that_copies_a_copy_is_patched_and_renamed_over_the_file() {
    let (env, base) = setup("auto");
    let before = inode(&env.r("big.img"));
    let target = edited(&base, &[5 << 20]);
    env.put_local("big.img", &target);
    let r = env.json(0, &["push", "--json"]);
    let patched = r["patched"].as_array().expect("patched");
    assert_eq!(patched.len(), 1, "{r}");
    assert_eq!(patched[0]["how"], "copy", "{r}");
    assert_eq!(patched[0]["path"], "big.img", "{r}");
    assert!(
        written(&r) <= 512 << 10,
        "one chunk or two sent, not 12 MiB: {r}"
    );
    assert_eq!(patched[0]["bytes_sent"].as_u64(), Some(written(&r)));
    assert!(fs::read(env.r("big.img")).expect("read") == target);
    assert_ne!(
        inode(&env.r("big.img")),
        before,
        "a new file renamed over the old"
    );
    env.assert_in_sync();
    env.assert_noop_sync();
}

#[test]
fn an_insertion_is_copied_around_not_sent_again() {
    let (env, base) = setup("copy");
    let mut target = base[..3 << 20].to_vec();
    target.extend_from_slice(b"a few inserted bytes");
    target.extend_from_slice(&base[3 << 20..]);
    env.put_local("big.img", &target);
    let r = env.json(0, &["push", "--json"]);
    assert_eq!(r["patched"][0]["how"], "copy", "{r}");
    assert!(written(&r) <= 512 << 10, "{r}");
    assert!(fs::read(env.r("big.img")).expect("read") == target);
    env.assert_noop_sync();
}

#[test]
fn in_place_only_the_changed_chunks_are_written_into_the_file() {
    let (env, base) = setup("in-place");
    let before = inode(&env.r("big.img"));
    // An edit, and the file grows.
    let mut target = edited(&base, &[1 << 20]);
    target.extend_from_slice(&noise(2, 300_000));
    env.put_local("big.img", &target);
    let r = env.json(0, &["push", "--json"]);
    assert_eq!(r["patched"][0]["how"], "in-place", "{r}");
    assert!(written(&r) <= 1 << 20, "{r}");
    assert!(fs::read(env.r("big.img")).expect("read") == target);
    assert_eq!(inode(&env.r("big.img")), before, "the same file, patched");
    let mtime = fs::metadata(env.w("big.img")).expect("stat").mtime();
    assert_eq!(fs::metadata(env.r("big.img")).expect("stat").mtime(), mtime);
    env.assert_in_sync();
    env.assert_noop_sync();

    // It shrinks: the cut is all there is to do, and nothing is left past the new end.
    let shorter = target[..10 << 20].to_vec();
    env.put_local("big.img", &shorter);
    let r = env.json(0, &["push", "--json"]);
    assert_eq!(r["patched"][0]["how"], "in-place", "{r}");
    assert!(fs::read(env.r("big.img")).expect("read") == shorter);
    env.assert_noop_sync();
}

#[test]
fn whole_writes_when_patching_is_off_or_the_base_is_not_verified() {
    let (env, base) = setup("off");
    env.put_local("big.img", edited(&base, &[7]));
    let r = env.json(0, &["push", "--json"]);
    assert_eq!(r["patched"].as_array().map(Vec::len), Some(0), "{r}");
    assert_eq!(written(&r), BIG as u64, "{r}");

    // Patching asks for the remote's content to have been read back before the write:
    // without it, a server edit that kept size and mtime would be mixed into the patch.
    env.set_config(|c| c["patch_big_files"] = serde_json::json!("in-place"));
    env.set_config(|c| c["verify_before_overwrite"] = serde_json::json!(false));
    env.put_local("big.img", edited(&base, &[9]));
    let r = env.json(0, &["push", "--json"]);
    assert_eq!(r["patched"].as_array().map(Vec::len), Some(0), "{r}");
    assert_eq!(written(&r), BIG as u64, "{r}");
    env.assert_in_sync();
}

#[test]
fn a_bad_setting_is_refused_with_the_values_it_takes() {
    let (env, _) = setup("auto");
    env.set_config(|c| c["patch_big_files"] = serde_json::json!("sometimes"));
    let r = env.run(["status"]);
    assert_ne!(r.code, 0, "{r}");
    assert!(
        r.stderr.contains("patch_big_files") || r.stderr.contains("in-place"),
        "{r}"
    );
}

/// Kills a push in place after its first write: the file on the share is half patched.
fn killed_mid_patch(env: &Env, base: &[u8], target: &[u8]) {
    env.put_local("big.img", target);
    let r = env.run_with(
        &env.ws,
        ["push"],
        &[("CACHESYNC_FAILPOINT", std::ffi::OsStr::new("mid-patch:0"))],
    );
    assert_eq!(r.signal, Some(9), "killed at the point: {r}");
    let now = fs::read(env.r("big.img")).expect("read");
    assert!(now != base && now != target, "half patched");
}

#[test]
fn a_patch_killed_midway_is_finished_by_the_next_run() {
    let (env, base) = setup("in-place");
    let target = edited(&base, &[1 << 20, 10 << 20]);
    killed_mid_patch(&env, &base, &target);
    // Until then, status says so (a plain one does not touch the share).
    let st = env.json(0, &["status", "--json"]);
    assert!(
        st["warnings"]
            .to_string()
            .contains("big.img: a patch in place was interrupted"),
        "{st}"
    );
    let r = env.json(0, &["sync", "--json"]);
    assert!(fs::read(env.r("big.img")).expect("read") == target, "{r}");
    assert_eq!(r["conflicts"].as_array().map(Vec::len), Some(0), "{r}");
    assert_eq!(r["warnings"].as_array().map(Vec::len), Some(0), "{r}");
    assert!(fs::read(env.w("big.img")).expect("read") == target);
    env.assert_noop_sync();
    let st = env.json(0, &["status", "--refresh", "--json"]);
    assert_eq!(
        st["pending"],
        serde_json::json!({"pull": 0, "push": 0}),
        "{st}"
    );
    assert_eq!(st["conflicts"].as_array().map(Vec::len), Some(0), "{st}");
    assert_eq!(st["warnings"].as_array().map(Vec::len), Some(0), "{st}");
    env.ok(&["fsck"]);
}

#[test]
fn a_half_patched_file_changed_on_the_server_is_never_written_into() {
    let (env, base) = setup("in-place");
    let target = edited(&base, &[1 << 20, 10 << 20]);
    killed_mid_patch(&env, &base, &target);
    // Someone else writes the file before the next run.
    let theirs = noise(3, BIG);
    common::write_changed(&env.r("big.img"), &theirs);
    // Exit 7: the run left a conflict.
    let r = env.json(7, &["sync", "--json"]);
    let warnings = r["warnings"].to_string();
    assert!(warnings.contains("big.img"), "{r}");
    assert!(
        fs::read(env.r("big.img")).expect("read") == theirs,
        "their file untouched"
    );
    assert_eq!(r["conflicts"].as_array().map(Vec::len), Some(1), "{r}");
    // Both versions kept: ours here, theirs as the server's variant.
    assert!(fs::read(env.w("big.img")).expect("read") == target);
    let server = env.ok(&["show", "big.img", "--variant", "server"]);
    assert!(server.stdout == theirs);
    assert!(steps(&r).iter().all(|s| s["side"] != "remote"), "{r}");
}

#[test]
fn a_file_with_another_hard_link_on_the_server_is_never_written_into() {
    let (env, base) = setup("in-place");
    // The other name is outside what the workspace sees as this file: it must keep its
    // content, as it does when a new file is renamed over the first name.
    fs::hard_link(env.r("big.img"), env.root().join("elsewhere.img")).expect("link");
    let target = edited(&base, &[2 << 20]);
    env.put_local("big.img", &target);
    let r = env.json(0, &["push", "--json"]);
    assert_eq!(r["patched"].as_array().map(Vec::len), Some(0), "{r}");
    assert_eq!(written(&r), BIG as u64, "{r}");
    assert!(fs::read(env.r("big.img")).expect("read") == target);
    assert!(fs::read(env.root().join("elsewhere.img")).expect("read") == base);
    env.assert_noop_sync();
}

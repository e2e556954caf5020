//! The fault suite, hostile-input half, through the binary: names with every byte but `/` and
//! NUL, 255-byte names, very deep trees, symlink loops and symlinks that point outside the
//! workspace (carried as symlinks, never followed), and files that change while they are read
//! (never recorded or sent with content they never had).

mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{bytes_path, read, tree, Env, Node};

/// One name per byte value (but `/` and NUL), and a name of 255 bytes.
fn hostile_names() -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = (1u8..=255)
        .filter(|&b| b != b'/')
        .map(|b| vec![b'n', b, b'n'])
        .collect();
    names.push(vec![b'L'; 255]);
    names.push(b"\xff\xfe not utf-8 \x80".to_vec());
    names.push(b" leading and trailing spaces ".to_vec());
    names.push(b"-starts-with-a-dash".to_vec());
    names
}

#[test]
fn names_with_every_byte_and_255_bytes_long_travel_both_ways() {
    let env = Env::new();
    fs::create_dir(env.r("from-server")).expect("mkdir");
    for (i, name) in hostile_names().iter().enumerate() {
        let p = env.r("from-server").join(bytes_path(name));
        fs::write(&p, format!("file {i}\n")).expect("write a hostile name");
    }
    env.clone_ws();
    env.assert_in_sync();
    assert_eq!(
        fs::read_dir(env.w("from-server")).expect("list").count(),
        hostile_names().len()
    );

    fs::create_dir(env.w("from-here")).expect("mkdir");
    for (i, name) in hostile_names().iter().enumerate() {
        let p = env.w("from-here").join(bytes_path(name));
        fs::write(&p, format!("local file {i}\n")).expect("write a hostile name");
    }
    env.ok(&["push"]);
    env.assert_in_sync();
    // And an edit of each comes back.
    for name in hostile_names() {
        let p = env.r("from-here").join(bytes_path(&name));
        common::write_changed(&p, b"edited on the server\n");
    }
    env.ok(&["pull"]);
    env.assert_in_sync();
    let fsck = env.run(["fsck"]);
    assert_eq!(fsck.code, 0, "{fsck}");
}

#[test]
fn a_tree_300_directories_deep_travels_both_ways() {
    let env = Env::new();
    let deep: PathBuf = (0..300).map(|i| format!("d{i:03}")).collect();
    assert!(deep.as_os_str().len() > 1_400, "a long path");
    fs::create_dir_all(env.r(&deep)).expect("mkdir -p");
    fs::write(env.r(deep.join("bottom.txt")), "at the bottom\n").expect("write");
    env.clone_ws();
    assert_eq!(read(env.w(deep.join("bottom.txt"))), "at the bottom\n");
    env.put_local(deep.join("bottom.txt"), "edited at the bottom\n");
    env.put_local(deep.join("new.txt"), "new at the bottom\n");
    env.ok(&["push"]);
    env.assert_in_sync();
    fs::remove_file(env.r(deep.join("new.txt"))).expect("rm");
    env.ok(&["pull"]);
    env.assert_in_sync();
}

#[test]
fn symlink_loops_and_links_out_of_the_tree_are_carried_never_followed() {
    let env = Env::with_remote(&[("dir/file.txt", "inside\n")]);
    let outside = env.root().join("outside");
    fs::create_dir(&outside).expect("mkdir");
    fs::write(outside.join("secret.txt"), "not part of any tree\n").expect("write");
    let links: [(&str, PathBuf); 6] = [
        ("self", PathBuf::from("self")),
        ("a", PathBuf::from("b")),
        ("b", PathBuf::from("a")),
        ("dir/up", PathBuf::from("..")),
        ("out", outside.clone()),
        ("dir/out-file", outside.join("secret.txt")),
    ];
    for (name, target) in &links {
        symlink(target, env.r(name)).expect("symlink");
    }
    env.clone_ws();
    env.assert_in_sync();
    for (name, target) in &links {
        assert_eq!(
            fs::read_link(env.w(name)).expect("a symlink in the workspace"),
            *target,
            "{name}"
        );
    }
    assert_no_secret(&env.ws);

    // Links made in the workspace go out as links too.
    symlink("/", env.w("root")).expect("symlink");
    symlink("../..", env.w("dir/up2")).expect("symlink");
    symlink(&outside, env.w("dir/out2")).expect("symlink");
    env.ok(&["push"]);
    env.assert_in_sync();
    assert_eq!(fs::read_link(env.r("root")).expect("link"), Path::new("/"));
    assert_no_secret(&env.remote);
    let fsck = env.run(["fsck"]);
    assert_eq!(fsck.code, 0, "{fsck}");
}

/// Nothing from outside the tree was copied in (a followed link would have).
fn assert_no_secret(root: &Path) {
    for (path, node) in tree(root) {
        if let Node::File(_, content) = node {
            assert_ne!(
                content,
                b"not part of any tree\n",
                "{:?} holds a file from outside the tree",
                String::from_utf8_lossy(&path)
            );
        }
    }
}

/// True when `got` is a state a file rewritten in place with `a` and `b` passes through: the
/// beginning of one of them (a write fills the file from its start after truncating it). A
/// torn read (part of one version, then part of the other) is not.
fn was_a_state(got: &[u8], a: &[u8], b: &[u8]) -> bool {
    a.starts_with(got) || b.starts_with(got)
}

/// Rewrites `path` in place, alternately with `a` and `b`, until `stop` is set.
fn keep_rewriting(path: PathBuf, a: Vec<u8>, b: Vec<u8>, stop: Arc<AtomicBool>) {
    let mut flip = false;
    while !stop.load(Ordering::SeqCst) {
        let _ = fs::write(&path, if flip { &a } else { &b });
        flip = !flip;
    }
}

fn rewriter(path: PathBuf, a: &[u8], b: &[u8]) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (a, b, s) = (a.to_vec(), b.to_vec(), Arc::clone(&stop));
    (
        stop,
        std::thread::spawn(move || keep_rewriting(path, a, b, s)),
    )
}

#[test]
fn a_remote_file_changing_while_it_is_pulled_is_never_recorded_with_content_it_never_had() {
    let env = Env::with_remote(&[("a.txt", "a\n")]);
    let a = common::noise(1, 3_000_000);
    let b = common::noise(2, 3_000_000);
    fs::write(env.r("hot.bin"), &a).expect("write");
    env.clone_ws();
    for round in 0..3 {
        let (stop, writer) = rewriter(env.r("hot.bin"), &a, &b);
        let r = env.run(["pull"]);
        stop.store(true, Ordering::SeqCst);
        writer.join().expect("the writer ends");
        assert_eq!(r.code, 0, "round {round}: {r}");
        let here = fs::read(env.w("hot.bin")).expect("the file is there");
        assert!(
            was_a_state(&here, &a, &b),
            "round {round}: the workspace got content the file never had: {} bytes, {} leading bytes of a, {} of b; {r}",
            here.len(),
            here.iter().zip(&a).take_while(|(x, y)| x == y).count(),
            here.iter().zip(&b).take_while(|(x, y)| x == y).count(),
        );
        let base = env.ok(&["show", "hot.bin", "--variant", "base"]).stdout;
        assert!(
            base == here,
            "round {round}: the store recorded other content than the workspace got"
        );
    }
    fs::write(env.r("hot.bin"), &b).expect("write");
    common::write_changed(&env.r("hot.bin"), &b);
    env.ok(&["pull"]);
    assert!(fs::read(env.w("hot.bin")).expect("read") == b);
}

#[test]
fn a_local_file_changing_while_it_is_pushed_is_never_sent_with_content_it_never_had() {
    let env = Env::with_remote(&[("a.txt", "a\n")]);
    let a = common::noise(3, 3_000_000);
    let b = common::noise(4, 3_000_000);
    env.clone_ws();
    fs::write(env.w("hot.bin"), &a).expect("write");
    for round in 0..3 {
        let (stop, writer) = rewriter(env.w("hot.bin"), &a, &b);
        let r = env.run(["push"]);
        stop.store(true, Ordering::SeqCst);
        writer.join().expect("the writer ends");
        assert_eq!(r.code, 0, "round {round}: {r}");
        if let Ok(there) = fs::read(env.r("hot.bin")) {
            assert!(
                was_a_state(&there, &a, &b),
                "round {round}: the remote got content the file never had"
            );
        }
    }
    common::write_changed(&env.w("hot.bin"), &a);
    env.ok(&["push"]);
    assert!(fs::read(env.r("hot.bin")).expect("pushed") == a);
    assert!(
        !env.remote
            .read_dir()
            .expect("list")
            .flatten()
            .any(|e| e.file_name().as_bytes().starts_with(b".cachesync-tmp.")),
        "no temporary left on the remote"
    );
}

/// Makes files and directories appear and vanish under `root` until the flag is set.
fn churn(root: PathBuf) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let handle = std::thread::spawn(move || {
        let mut n = 0u64;
        while !flag.load(Ordering::SeqCst) {
            let dir = root.join(format!("d{}", n % 7));
            let _ = fs::create_dir_all(&dir);
            let _ = fs::write(dir.join(format!("f{}", n % 13)), n.to_le_bytes());
            if n.is_multiple_of(3) {
                let _ = fs::remove_dir_all(root.join(format!("d{}", (n + 3) % 7)));
            }
            n += 1;
        }
    });
    (stop, handle)
}

/// Enough files that never change for the churn's deletions (at most 91 files at a time) to
/// stay under the deletion guard's half.
fn many_stable_files(env: &Env) {
    for i in 0..200 {
        fs::write(env.r(format!("keep/s{i}.txt")), format!("{i}\n")).expect("write");
    }
}

#[test]
fn a_remote_tree_changing_while_it_is_scanned_is_synced_without_loss() {
    let env = Env::with_remote(&[("keep/a.txt", "a\n"), ("keep/b.txt", "b\n")]);
    many_stable_files(&env);
    env.clone_ws();
    env.put_local("mine.txt", "made here\n");
    // On the server, files and directories appear and vanish the whole time the syncs run.
    let (stop, churn) = churn(env.r("churn"));
    for round in 0..3 {
        let r = env.run(["sync"]);
        assert_eq!(r.code, 0, "round {round}: {r}");
        assert_eq!(read(env.w("mine.txt")), "made here\n");
        assert_eq!(read(env.r("keep/a.txt")), "a\n", "round {round}");
    }
    stop.store(true, Ordering::SeqCst);
    churn.join().expect("the churn ends");
    env.ok(&["sync"]);
    env.assert_in_sync();
    assert_eq!(read(env.r("mine.txt")), "made here\n");
    let fsck = env.run(["fsck"]);
    assert_eq!(fsck.code, 0, "{fsck}");
}

#[test]
fn a_workspace_changing_while_it_is_scanned_is_synced_without_loss() {
    let env = Env::with_remote(&[("keep/a.txt", "a\n")]);
    many_stable_files(&env);
    env.clone_ws();
    let (stop, churn) = churn(env.w("churn"));
    for round in 0..3 {
        let r = env.run(["sync"]);
        assert_eq!(r.code, 0, "round {round}: {r}");
        assert_eq!(read(env.r("keep/a.txt")), "a\n", "round {round}");
    }
    stop.store(true, Ordering::SeqCst);
    churn.join().expect("the churn ends");
    env.ok(&["sync"]);
    env.assert_in_sync();
}

//! The sshfs fixture against the real thing: files flow both ways, a killed server gives EIO,
//! a restarted one serves again, and dropping the fixture leaves nothing behind.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use cachesync_testutils::{is_mount_point, wait_until, SshfsRemote};

/// Generous bounds: the conditions are normally met in well under a second.
const BOUND: Duration = Duration::from_secs(10);

fn is_eio(result: &io::Result<Vec<u8>>) -> bool {
    matches!(result, Err(e) if e.raw_os_error() == Some(libc::EIO))
}

fn reads_as(path: &Path, content: &[u8]) -> bool {
    fs::read(path).is_ok_and(|c| c == content)
}

#[test]
fn files_flow_both_ways() {
    let remote = SshfsRemote::start();
    assert!(is_mount_point(remote.mnt()));
    assert_ne!(remote.port(), 0);

    // Written on the server, seen through the mount.
    fs::write(
        remote.served().join("from-server.txt"),
        b"written on the server\n",
    )
    .expect("write in served/");
    let through = remote.mnt().join("from-server.txt");
    wait_until(
        "a file written in served/ reads through the mount",
        BOUND,
        || reads_as(&through, b"written on the server\n"),
    );

    // Written through the mount, on the server once close() returned.
    fs::create_dir(remote.mnt().join("sub")).expect("mkdir through the mount");
    fs::write(
        remote.mnt().join("sub/from-client.txt"),
        b"written by the client\n",
    )
    .expect("write through the mount");
    assert_eq!(
        fs::read(remote.served().join("sub/from-client.txt")).expect("read in served/"),
        b"written by the client\n"
    );
}

#[test]
fn killed_server_gives_eio_and_restart_recovers() {
    let mut remote = SshfsRemote::start();
    let port = remote.port();
    fs::write(remote.served().join("f.txt"), b"data\n").expect("write in served/");
    let f = remote.mnt().join("f.txt");
    wait_until("f.txt reads through the mount", BOUND, || {
        reads_as(&f, b"data\n")
    });

    let t = Instant::now();
    remote.kill_server();
    let kill_took = t.elapsed();
    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
        "nothing listens on the port once the server is killed"
    );
    let t = Instant::now();
    let mut reads = 0;
    wait_until("a read through the mount fails with EIO", BOUND, || {
        reads += 1;
        let r = fs::read(&f);
        if let Err(e) = &r {
            assert_eq!(e.raw_os_error(), Some(libc::EIO), "unexpected error {e}");
        }
        is_eio(&r)
    });
    let eio_after = t.elapsed();
    // The outage lasts: the mount keeps failing, it does not come back empty.
    let t = Instant::now();
    let again = fs::read(&f);
    let second_eio = t.elapsed();
    assert!(is_eio(&again), "a second read during the outage: {again:?}");
    assert!(
        matches!(fs::read_dir(remote.mnt()), Err(e) if e.raw_os_error() == Some(libc::EIO)),
        "listing the mount during the outage fails with EIO"
    );

    let t = Instant::now();
    remote.restart_server();
    let restart_took = t.elapsed();
    assert_eq!(remote.port(), port);
    let t = Instant::now();
    let mut tries = 0;
    wait_until("reads through the mount work after restart", BOUND, || {
        tries += 1;
        reads_as(&f, b"data\n")
    });
    let recovered_after = t.elapsed();
    eprintln!(
        "kill_server {kill_took:?}; first EIO after {eio_after:?} ({reads} reads); \
         next failing read {second_eio:?}; restart_server {restart_took:?}; \
         reads work again after {recovered_after:?} ({tries} reads)"
    );

    // Writes work again too, and reach the server.
    fs::write(remote.mnt().join("after.txt"), b"after the outage\n")
        .expect("write through the mount after the outage");
    assert_eq!(
        fs::read(remote.served().join("after.txt")).expect("read in served/"),
        b"after the outage\n"
    );
}

#[test]
fn drop_unmounts_and_removes_everything() {
    let remote = SshfsRemote::start();
    let mnt = remote.mnt().to_path_buf();
    let root = mnt.parent().expect("mnt/ has a parent").to_path_buf();
    let port = remote.port();
    fs::write(remote.mnt().join("x"), b"x").expect("write through the mount");
    drop(remote);
    assert!(!is_mount_point(&mnt));
    assert!(!root.exists(), "{} is removed", root.display());
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
}

#[test]
fn drop_during_an_outage_cleans_up() {
    let mut remote = SshfsRemote::start();
    let mnt = remote.mnt().to_path_buf();
    let root = mnt.parent().expect("mnt/ has a parent").to_path_buf();
    remote.kill_server();
    drop(remote);
    assert!(!is_mount_point(&mnt));
    assert!(!root.exists(), "{} is removed", root.display());
}

#[test]
fn drop_with_a_file_still_open_cleans_up() {
    let remote = SshfsRemote::start();
    let mnt = remote.mnt().to_path_buf();
    let root = mnt.parent().expect("mnt/ has a parent").to_path_buf();
    fs::write(remote.served().join("open.txt"), b"open\n").expect("write in served/");
    let mut open = None;
    wait_until("open.txt opens through the mount", BOUND, || {
        open = fs::File::open(mnt.join("open.txt")).ok();
        open.is_some()
    });
    let t = Instant::now();
    drop(remote);
    eprintln!(
        "drop with a file open through the mount took {:?}",
        t.elapsed()
    );
    assert!(!is_mount_point(&mnt));
    assert!(!root.exists(), "{} is removed", root.display());
    drop(open);
}

#[test]
fn delayed_mount_adds_the_round_trip_and_remounts_cold() {
    let one_way = Duration::from_millis(15);
    let mut remote = SshfsRemote::builder()
        .dir_cache(true)
        .delay(one_way)
        .start();
    fs::write(remote.served().join("far.txt"), b"from afar").expect("write on the server");

    // Every uncached call through the mount crosses the proxy both ways: at least 30 ms.
    let started = Instant::now();
    assert!(reads_as(&remote.mnt().join("far.txt"), b"from afar"));
    assert!(
        started.elapsed() >= 2 * one_way,
        "a cold read took {:?}, less than one delayed round trip",
        started.elapsed()
    );

    // Written through the mount, it reaches the server through the proxy.
    fs::write(remote.mnt().join("near.txt"), b"from here").expect("write through the mount");
    assert!(reads_as(&remote.served().join("near.txt"), b"from here"));

    // A change made on the server hides behind sshfs's cache; a remount shows it.
    let before = fs::metadata(remote.mnt().join("far.txt")).expect("stat through the mount");
    assert_eq!(before.len(), 9);
    fs::write(remote.served().join("far.txt"), b"changed on the server").expect("rewrite");
    remote.remount();
    assert!(is_mount_point(remote.mnt()));
    assert!(reads_as(
        &remote.mnt().join("far.txt"),
        b"changed on the server"
    ));
}

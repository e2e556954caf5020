//! The remote helper process's protocol, call by call, against the plain remote it wraps:
//! both must answer the same.

use std::fs;
use std::io;
use std::path::Path;

use cachesync_engine::fs_remote::FsRemote;
use cachesync_engine::remote::Remote;
use cachesync_engine::remote_process::ProcessRemote;

#[test]
fn a_small_file_is_read_whole_with_its_stat_in_one_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("small"), vec![7u8; 100]).expect("write");
    fs::write(dir.path().join("big"), vec![8u8; 300 << 10]).expect("write");
    let helper = ProcessRemote::spawn(Path::new(env!("CARGO_BIN_EXE_cachesync")), dir.path())
        .expect("the helper starts");
    let plain = FsRemote::new(dir.path());
    let remotes: [&dyn Remote; 2] = [&helper, &plain];
    for remote in remotes {
        let (bytes, after) = remote
            .read_small(b"small", 256 << 10)
            .expect("read")
            .expect("small enough");
        assert_eq!(bytes, vec![7u8; 100]);
        assert_eq!(after.size, 100);
        assert_eq!(after, remote.stat(b"small").expect("stat").expect("there"));
        // Exactly at the limit is small; one byte over is not (nothing is returned).
        assert!(remote.read_small(b"small", 100).expect("read").is_some());
        assert!(remote.read_small(b"small", 99).expect("read").is_none());
        assert!(remote
            .read_small(b"big", 256 << 10)
            .expect("read")
            .is_none());
        let missing = remote.read_small(b"missing", 1024).expect_err("not there");
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }
}

#[test]
fn a_small_file_deleted_while_it_is_read_is_not_found_through_the_helper_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("remote");
    fs::create_dir(&root).expect("mkdir");
    fs::write(root.join("vanishing"), b"soon gone").expect("write");
    let pause = dir.path().join("paused");
    // The helper pauses after reading the file, before closing it and looking at it again.
    std::env::set_var("CACHESYNC_PAUSE", "helper-close:vanishing");
    std::env::set_var("CACHESYNC_PAUSE_FILE", &pause);
    let helper = ProcessRemote::spawn(Path::new(env!("CARGO_BIN_EXE_cachesync")), &root)
        .expect("the helper starts");
    std::env::remove_var("CACHESYNC_PAUSE");
    std::env::remove_var("CACHESYNC_PAUSE_FILE");
    std::thread::scope(|s| {
        let read = s.spawn(|| helper.read_small(b"vanishing", 1024));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !pause.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the helper never paused"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        fs::remove_file(root.join("vanishing")).expect("delete");
        fs::remove_file(&pause).expect("resume");
        let gone = read
            .join()
            .expect("the read ends")
            .expect_err("the stat after the read finds nothing");
        // Not "other": the sync takes a file gone between its listing and its read for a
        // deletion, and only other errors for a file it cannot read.
        assert_eq!(gone.kind(), io::ErrorKind::NotFound, "{gone}");
    });
}

#[test]
fn many_small_files_are_read_in_one_call_each_with_its_own_outcome() {
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..1_500u32 {
        fs::write(dir.path().join(format!("f{i}")), i.to_le_bytes()).expect("write");
    }
    fs::write(dir.path().join("big"), vec![8u8; 300 << 10]).expect("write");
    fs::create_dir(dir.path().join("dir")).expect("mkdir");
    let helper = ProcessRemote::spawn(Path::new(env!("CARGO_BIN_EXE_cachesync")), dir.path())
        .expect("the helper starts");
    let plain = FsRemote::new(dir.path());
    // More paths than the helper takes in one request (1,024): the client splits them.
    let mut paths: Vec<Vec<u8>> = (0..1_500u32)
        .map(|i| format!("f{i}").into_bytes())
        .collect();
    paths.insert(3, b"missing".to_vec());
    paths.insert(7, b"big".to_vec());
    paths.insert(1_100, b"dir".to_vec());
    let remotes: [&dyn Remote; 2] = [&helper, &plain];
    for remote in remotes {
        let reads = remote
            .read_small_many(&paths, 256 << 10, &|| {})
            .expect("the call itself succeeds");
        assert_eq!(reads.len(), paths.len(), "one result per path, in order");
        for (path, read) in paths.iter().zip(reads) {
            match path.as_slice() {
                b"missing" => {
                    assert_eq!(read.expect_err("not there").kind(), io::ErrorKind::NotFound)
                }
                b"big" => assert!(read.expect("read").is_none(), "too big: nothing"),
                b"dir" => {
                    let e = read.expect_err("a directory is not read");
                    assert_eq!(e.raw_os_error(), Some(libc::EISDIR), "{e}");
                }
                name => {
                    let i: u32 = std::str::from_utf8(&name[1..])
                        .expect("utf-8")
                        .parse()
                        .expect("a number");
                    let (bytes, after) = read.expect("read").expect("small");
                    assert_eq!(bytes, i.to_le_bytes());
                    assert_eq!(after, remote.stat(name).expect("stat").expect("there"));
                }
            }
        }
    }
}

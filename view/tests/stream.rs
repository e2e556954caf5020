//! A big remote-only file is streamed: its first bytes are served while the rest is still
//! coming, and a fetch that stalls fails the reads it could not serve with EDISCONDATA's
//! errno, leaving nothing half-written in the workspace. Run on the view's state directly,
//! over a test double of the remote whose reads can be made to hang.

use std::fs;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cachesync_engine::fs_remote::FsRemote;
use cachesync_engine::journal::OpKind;
use cachesync_engine::plan::Direction;
use cachesync_engine::{sync, NoProgress, Workspace};
use cachesync_testutils::{poll_until, Fault, FaultRemote};
use cachesync_view::state::State;

const SIZE: usize = 4 << 20;

#[test]
fn a_big_file_serves_its_first_bytes_before_the_rest_and_fails_cleanly_when_it_stalls() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let remote = tmp.path().join("remote");
    fs::create_dir(&remote).expect("mkdir");
    let body = cachesync_testutils::cli::noise(7, SIZE);
    fs::write(remote.join("big.bin"), &body).expect("write");
    let fault = FaultRemote::new(FsRemote::new(&remote));
    let ws_dir = tmp.path().join("ws");
    let mut ws = Workspace::init_with_remote_factory(
        &remote,
        &ws_dir,
        |c| c.timeout_ms = 500,
        fault.factory(),
    )
    .expect("init");
    let clone = sync::Options {
        command: OpKind::Clone,
        direction: Direction::Pull,
        paths: Vec::new(),
        dry_run: false,
        force: true,
        exact_paths: false,
    };
    sync::run(&mut ws, &clone, &NoProgress).expect("clone");
    cachesync_engine::presence::drop_paths(&ws, &[b"big.bin".to_vec()]).expect("drop");
    cachesync_engine::gc::run(&ws).expect("gc: only the share has the content now");

    let state = Arc::new(Mutex::new(State::new(ws).expect("state")));
    state.lock().expect("lock").me = Arc::downgrade(&state);
    fault.inject("read", b"big.bin", Fault::Hang);
    let fh = state
        .lock()
        .expect("lock")
        .open(b"big.bin", libc::O_RDONLY)
        .expect("open returns at once");
    let stream = state.lock().expect("lock").stream_of(fh).expect("streamed");
    let first = stream.read(0, 4096).expect("the first bytes come");
    assert_eq!(first, body[..4096]);
    let end = stream
        .read((SIZE - 4096) as u64, 4096)
        .expect_err("the rest never comes");
    assert_eq!(i32::from(end), libc::ENODATA);
    assert!(!ws_dir.join("big.bin").exists(), "nothing half-written");
    assert!(
        poll_until(Duration::from_secs(10), || state
            .lock()
            .expect("lock")
            .streams
            .is_empty()),
        "the fetch ended and gave the workspace back"
    );
    state.lock().expect("lock").release(fh);

    fault.clear();
    let fh = state
        .lock()
        .expect("lock")
        .open(b"big.bin", libc::O_RDONLY)
        .expect("open again");
    let stream = state.lock().expect("lock").stream_of(fh).expect("streamed");
    let mut got = Vec::new();
    while got.len() < SIZE {
        let part = stream.read(got.len() as u64, 128 << 10).expect("read");
        assert!(!part.is_empty(), "short file at {}", got.len());
        got.extend(part);
    }
    assert_eq!(got, body);
    assert!(
        poll_until(Duration::from_secs(10), || ws_dir.join("big.bin").is_file()),
        "the fetch put the file in the workspace"
    );
    assert_eq!(fs::read(ws_dir.join("big.bin")).expect("read"), body);
}

//! Other cachesync commands while the view runs.
//!
//! The view holds the workspace (its lock and its store) to serve requests. A command that
//! starts connects to `.cachesync/view.sock` and writes `release`: the view lets go of the
//! workspace, answers `released` (with the number of its hand-over of what changed, see
//! [`crate::monitor`]), and the command opens it as usual. The
//! command keeps the connection open while it works; when it ends (it writes `done` and the
//! view answers `ok`, or the connection closes, whatever way the command ended), the view
//! takes the workspace back at its next request and reads the store again, so that what it
//! shows follows what the command did. The `done`/`ok` exchange makes that hold from the
//! moment the command returns: on a close alone, the view may hear of it a moment later, and
//! answer a request meanwhile from what it read before (a file just dropped was not found).
//! The view offers it with the word `ack` in its answer to `release`. Meanwhile the
//! requests that need the store (fetching a remote-only file, pinning, settling a conflict)
//! fail with `EAGAIN`; everything else goes on.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::state::State;

/// The control socket, in `.cachesync/`.
pub const SOCKET: &str = "view.sock";

/// How long a command waits for the view to let go.
const ANSWER_WAIT: Duration = Duration::from_secs(30);

/// What the view and its control connections share.
#[derive(Debug, Default)]
pub struct Shared {
    /// Commands the view let go for that are not done.
    busy: AtomicUsize,
    /// The store changed since the view last read it.
    stale: AtomicBool,
}

impl Shared {
    /// True while a command the view let go for is working.
    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst) > 0
    }

    /// True when the store may have changed since the view last read it.
    pub fn stale(&self) -> bool {
        self.stale.load(Ordering::SeqCst)
    }

    /// The store may have changed: read it again when the workspace is back.
    pub fn mark_stale(&self) {
        self.stale.store(true, Ordering::SeqCst);
    }

    /// The view read the store again.
    pub fn fresh(&self) {
        self.stale.store(false, Ordering::SeqCst);
    }
}

/// Serves the control socket at `path` on a thread of its own (one more per connection).
///
/// # Errors
/// I/O errors binding the socket.
pub fn serve(path: &Path, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let state = Arc::clone(&state);
            std::thread::spawn(move || answer(conn, &state));
        }
    });
    Ok(())
}

/// One connection: `release`, then wait until the command is done.
fn answer(conn: UnixStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(&conn);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.trim() != "release" {
        return;
    }
    let (shared, handoff) = {
        let mut s = state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.shared.busy.fetch_add(1, Ordering::SeqCst);
        let handoff = s.let_go();
        (Arc::clone(&s.shared), handoff)
    };
    let answer = match handoff {
        Some((session, upto)) => format!("released {session} {upto} ack\n"),
        None => "released ack\n".to_string(),
    };
    let _ = (&conn).write_all(answer.as_bytes());
    // The command holds the connection while it works; `done`, EOF (or any error) is its end.
    let mut line = String::new();
    let done = loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(n) if n > 0 => {
                if line.trim() == "done" {
                    break true;
                }
            }
            _ => break false,
        }
    };
    shared.stale.store(true, Ordering::SeqCst);
    shared.busy.fetch_sub(1, Ordering::SeqCst);
    if done {
        let _ = (&conn).write_all(b"ok\n");
    }
}

/// A view's answer to `release`.
#[derive(Debug)]
pub struct Released {
    /// Keep it open until the command is done: closing it gives the workspace back.
    pub conn: UnixStream,
    /// The hand-over of what changed in the workspace (session and number), when the view
    /// watches it (see [`crate::monitor`]).
    pub handoff: Option<(u64, u64)>,
    /// The view answers `done` (see [`Released::done`]).
    pub acks: bool,
}

impl Released {
    /// The command is done with the workspace (call once it has closed it): returns once
    /// the view knows, so that its next answer follows what the command did. Waits at most
    /// [`DONE_WAIT`] for a view that does not answer; does nothing for one that never does.
    pub fn done(&self) {
        if !self.acks || self.conn.set_read_timeout(Some(DONE_WAIT)).is_err() {
            return;
        }
        if (&self.conn).write_all(b"done\n").is_ok() {
            let mut line = String::new();
            let _ = BufReader::new(&self.conn).read_line(&mut line);
        }
    }
}

/// How long a command that is done waits for the view to hear of it.
const DONE_WAIT: Duration = Duration::from_secs(5);

/// For a command on the workspace at `meta_dir`'s parent: asks a running view to let go of
/// it (the view answers `released SESSION NUMBER`, or `released` when it does not watch the
/// workspace). `None` when no view answers there.
pub fn ask_release(meta_dir: &Path) -> Option<Released> {
    let conn = UnixStream::connect(meta_dir.join(SOCKET)).ok()?;
    conn.set_read_timeout(Some(ANSWER_WAIT)).ok()?;
    (&conn).write_all(b"release\n").ok()?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line).ok()?;
    let mut words = line.split_whitespace();
    if words.next() != Some("released") {
        return None;
    }
    let words: Vec<&str> = words.collect();
    let numbers: Vec<u64> = words.iter().filter_map(|w| w.parse().ok()).collect();
    let handoff = match numbers[..] {
        [session, upto] => Some((session, upto)),
        _ => None,
    };
    let acks = words.contains(&"ack");
    Some(Released {
        conn,
        handoff,
        acks,
    })
}

/// Runs `command` (`cachesync sync -q`) in `root` every `every`, output appended to `log`,
/// until `stop` is set: the view's own syncs, which go through [`ask_release`] like any
/// other command.
pub fn sync_every(
    command: PathBuf,
    root: PathBuf,
    log: PathBuf,
    every: Duration,
    stop: Arc<AtomicBool>,
) {
    std::thread::spawn(move || loop {
        let start = std::time::Instant::now();
        while start.elapsed() < every {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::park_timeout(Duration::from_millis(200).min(every));
        }
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log);
        let Ok(out) = out else { continue };
        let Ok(err) = out.try_clone() else { continue };
        let _ = std::process::Command::new(&command)
            .args(["sync", "-q"])
            .current_dir(&root)
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .status();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_that_is_done_returns_once_the_view_knows() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let remote = tmp.path().join("remote");
        std::fs::create_dir(&remote).expect("mkdir");
        let ws = cachesync_engine::Workspace::init(&remote, &tmp.path().join("ws"), |_| {})
            .expect("init");
        let meta = ws.meta_dir();
        let state = Arc::new(Mutex::new(State::new(ws).expect("state")));
        let shared = Arc::clone(&state.lock().expect("lock").shared);
        serve(&meta.join(SOCKET), Arc::clone(&state)).expect("serve");
        let released = ask_release(&meta).expect("the view answers");
        assert!(released.acks, "the view offers done/ok");
        assert!(shared.busy(), "the view let go for the command");
        // Done (the connection still open, as in a command until it exits): the view knows
        // by the time this returns, not a moment later.
        released.done();
        assert!(!shared.busy(), "the view still waits for the command");
        assert!(shared.stale(), "the view will not read the store again");
    }
}

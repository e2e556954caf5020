//! Big remote-only files are streamed: opening one for reading starts the fetch on a thread
//! of its own and returns at once; each read waits only until its own bytes have come.
//!
//! The fetch is the usual one (`presence::get`: into the store, verified against the base,
//! then into the workspace); what it reads is also written, as it comes, to a spool file the
//! reads are served from. The workspace handle goes with the fetch and comes back when it
//! ends, so meanwhile the requests that need the store fail with `EAGAIN`. A read whose bytes
//! do not come (the share went away: the remote helper's timeout ends the fetch) fails with
//! EDISCONDATA's errno; a file that turns out changed on the server since the last sync
//! fails the same way once the fetch sees it (bytes already read came from the share's
//! current version).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use cachesync_engine::Workspace;
use fuser::Errno;

use crate::errno::{of_io, EDISCONDATA};
use crate::state::{Answer, State};

/// Files of at least this size are streamed.
pub const STREAM_MIN: u64 = 1 << 20;

/// How far a fetch has come.
#[derive(Debug, Default)]
struct Progress {
    /// Bytes from offset 0 that are in the spool.
    have: u64,
    /// The fetch's end: `Ok` (the whole file is in the spool) or the errno reads get.
    done: Option<Answer<()>>,
}

/// One file being streamed: its spool and its progress.
#[derive(Debug)]
pub struct Stream {
    spool: File,
    progress: Mutex<Progress>,
    moved: Condvar,
    /// How long a read waits without any byte coming before it gives up.
    patience: Duration,
}

impl Stream {
    fn advance(&self, end: u64) {
        let mut p = self
            .progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        p.have = p.have.max(end);
        self.moved.notify_all();
    }

    fn finish(&self, result: Answer<()>) {
        let mut p = self
            .progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        p.done = Some(result);
        self.moved.notify_all();
    }

    /// Reads up to `size` bytes at `offset`, once they have come (or the fetch ended).
    ///
    /// # Errors
    /// The fetch's errno when it ended before those bytes came; EDISCONDATA's when nothing
    /// came for the remote's timeout twice over (a fetch stuck past its own timeout).
    pub fn read(&self, offset: u64, size: u32) -> Answer<Vec<u8>> {
        let want = offset.saturating_add(u64::from(size));
        let mut p = self
            .progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut last = (p.have, Instant::now());
        while p.have < want && p.done.is_none() {
            let (next, _) = self
                .moved
                .wait_timeout(p, self.patience.saturating_sub(last.1.elapsed()))
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            p = next;
            if p.have != last.0 {
                last = (p.have, Instant::now());
            } else if last.1.elapsed() >= self.patience {
                return Err(EDISCONDATA);
            }
        }
        if p.have < want {
            if let Some(Err(e)) = p.done {
                return Err(e);
            }
        }
        drop(p);
        crate::state::read_full_at(&self.spool, offset, size)
    }
}

impl State {
    /// Starts streaming the remote-only `path`: the fetch runs on its own thread with the
    /// workspace handle, which it gives back to `me` when it ends. A second open of a file
    /// being streamed shares its stream.
    pub fn start_stream(&mut self, path: &[u8], me: &Weak<Mutex<State>>) -> Answer<Arc<Stream>> {
        if let Some(s) = self.streams.get(path) {
            return Ok(Arc::clone(s));
        }
        self.room_for(path)?;
        let timeout = Duration::from_millis(self.ws()?.config.timeout_ms);
        let spool = tempfile::tempfile_in(&self.meta).map_err(|e| of_io(&e))?;
        let writer = spool.try_clone().map_err(|e| of_io(&e))?;
        let stream = Arc::new(Stream {
            spool,
            progress: Mutex::default(),
            moved: Condvar::new(),
            patience: timeout * 2,
        });
        let ws = self.take_ws().ok_or(Errno::EAGAIN)?;
        self.streams.insert(path.to_vec(), Arc::clone(&stream));
        let (path, me, s) = (path.to_vec(), me.clone(), Arc::clone(&stream));
        std::thread::spawn(move || {
            let result = fetch_into(&ws, &path, &writer, &s);
            if let Err(why) = &result {
                State::emit_not_cached(&ws, &path, why);
            }
            s.finish(result.map_err(|_| EDISCONDATA));
            if let Some(state) = me.upgrade() {
                let mut st = state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                st.streams.remove(&path);
                st.give_back(ws);
            }
        });
        Ok(stream)
    }
}

/// The fetch of a stream: `presence::get`, its bytes written to the spool as they come.
fn fetch_into(ws: &Workspace, path: &[u8], spool: &File, s: &Stream) -> Result<(), String> {
    let mut observe = |pos: u64, bytes: &[u8]| {
        if spool.write_all_at(bytes, pos).is_ok() {
            s.advance(pos + bytes.len() as u64);
        }
    };
    let got = cachesync_engine::presence::get_observed(ws, &[path.to_vec()], Some(&mut observe));
    match got {
        Ok(r) if r.done.iter().any(|p| p == path) => {
            // Content from the store (nothing read from the share): the spool is filled from
            // the workspace file the fetch wrote.
            let abs = cachesync_engine::paths::under(&ws.root, path);
            let mut src = File::open(abs).map_err(|e| e.to_string())?;
            let len = src.metadata().map_err(|e| e.to_string())?.len();
            if s.progress.lock().map_or(0, |p| p.have) < len {
                std::io::copy(&mut src, &mut &*spool).map_err(|e| e.to_string())?;
                s.advance(len);
            }
            Ok(())
        }
        Ok(r) => Err(r
            .refused
            .first()
            .map_or_else(|| "refused".to_string(), |(_, w)| w.clone())),
        Err(e) => Err(e.to_string()),
    }
}

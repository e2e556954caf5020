//! Modes: connected or disconnected (by hand, or automatically with the reason), per workspace.
//!
//! A workspace disconnected by hand never touches its remote until `connect`. One that was
//! disconnected automatically (a remote call timed out or failed with a network-class error)
//! tries the remote again on the next command that needs it, and switches back when it
//! answers. Every switch is recorded in the journal and emitted as an event.

use cachesync_objects::{keys, Batch};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SyncError};
use crate::events::{self, Event, EventKind};
use crate::journal::{self, OpRecord};
use crate::state_keys;
use crate::workspace::Workspace;

/// Whether the workspace may use its remote: stored and printed as `connected` or
/// `disconnected`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The remote is used.
    Connected,
    /// The remote is not used (by hand, or since it stopped answering).
    Disconnected,
}

impl Mode {
    /// The name used in records and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Connected => "connected",
            Mode::Disconnected => "disconnected",
        }
    }

    /// The event a switch to this mode emits.
    pub fn event(self) -> EventKind {
        match self {
            Mode::Connected => EventKind::Connected,
            Mode::Disconnected => EventKind::Disconnected,
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Connected or not, since when and why.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ModeState {
    /// Connected or disconnected.
    pub mode: Mode,
    /// Since when, ns since the epoch (0: since the clone).
    pub since_ns: i64,
    /// Why it is disconnected.
    #[serde(default)]
    pub reason: Option<String>,
    /// Disconnected by hand (only `connect` ends it).
    #[serde(default)]
    pub manual: bool,
}

impl ModeState {
    /// The state of a new workspace.
    pub fn connected() -> ModeState {
        ModeState {
            mode: Mode::Connected,
            since_ns: 0,
            reason: None,
            manual: false,
        }
    }

    /// True when disconnected.
    pub fn is_disconnected(&self) -> bool {
        self.mode == Mode::Disconnected
    }
}

impl Workspace {
    /// The current mode: connected since the clone when no switch was ever recorded.
    ///
    /// # Errors
    /// Store errors; [`SyncError::DamagedRecord`] when the record does not decode (it is
    /// never taken for "connected").
    pub fn mode(&self) -> Result<ModeState> {
        match self.store.table(keys::CF_STATE).get(state_keys::MODE)? {
            None => Ok(ModeState::connected()),
            Some(v) => serde_json::from_slice(&v)
                .map_err(|e| SyncError::damaged("the state record `mode`", e)),
        }
    }

    pub(crate) fn switch(&self, state: &ModeState, command: journal::OpKind) -> Result<()> {
        let mut batch = Batch::new();
        batch.put(
            keys::CF_STATE,
            state_keys::MODE,
            &serde_json::to_vec(state).expect("mode serializes"),
        );
        let op = OpRecord::instant(
            &self.store,
            command,
            match &state.reason {
                Some(r) => format!("{}: {r}", state.mode),
                None => state.mode.as_str().to_string(),
            },
        )?;
        let now = op.started_ns;
        journal::put(&mut batch, &op);
        self.store.commit(batch)?;
        events::emit(
            &self.meta_dir(),
            &events::Outlets::of(&self.config),
            &Event {
                time_ns: now,
                kind: state.mode.event(),
                workspace: self.root.display().to_string(),
                reason: state.reason.clone(),
                path: None,
                manual: Some(state.manual),
            },
        )
    }

    /// Switches to disconnected (if not already), recording why. Returns true if it switched.
    ///
    /// # Errors
    /// Store and event-log errors.
    pub fn set_disconnected(&self, reason: &str, manual: bool) -> Result<bool> {
        let current = self.mode()?;
        if current.is_disconnected() && (current.manual || !manual) {
            return Ok(false);
        }
        let state = ModeState {
            mode: Mode::Disconnected,
            since_ns: if current.is_disconnected() {
                current.since_ns
            } else {
                crate::now_ns()
            },
            reason: Some(reason.to_string()),
            manual,
        };
        self.switch(&state, journal::OpKind::Disconnect)?;
        Ok(true)
    }

    /// Switches to connected (if not already). Returns true if it switched.
    ///
    /// # Errors
    /// Store and event-log errors.
    pub fn set_connected(&self, reason: &str) -> Result<bool> {
        if !self.mode()?.is_disconnected() {
            return Ok(false);
        }
        let state = ModeState {
            mode: Mode::Connected,
            since_ns: crate::now_ns(),
            reason: Some(reason.to_string()),
            manual: false,
        };
        self.switch(&state, journal::OpKind::Connect)?;
        Ok(true)
    }

    /// Fails fast when the workspace was disconnected by hand: nothing that needs the remote
    /// may touch it until `connect`.
    ///
    /// # Errors
    /// [`SyncError::Disconnected`].
    pub fn require_remote(&self) -> Result<()> {
        let m = self.mode()?;
        if m.is_disconnected() && m.manual {
            return Err(SyncError::Offline);
        }
        Ok(())
    }

    /// Records the outcome of a command that used the remote: a disconnection switches the
    /// workspace to disconnected (with the reason); success after an automatic disconnection
    /// switches it back. Returns `result` unchanged.
    ///
    /// # Errors
    /// `result`'s error, or a store error while recording.
    pub fn track<T>(&self, result: Result<T>) -> Result<T> {
        match &result {
            Err(SyncError::Disconnected { reason }) => {
                if !self.mode()?.manual {
                    self.set_disconnected(reason, false)?;
                }
            }
            Err(SyncError::RemoteIdentity { reason }) => {
                self.set_disconnected(reason, false)?;
            }
            Ok(_) => {
                let m = self.mode()?;
                if m.is_disconnected() && !m.manual {
                    self.set_connected("the remote answered again")?;
                }
            }
            Err(_) => {}
        }
        result
    }
}

impl Workspace {
    /// The server named by the remote's mount source (`user@host:/dir` → `host`), if any.
    pub fn server(&self) -> Option<String> {
        self.identity.mount.as_ref().and_then(|m| m.server())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> (tempfile::TempDir, Workspace) {
        let tmp = tempfile::tempdir().expect("temp dir");
        let remote = tmp.path().join("remote");
        std::fs::create_dir_all(&remote).expect("mkdir");
        let ws = Workspace::init(&remote, &tmp.path().join("ws"), |_| {}).expect("init");
        (tmp, ws)
    }

    #[test]
    fn modes_keep_their_names() {
        let state = ModeState {
            mode: Mode::Disconnected,
            since_ns: 7,
            reason: Some("disconnected by hand".into()),
            manual: true,
        };
        let json = serde_json::to_string(&state).expect("serializes");
        assert_eq!(
            json,
            r#"{"mode":"disconnected","since_ns":7,"reason":"disconnected by hand","manual":true}"#
        );
        assert_eq!(
            serde_json::from_str::<ModeState>(&json).expect("parses"),
            state
        );
        assert_eq!(format!("{:<13}|", Mode::Connected), "connected    |");
    }

    #[test]
    fn a_switch_is_read_back() {
        let (_tmp, ws) = workspace();
        assert_eq!(ws.mode().expect("mode"), ModeState::connected());
        assert!(ws.set_disconnected("by hand", true).expect("switch"));
        let m = ws.mode().expect("mode");
        assert_eq!(m.mode, Mode::Disconnected);
        assert!(m.manual);
    }

    #[test]
    fn a_damaged_mode_record_is_an_error_not_connected() {
        let (_tmp, ws) = workspace();
        ws.store
            .table(keys::CF_STATE)
            .put(state_keys::MODE, b"{\"mode\":\"sideways\"")
            .expect("put");
        match ws.mode() {
            Err(e @ SyncError::DamagedRecord { .. }) => {
                assert!(e.to_string().contains("`mode`"), "{e}");
            }
            other => panic!("expected a damaged record, got {other:?}"),
        }
        assert!(ws.require_remote().is_err());
    }
}

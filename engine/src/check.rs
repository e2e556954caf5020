//! `check`: for scripts and CI, every problem that keeps a workspace from being clean
//! (synced, reachable, conflict-free), and the exit-code class that goes with them.

use serde::Serialize;

use crate::error::{ErrorCode, Result};
use crate::progress::Progress;
use crate::workspace::Workspace;

/// What `check` found.
#[derive(Debug)]
pub struct Outcome {
    /// Every problem, one per path (or one for the workspace).
    pub problems: Vec<Problem>,
    /// The exit-code class (`None`: clean).
    pub code: Option<ErrorCode>,
}

/// Runs a refreshed status (scanning both sides, changing neither) and lists its problems.
///
/// # Errors
/// As [`crate::status::run`].
pub fn run(ws: &Workspace, progress: &dyn Progress) -> Result<Outcome> {
    // A script asks whether everything is clean now: the share is looked at.
    let opts = crate::status::Options {
        refresh: true,
        ..crate::status::Options::default()
    };
    let status = crate::status::run(ws, &opts, progress)?;
    let (problems, code) = problems(&status);
    Ok(Outcome { problems, code })
}

/// What kind of problem (named in `--json` and in the text output as below).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// An open conflict (`conflict`).
    Conflict,
    /// A version with nowhere to go, kept in lost+found (`lost-found`).
    LostFound,
    /// The remote cannot be reached (`disconnected`).
    Disconnected,
    /// A local change not pushed (`local-change`).
    LocalChange,
    /// A remote change not pulled (`remote-change`).
    RemoteChange,
    /// An offline change the remote's permissions will refuse (`permission`).
    Permission,
    /// An entry neither side can read, left alone (`unreadable`).
    Unreadable,
}

impl ProblemKind {
    /// The name, as shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Conflict => "conflict",
            ProblemKind::LostFound => "lost-found",
            ProblemKind::Disconnected => "disconnected",
            ProblemKind::LocalChange => "local-change",
            ProblemKind::RemoteChange => "remote-change",
            ProblemKind::Permission => "permission",
            ProblemKind::Unreadable => "unreadable",
        }
    }
}

impl std::fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One problem `check` reports.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// What kind.
    pub kind: ProblemKind,
    /// The path, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The path's bytes in hex, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// One line for people.
    pub message: String,
}

/// The problems `check` reports in a status, and its exit-code class (`None` when clean).
pub fn problems(status: &crate::status::Outcome) -> (Vec<Problem>, Option<ErrorCode>) {
    let mut out = Vec::new();
    for c in &status.conflicts {
        if let Some(lf) = &c.lost_found {
            out.push(Problem {
                kind: ProblemKind::LostFound,
                path: Some(c.path.clone()),
                path_hex: std::str::from_utf8(&c.path_bytes())
                    .is_err()
                    .then(|| c.path_hex.clone()),
                message: format!(
                    "{}: your version had nowhere to go and is in {lf}; remove it from there when done",
                    c.path
                ),
            });
            continue;
        }
        out.push(Problem {
            kind: ProblemKind::Conflict,
            path: Some(c.path.clone()),
            path_hex: std::str::from_utf8(&c.path_bytes())
                .is_err()
                .then(|| c.path_hex.clone()),
            message: format!("{}: {} conflict (both versions kept)", c.path, c.kind),
        });
    }
    if let Some(e) = &status.remote_error {
        out.push(Problem {
            kind: ProblemKind::Disconnected,
            path: None,
            path_hex: None,
            message: e.clone(),
        });
    }
    // A conflicted path is reported once, as a conflict.
    let conflicted: std::collections::HashSet<&str> =
        status.conflicts.iter().map(|c| c.path.as_str()).collect();
    for c in status
        .local_changes
        .iter()
        .filter(|c| !conflicted.contains(c.path.as_str()))
    {
        out.push(Problem {
            kind: ProblemKind::LocalChange,
            path: Some(c.path.clone()),
            path_hex: c.path_hex.clone(),
            message: format!(
                "{}: {} locally, not pushed",
                c.path,
                crate::status::change_words(c)
            ),
        });
    }
    for c in status
        .remote_changes
        .iter()
        .filter(|c| !conflicted.contains(c.path.as_str()))
    {
        out.push(Problem {
            kind: ProblemKind::RemoteChange,
            path: Some(c.path.clone()),
            path_hex: c.path_hex.clone(),
            message: format!(
                "{}: {} on the remote, not pulled",
                c.path,
                crate::status::change_words(c)
            ),
        });
    }
    for w in &status.permission {
        out.push(Problem {
            kind: ProblemKind::Permission,
            path: Some(w.path.clone()),
            path_hex: w.path_hex.clone(),
            message: format!("{}: changed offline, but {}", w.path, w.reason),
        });
    }
    for u in &status.unreadable {
        out.push(Problem {
            kind: ProblemKind::Unreadable,
            path: Some(u.path.clone()),
            path_hex: u.path_hex.clone(),
            message: format!(
                "{}: {}, left as it is on both sides; {}",
                u.path, u.reason, u.remedy
            ),
        });
    }
    let code = if !status.conflicts.is_empty() {
        Some(ErrorCode::Conflicted)
    } else if !status.permission.is_empty() {
        Some(ErrorCode::DisconPerm)
    } else if status.remote_error.is_some() {
        Some(ErrorCode::Disconnected)
    } else if out.is_empty() {
        None
    } else {
        Some(ErrorCode::Other)
    };
    (out, code)
}

#[cfg(test)]
mod tests {
    use super::ProblemKind;

    #[test]
    fn kinds_keep_their_names_in_json_and_text() {
        for kind in [
            ProblemKind::Conflict,
            ProblemKind::LostFound,
            ProblemKind::Disconnected,
            ProblemKind::LocalChange,
            ProblemKind::RemoteChange,
            ProblemKind::Permission,
            ProblemKind::Unreadable,
        ] {
            let json = serde_json::to_string(&kind).expect("serializes");
            assert_eq!(json, format!("\"{kind}\""));
        }
    }
}

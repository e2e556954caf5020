//! Output: stdout for data, stderr for progress and diagnostics, errors with exit codes.

use std::io::{IsTerminal, Write};

use cachesync_engine::{ErrorCode, SyncError};
use indicatif::{ProgressBar, ProgressStyle};

/// A failed command: the engine's error, and whether to print it as JSON.
pub struct Failure {
    pub error: SyncError,
    pub json: bool,
}

impl Failure {
    /// Prints the error (to stderr, or as JSON to stdout) and returns the exit code.
    pub fn report(self) -> i32 {
        let error = self.error.classified();
        let code = error.code();
        if self.json {
            let v = serde_json::json!({
                "error": error.to_string(),
                "code": code.name(),
                "exit": code.exit_code(),
                "hint": error.hint(),
            });
            print_out(&format!("{v}\n"));
        } else {
            let mut msg = format!("cachesync: error: {error}\n");
            if let Some(h) = error.hint() {
                msg.push_str(&format!("hint: {h}\n"));
            }
            let _ = std::io::stderr().write_all(msg.as_bytes());
        }
        code.exit_code()
    }
}

/// Wraps engine errors for `?` in commands.
pub trait OrFail<T> {
    /// Attaches the output format.
    fn or_fail(self, json: bool) -> Result<T, Failure>;
}

impl<T> OrFail<T> for Result<T, SyncError> {
    fn or_fail(self, json: bool) -> Result<T, Failure> {
        self.map_err(|error| Failure { error, json })
    }
}

/// Writes to stdout; a closed pipe (`cachesync log | head`) ends the process quietly.
pub fn print_out(text: &str) {
    write_out(text.as_bytes());
}

/// Writes bytes to stdout, exiting quietly on a broken pipe.
pub fn write_out(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        let _ = writeln!(std::io::stderr(), "cachesync: cannot write output: {e}");
        std::process::exit(1);
    }
}

/// Prints a value as pretty JSON plus a newline.
pub fn print_json(v: &impl serde::Serialize) {
    print_out(&(serde_json::to_string_pretty(v).expect("reports serialize") + "\n"));
}

/// A diagnostic line on stderr.
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// The exit code of an error class.
pub fn exit(code: ErrorCode) -> i32 {
    code.exit_code()
}

/// Progress bars on a terminal; nothing otherwise (cron, CI, pipes).
pub struct Bars {
    bar: std::sync::Mutex<Option<ProgressBar>>,
    enabled: bool,
}

impl Bars {
    pub fn new(quiet: bool) -> Bars {
        Bars {
            bar: std::sync::Mutex::new(None),
            enabled: !quiet && std::io::stderr().is_terminal(),
        }
    }
}

impl cachesync_engine::Progress for Bars {
    fn start(&self, what: &str, total: u64) {
        if !self.enabled {
            return;
        }
        let bar = if total > 0 {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template("{msg:30} [{bar:30}] {pos}/{len} {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            b
        } else {
            ProgressBar::new_spinner()
        };
        bar.set_message(what.to_string());
        *self.bar.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar);
    }

    fn set(&self, done: u64) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            b.set_position(done);
        }
    }

    fn finish(&self) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            b.finish_and_clear();
        }
    }
}

/// Opens the workspace around the current directory. When a `cachesync mount` of it runs,
/// it is asked first, whether it holds the workspace now or not: it lets go of it for as
/// long as this process runs and hands over what changed in the workspace since the last
/// command (see `cachesync_view::control` and `cachesync_engine::fsmonitor`).
pub fn open_workspace(json: bool) -> Result<cachesync_engine::Workspace, Failure> {
    open_workspace_as(json, cachesync_engine::Workspace::open)
}

/// The command line's paths as paths of the workspace (relative to the current directory,
/// as the user typed them).
pub fn rel_paths(
    ws: &cachesync_engine::Workspace,
    paths: &[std::path::PathBuf],
    json: bool,
) -> Result<Vec<Vec<u8>>, Failure> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| ws.root.clone());
    paths
        .iter()
        .map(|p| ws.rel_path(&cwd, p))
        .collect::<Result<Vec<_>, _>>()
        .or_fail(json)
}

/// As [`open_workspace`], but with the store open to read only when no view runs (see
/// `Workspace::open_to_look`): for a command that may answer without writing.
pub fn open_workspace_to_look(json: bool) -> Result<cachesync_engine::Workspace, Failure> {
    open_workspace_as(json, cachesync_engine::Workspace::open_to_look)
}

fn open_workspace_as(
    json: bool,
    open: fn(&std::path::Path) -> cachesync_engine::Result<cachesync_engine::Workspace>,
) -> Result<cachesync_engine::Workspace, Failure> {
    let cwd = std::env::current_dir()
        .map_err(|e| SyncError::Usage(format!("cannot read the current directory: {e}")))
        .or_fail(json)?;
    let root = cachesync_engine::Workspace::find(&cwd).or_fail(json)?;
    let meta = root.join(cachesync_engine::ignore_rules::META_DIR);
    let Some(released) = cachesync_view::control::ask_release(&meta) else {
        return open(&root).or_fail(json);
    };
    // Held until the process ends (see `give_back_view`).
    let handoff = released.handoff;
    let _ = VIEW_RELEASE.set(released);
    let start = std::time::Instant::now();
    loop {
        match cachesync_engine::Workspace::open(&root) {
            Err(SyncError::Locked { .. }) if start.elapsed() < VIEW_WAIT => {
                std::thread::park_timeout(std::time::Duration::from_millis(20));
            }
            Ok(mut ws) => {
                ws.handoff = handoff;
                return Ok(ws);
            }
            other => return other.or_fail(json),
        }
    }
}

/// The connection that keeps a running view from taking the workspace back.
static VIEW_RELEASE: std::sync::OnceLock<cachesync_view::control::Released> =
    std::sync::OnceLock::new();

/// Tells a view that let go of the workspace for this command that the command is done
/// (call once the workspace is closed), and waits until it knows: what the view shows
/// after this command returns follows what it did.
pub fn give_back_view() {
    if let Some(released) = VIEW_RELEASE.get() {
        released.done();
    }
}

/// How long a command waits for the workspace once a view let go of it (another command may
/// hold it meanwhile).
const VIEW_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens the workspace around the current directory to read it, beside a running command
/// if need be (see `Workspace::open_for_reading`).
pub fn open_workspace_for_reading(json: bool) -> Result<cachesync_engine::Workspace, Failure> {
    let cwd = std::env::current_dir()
        .map_err(|e| SyncError::Usage(format!("cannot read the current directory: {e}")))
        .or_fail(json)?;
    let root = cachesync_engine::Workspace::find(&cwd).or_fail(json)?;
    cachesync_engine::Workspace::open_for_reading(&root).or_fail(json)
}

/// Human-readable size.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A UTC timestamp, `YYYY-MM-DD HH:MM:SS`, from ns since the epoch.
pub fn time(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Progress that draws nothing.
pub use cachesync_engine::NoProgress as NoBars;

//! `cachesync ui`: a page on 127.0.0.1 showing every workspace of the registry at a glance,
//! with the switches to go offline and reconnect, "sync now", the conflicts side by side with
//! their differences marked and the buttons to settle them, the working set, and the events
//! as they come.
//!
//! The page is plain HTML, CSS and a little JavaScript, held in the binary ([`assets`]). Its
//! API ([`api`]) reads and acts by running the same `cachesync` binary with `--json`
//! ([`run`]), so it follows the command line's contract exactly. Every request is checked
//! first ([`guard`]): its Host, the Origin of anything that changes state, and the token.

pub mod api;
pub mod compare;
pub mod guard;
pub mod live;
pub mod opener;
pub mod run;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

use guard::Guard;
use run::Cachesync;

/// How to serve the page.
pub struct Options {
    /// The address to listen on (127.0.0.1 unless the person asked otherwise).
    pub listen: SocketAddr,
    /// The `cachesync` binary each action runs.
    pub exe: PathBuf,
}

/// The page, once it listens.
pub struct Started {
    /// The address with the token, to open in a browser.
    pub url: String,
    /// Where it listens (the port chosen when 0 was asked for).
    pub addr: SocketAddr,
}

/// What every request's handler shares.
pub struct App {
    guard: Guard,
    cachesync: Cachesync,
}

/// The page's files, held in the binary.
pub mod assets {
    /// The page.
    pub const INDEX: &str = include_str!("../assets/index.html");
    /// Its script.
    pub const SCRIPT: &str = include_str!("../assets/app.js");
    /// Its style.
    pub const STYLE: &str = include_str!("../assets/style.css");
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    assets::INDEX,
                )
            }),
        )
        .route(
            "/app.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    assets::SCRIPT,
                )
                    .into_response()
            }),
        )
        .route(
            "/style.css",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
                    assets::STYLE,
                )
            }),
        )
        .route("/api/workspaces", get(api::workspaces))
        .route("/api/conflict", get(api::conflict))
        // A merge holds both sides and markers, and JSON escapes it: room for all of that.
        .route(
            "/api/resolve",
            post(api::resolve).layer(axum::extract::DefaultBodyLimit::max(
                8 * compare::TEXT_LIMIT,
            )),
        )
        .route("/api/mode", post(api::mode))
        .route("/api/sync", post(api::sync))
        .route("/api/files", get(api::files))
        .route("/api/presence", post(api::presence))
        .route("/api/log", get(api::log))
        .route("/api/undo", post(api::undo))
        .route("/api/events", get(live::events))
        // On every route and on the 404 of unknown ones: nothing answers without the checks.
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            guard::check,
        ))
        .with_state(app)
}

/// Writes `text` to `file`, readable by this user only, whole or not at all.
fn write_private(file: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = file.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    std::io::Write::write_all(&mut f, text.as_bytes())?;
    std::fs::rename(&tmp, file)
}

fn leave_url(url: &str) -> std::io::Result<()> {
    match cachesync_engine::registry::page_url_file() {
        Some(file) => write_private(&file, &format!("{url}\n")),
        None => Ok(()),
    }
}

/// Opens `url` (the page's address, token included) in the desktop's browser. The address is
/// not given to `xdg-open` on its command line, which every user of the machine can read
/// (`/proc/PID/cmdline`): `xdg-open` gets a page of this user's only (mode 0600, beside the
/// address file) that sends the browser on.
///
/// # Errors
/// The page cannot be written, or `xdg-open` cannot be started.
pub fn open_in_browser(url: &str) -> std::io::Result<()> {
    let file = cachesync_engine::registry::page_url_file()
        .map(|f| f.with_file_name("ui-open.html"))
        .ok_or_else(|| std::io::Error::other("no directory for the page to open (no HOME)"))?;
    let href: String = url
        .chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '"' => "&quot;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            c => c.to_string(),
        })
        .collect();
    write_private(
        &file,
        &format!(
            "<!doctype html>\n<meta charset=\"utf-8\">\n\
             <meta http-equiv=\"refresh\" content=\"0;url={href}\">\n\
             <title>cachesync</title>\n<p><a href=\"{href}\">Open cachesync</a></p>\n"
        ),
    )?;
    let mut child = std::process::Command::new("xdg-open")
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Reaped when it ends, so that a page left running keeps no zombie.
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn stopped() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

/// Binds `opts.listen`, calls `ready` with the address to open, then serves until SIGINT or
/// SIGTERM. While it serves, its address is in
/// [`cachesync_engine::registry::page_url_file`], and a desktop notification's "open" action
/// opens the page on its conflict ([`opener`]).
///
/// # Errors
/// The address cannot be bound (in use, not this machine's), or the runtime cannot start.
pub fn serve(opts: Options, ready: impl FnOnce(&Started)) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(opts.listen).await?;
        let addr = listener.local_addr()?;
        let token = Guard::random_token();
        let started = Started {
            url: format!("http://{addr}/?token={token}"),
            addr,
        };
        let app = Arc::new(App {
            guard: Guard::new(token, addr),
            cachesync: Cachesync::new(opts.exe),
        });
        // Without the file, the page still works; only `ui --open` and the notification's
        // action cannot find it.
        let left = leave_url(&started.url).is_ok();
        opener::start(started.url.clone());
        ready(&started);
        let served = tokio::select! {
            r = axum::serve(listener, router(app)) => r,
            () = stopped() => Ok(()),
        };
        if left && cachesync_engine::registry::page_url().as_deref() == Some(started.url.as_str()) {
            if let Some(file) = cachesync_engine::registry::page_url_file() {
                let _ = std::fs::remove_file(file);
            }
        }
        served
    })
}

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::app::CmdResult;
use crate::output::note;

/// The port the page listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 8386;

/// Serve the local web page: workspaces, switches and conflicts.
///
/// It prints an address holding a random token: open it in a browser on this machine (or
/// give `--open`). The page lists every workspace of the registry with its mode, pending
/// changes, conflicts and cache; switches each (or each server's, or all) offline and back;
/// syncs; shows each conflict's versions side by side with the differences marked, to keep
/// yours, take the server's or save a merged text; and pins, unpins, gets and drops files.
/// It listens on 127.0.0.1 only unless `--listen` says otherwise; every request needs the
/// token (then a cookie), the page's own Host, and for changes the page's own Origin.
#[derive(clap::Args)]
pub struct UiArgs {
    /// The port (0: any free one).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Listen on this address instead of 127.0.0.1. Other machines can then reach the page
    /// over plain HTTP, guarded by the token alone.
    #[arg(long, value_name = "ADDR")]
    listen: Option<IpAddr>,
    /// Open the page in the desktop's browser (`xdg-open`); when a page already runs, open
    /// that one and exit.
    #[arg(long)]
    open: bool,
}

fn xdg_open(url: &str) {
    if let Err(e) = cachesync_ui::open_in_browser(url) {
        note(&format!("cachesync ui: cannot open the browser: {e}"));
    }
}

/// The address of a page that runs and answers, if one does.
fn answering() -> Option<String> {
    let url = cachesync_engine::registry::page_url()?;
    let host = url.strip_prefix("http://")?.split('/').next()?;
    let addr: SocketAddr = host.parse().ok()?;
    std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).ok()?;
    Some(url)
}

pub fn cmd_ui(args: UiArgs) -> CmdResult {
    if args.open {
        if let Some(url) = answering() {
            note("cachesync ui: the page already runs; opening it");
            xdg_open(&url);
            return Ok(0);
        }
    }
    let ip = args.listen.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    if ip.is_unspecified() {
        // The page answers only to the address it listens on (the Host check): every
        // address at once has no name to answer to.
        note(&format!(
            "cachesync: error: --listen {ip}: give the address of one interface (the page \
             answers only to requests naming it)"
        ));
        return Ok(2);
    }
    if !ip.is_loopback() {
        note(&format!(
            "cachesync ui: warning: listening on {ip}: other machines can reach the page, over \
             plain HTTP, guarded by the token alone"
        ));
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            note(&format!("cachesync: error: cannot find my own binary: {e}"));
            return Ok(1);
        }
    };
    let opts = cachesync_ui::Options {
        listen: SocketAddr::new(ip, args.port),
        exe,
    };
    let open = args.open;
    let served = cachesync_ui::serve(opts, |started| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", started.url);
        let _ = out.flush();
        note("cachesync ui: open the address above in a browser on this machine; Ctrl-C stops the page");
        if open {
            xdg_open(&started.url);
        }
    });
    match served {
        Ok(()) => Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            note(&format!(
                "cachesync: error: port {} is in use (is a page already running?)\nhint: --port 0 takes any free port",
                args.port
            ));
            Ok(1)
        }
        Err(e) => {
            note(&format!(
                "cachesync: error: cannot serve the page on {ip}: {e}"
            ));
            Ok(1)
        }
    }
}

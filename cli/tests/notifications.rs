//! Desktop notifications, end to end: a private session bus (`dbus-daemon`), a notification
//! server in this test that records each `Notify` it receives, and cachesync run with
//! `DBUS_SESSION_BUS_ADDRESS` pointing at that bus.

mod common;

use std::collections::HashMap;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Duration;

use common::Env;

/// What the server received: summary, body and actions (key, label, ...).
type Shown = (String, String, Vec<String>);

struct Recorder(Sender<Shown>);

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Recorder {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        _app_name: &str,
        _replaces_id: u32,
        _app_icon: &str,
        summary: &str,
        body: &str,
        actions: Vec<&str>,
        _hints: HashMap<&str, zbus::zvariant::Value<'_>>,
        _expire_timeout: i32,
    ) -> u32 {
        let actions = actions.into_iter().map(str::to_owned).collect();
        let _ = self.0.send((summary.to_owned(), body.to_owned(), actions));
        1
    }

    fn get_capabilities(&self) -> Vec<String> {
        vec!["body".to_owned()]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "recorder".to_owned(),
            "cachesync tests".to_owned(),
            "1".to_owned(),
            "1.2".to_owned(),
        )
    }

    fn close_notification(&self, _id: u32) {}
}

/// A session bus of the test's own, and the notification server on it.
struct Desktop {
    daemon: Child,
    address: String,
    shown: Receiver<Shown>,
    server: zbus::blocking::Connection,
}

impl Drop for Desktop {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

fn desktop(dir: &std::path::Path) -> Desktop {
    let mut daemon = Command::new("dbus-daemon")
        .arg("--session")
        .arg("--nofork")
        .arg("--print-address")
        .arg(format!("--address=unix:path={}", dir.join("bus").display()))
        .stdout(Stdio::piped())
        .spawn()
        .expect("dbus-daemon runs (`make test` installs the dbus-daemon package)");
    // The daemon prints its address once it listens (or ends, failing: an empty line).
    let mut address = String::new();
    std::io::BufReader::new(daemon.stdout.take().expect("piped"))
        .read_line(&mut address)
        .expect("read the bus address");
    let address = address.trim().to_owned();
    assert!(!address.is_empty(), "dbus-daemon did not start");
    let (tx, shown) = channel();
    let server = zbus::blocking::connection::Builder::address(address.as_str())
        .expect("an address")
        .name("org.freedesktop.Notifications")
        .expect("a name")
        .serve_at("/org/freedesktop/Notifications", Recorder(tx))
        .expect("served")
        .build()
        .expect("the notification server is on the bus");
    Desktop {
        daemon,
        address,
        shown,
        server,
    }
}

fn set_notifications(env: &Env, on: bool) {
    let path = env.w(".cachesync/config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("config")).expect("JSON");
    config["notifications"] = serde_json::Value::Bool(on);
    std::fs::write(&path, config.to_string()).expect("write the config");
}

#[test]
fn offline_back_online_and_a_conflict_are_shown_on_the_desktop_when_asked() {
    let env = Env::with_remote(&[("a.txt", "alpha\n")]);
    env.clone_ws();
    let desk = desktop(env.root());
    let bus = std::ffi::OsString::from(&desk.address);
    let run = |args: &[&str]| {
        env.run_with(
            &env.w(""),
            args,
            &[("DBUS_SESSION_BUS_ADDRESS", bus.as_os_str())],
        )
    };

    // Off by default: the events are logged, nothing is shown.
    assert_eq!(run(&["disconnect"]).code, 0);
    assert_eq!(run(&["connect", "--no-sync"]).code, 0);
    assert!(desk.shown.try_recv().is_err(), "shown while off");

    set_notifications(&env, true);
    let next = || {
        desk.shown
            .recv_timeout(Duration::from_secs(20))
            .expect("a notification within 20 s")
    };
    assert_eq!(run(&["disconnect"]).code, 0);
    let (summary, body, actions) = next();
    assert_eq!(summary, "ws is offline", "{body}");
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(run(&["connect", "--no-sync"]).code, 0);
    assert_eq!(next().0, "ws is back online");

    env.put_local("a.txt", "alpha here\n");
    env.put_remote("a.txt", "alpha there\n");
    let sync = run(&["sync"]);
    assert_eq!(sync.code, 7, "{sync}");
    let (summary, body, actions) = next();
    assert_eq!(summary, "Conflict in ws");
    assert!(body.contains("a.txt"), "{body}");
    // No page runs: nothing to open.
    assert!(actions.is_empty(), "{actions:?}");
    // Once per event.
    assert!(desk.shown.try_recv().is_err(), "shown twice");
}

#[test]
fn no_bus_at_all_costs_the_run_nothing() {
    let env = Env::with_remote(&[("a.txt", "alpha\n")]);
    env.clone_ws();
    set_notifications(&env, true);
    let nowhere = env.root().join("no-bus-here");
    let address = std::ffi::OsString::from(format!("unix:path={}", nowhere.display()));
    let started = std::time::Instant::now();
    let r = env.run_with(
        &env.w(""),
        ["disconnect"],
        &[("DBUS_SESSION_BUS_ADDRESS", address.as_os_str())],
    );
    assert_eq!(r.code, 0, "{r}");
    // The notification is lost, the event is not.
    let events = env.run(["events", "--json"]);
    assert!(events.out().contains("\"disconnected\""), "{events}");
    assert!(
        started.elapsed() < cachesync_engine::notify::NOTIFY_WAIT * 5,
        "the run waited on a bus that is not there"
    );
}

#[test]
fn the_notification_of_a_conflict_opens_the_page_on_it() {
    let env = Env::with_remote(&[("a.txt", "alpha\n")]);
    env.clone_ws();
    set_notifications(&env, true);
    let desk = desktop(env.root());
    // xdg-open, as the desktop has it: here it notes what it was asked to open.
    let bin = env.root().join("bin");
    std::fs::create_dir(&bin).expect("a bin directory");
    let opened = env.root().join("opened");
    let script = bin.join("xdg-open");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\n",
            opened.display()
        ),
    )
    .expect("write xdg-open");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod xdg-open");
    let runtime = env.root().join("run");
    std::fs::create_dir(&runtime).expect("XDG_RUNTIME_DIR");
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let vars = [
        ("DBUS_SESSION_BUS_ADDRESS", desk.address.as_str()),
        ("XDG_RUNTIME_DIR", runtime.to_str().expect("UTF-8")),
        ("PATH", path.as_str()),
    ];

    let mut page = Command::new(common::binary())
        .args(["ui", "--port", "0"])
        .env_clear()
        .env("HOME", &env.home)
        .envs(vars)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cachesync ui starts");
    let mut url = String::new();
    let stdout = page.stdout.take().expect("piped");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    url.push_str(
        rx.recv_timeout(Duration::from_secs(60))
            .expect("the page prints its address")
            .trim(),
    );
    let page = KillOnDrop(page);
    assert_eq!(
        std::fs::read_to_string(runtime.join("cachesync/ui.url")).expect("the page's address file"),
        format!("{url}\n")
    );

    env.put_local("a.txt", "alpha here\n");
    env.put_remote("a.txt", "alpha there\n");
    let extra: Vec<(&str, &std::ffi::OsStr)> = vars
        .iter()
        .map(|(k, v)| (*k, std::ffi::OsStr::new(*v)))
        .collect();
    let sync = env.run_with(&env.w(""), ["sync"], &extra);
    assert_eq!(sync.code, 7, "{sync}");
    let (summary, _, actions) = desk
        .shown
        .recv_timeout(Duration::from_secs(20))
        .expect("a notification within 20 s");
    assert_eq!(summary, "Conflict in ws");
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert_eq!(actions[1], "Open in cachesync");

    // The person clicks it: the server says so to everyone on the bus.
    desk.server
        .emit_signal(
            None::<&str>,
            "/org/freedesktop/Notifications",
            "org.freedesktop.Notifications",
            "ActionInvoked",
            &(1u32, actions[0].as_str()),
        )
        .expect("emit ActionInvoked");
    // xdg-open is given a page of this user's that sends the browser on to the conflict:
    // the address, which holds the token, is on no command line.
    cachesync_testutils::wait_until("the page is opened", Duration::from_secs(20), || {
        opened.exists()
    });
    let given = std::fs::read_to_string(&opened).expect("what xdg-open was given");
    assert!(!given.contains("token"), "{given}");
    let redirect = std::path::Path::new(given.trim());
    assert_eq!(redirect, runtime.join("cachesync/ui-open.html"));
    let meta = std::fs::metadata(redirect).expect("the page to open");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    let ws = env.ws.display().to_string().replace('/', "%2F");
    let html = std::fs::read_to_string(redirect).expect("read the page to open");
    let to = format!("url={url}#/conflict?ws={ws}&amp;path=a.txt\"");
    assert!(html.contains(&to), "{html}\nlacks {to}");
    drop(page);
}

/// Kills the page when the test ends, passed or not.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

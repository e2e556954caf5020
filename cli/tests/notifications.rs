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

/// What the server received: summary and body.
type Shown = (String, String);

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
        _actions: Vec<&str>,
        _hints: HashMap<&str, zbus::zvariant::Value<'_>>,
        _expire_timeout: i32,
    ) -> u32 {
        let _ = self.0.send((summary.to_owned(), body.to_owned()));
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
    _server: zbus::blocking::Connection,
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
        _server: server,
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
    let (summary, body) = next();
    assert_eq!(summary, "ws is offline", "{body}");
    assert_eq!(run(&["connect", "--no-sync"]).code, 0);
    assert_eq!(next().0, "ws is back online");

    env.put_local("a.txt", "alpha here\n");
    env.put_remote("a.txt", "alpha there\n");
    let sync = run(&["sync"]);
    assert_eq!(sync.code, 7, "{sync}");
    let (summary, body) = next();
    assert_eq!(summary, "Conflict in ws");
    assert!(body.contains("a.txt"), "{body}");
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

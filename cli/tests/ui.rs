//! `cachesync ui`, as a person uses it: the page in a real browser (Debian's chromium, driven
//! headless over WebDriver by chromedriver), and its refusals seen with plain HTTP requests.
//!
//! Set `CACHESYNC_SCREENSHOTS=DIR` to keep the browser's screenshots of the overview and of a
//! conflict (the guide's images come from there).

mod common;

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cachesync_testutils::wait_until;
use common::{binary, read, Env};
use fantoccini::{Client, ClientBuilder, Locator};

/// A running `cachesync ui`.
struct Page {
    child: Child,
    /// The address it printed, with the token.
    url: String,
    addr: SocketAddr,
    token: String,
}

impl Drop for Page {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the page for `env`'s HOME (whose registry holds the workspace) on a free port, and
/// waits for the address it prints.
fn start_page(env: &Env) -> Page {
    let mut child = Command::new(binary())
        .args(["ui", "--port", "0"])
        .current_dir(env.root())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &env.home)
        // Not the session bus of whoever runs the tests.
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cachesync ui starts");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the page prints its address within 60 s")
        .trim()
        .to_string();
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http address: {url:?}"));
    let (host, token) = rest
        .split_once("/?token=")
        .expect("the address holds the token");
    assert!(host.starts_with("127.0.0.1:"), "listens on loopback: {url}");
    assert_eq!(token.len(), 64, "{url}");
    Page {
        addr: host.parse().expect("host:port"),
        token: token.to_string(),
        url,
        child,
    }
}

/// What a script sends the page: its Host, the token as a bearer, its own Origin.
struct Api {
    host: String,
    origin: String,
    bearer: String,
}

impl Api {
    fn of(page: &Page) -> Api {
        let host = page.addr.to_string();
        Api {
            origin: format!("http://{host}"),
            bearer: format!("Bearer {}", page.token),
            host,
        }
    }

    fn headers(&self) -> [(&str, &str); 3] {
        [
            ("Host", self.host.as_str()),
            ("Authorization", self.bearer.as_str()),
            ("Origin", self.origin.as_str()),
        ]
    }
}

/// One HTTP/1.1 request; the status, the headers and the body of the answer.
fn http(
    addr: SocketAddr,
    request_line: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the page");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("a read timeout");
    let mut req = format!("{request_line} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send the request");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read the answer");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head.to_string(), body.to_string())
}

/// A workspace whose `a.txt` and `c.txt` are in conflict: edited here and on the remote.
fn env_with_a_conflict() -> Env {
    let env = Env::with_remote(&[
        ("a.txt", "one\ntwo\nthree\n"),
        ("b.txt", "bee\n"),
        ("c.txt", "sea\n"),
    ]);
    env.clone_ws();
    env.put_local("a.txt", "one\nTWO mine\nthree\n");
    env.put_remote("a.txt", "one\ntwo theirs\nthree\nfour\n");
    env.put_local("c.txt", "sea here\n");
    env.put_remote("c.txt", "sea there\n");
    let sync = env.run(["sync"]);
    assert_eq!(sync.code, 7, "{sync}");
    env
}

fn mode(env: &Env) -> String {
    env.json(0, &["status", "--json"])["mode"]
        .as_str()
        .expect("mode")
        .to_string()
}

#[test]
fn each_refusal_the_page_owes_its_user() {
    let env = env_with_a_conflict();
    let page = start_page(&env);
    let host = page.addr.to_string();
    let own_origin = format!("http://{host}");
    let cookie = format!("cachesync-ui-{}={}", page.addr.port(), page.token);
    let ws = env.ws.display().to_string();
    let switch_off = format!(r#"{{"ws": {ws:?}, "online": false}}"#);

    // No token, a wrong one, an unknown route: 401, nothing said about the workspaces.
    for target in ["/", "/api/workspaces", "/no/such/page", "/?token=0123"] {
        let (status, _, body) = http(page.addr, &format!("GET {target}"), &[("Host", &host)], "");
        assert_eq!(status, 401, "GET {target}: {body}");
        assert!(!body.contains(&ws), "{body}");
    }
    // The token in the address is traded for a cookie and leaves the address.
    let (status, head, _) = http(
        page.addr,
        &format!("GET /?token={}", page.token),
        &[("Host", &host)],
        "",
    );
    assert_eq!(status, 303, "{head}");
    assert!(
        head.to_lowercase()
            .contains(&format!("set-cookie: {cookie}; ")),
        "{head}"
    );
    assert!(head.to_lowercase().contains("httponly") && head.contains("SameSite=Strict"));
    assert!(head.to_lowercase().contains("location: /\r\n"), "{head}");
    let (status, _, body) = http(
        page.addr,
        "GET /api/workspaces",
        &[("Host", &host), ("Cookie", &cookie)],
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&ws), "{body}");

    // DNS rebinding: a foreign name for this address, even with the cookie.
    let foreign_host = format!("attacker.example:{}", page.addr.port());
    let (status, _, body) = http(
        page.addr,
        "GET /api/workspaces",
        &[("Host", &foreign_host), ("Cookie", &cookie)],
        "",
    );
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains(&ws), "{body}");

    // A change from another page (or with no Origin at all) is refused, and changes nothing.
    for origin in [Some("http://attacker.example"), Some("null"), None] {
        let mut headers = vec![("Host", host.as_str()), ("Cookie", cookie.as_str())];
        headers.extend(origin.map(|o| ("Origin", o)));
        let (status, _, body) = http(page.addr, "POST /api/mode", &headers, &switch_off);
        assert_eq!(status, 403, "Origin {origin:?}: {body}");
    }
    assert_eq!(mode(&env), "connected");
    // Whatever the method: only GET and HEAD go without the page's Origin.
    for method in ["PUT", "DELETE", "PATCH", "OPTIONS"] {
        let (status, _, body) = http(
            page.addr,
            &format!("{method} /api/mode"),
            &[("Host", &host), ("Cookie", &cookie)],
            &switch_off,
        );
        assert_eq!(status, 403, "{method}: {body}");
    }

    // Nothing outside the registry's workspaces, nothing outside a workspace.
    let look = |target: &str| {
        http(
            page.addr,
            &format!("GET {target}"),
            &[("Host", &host), ("Cookie", &cookie)],
            "",
        )
    };
    let (status, _, body) = look("/api/files?ws=/etc&path=");
    assert_eq!(status, 404, "{body}");
    let other = env.root().join("remote").display().to_string();
    let (status, _, body) = look(&format!("/api/conflict?ws={other}&path=a.txt"));
    assert_eq!(status, 404, "{body}");
    for path in ["..", "../remote", "/etc", ".cachesync", "a/../../x"] {
        let (status, _, body) = look(&format!("/api/files?ws={ws}&path={path}"));
        assert_eq!(status, 400, "{path}: {body}");
    }
    let (status, _, body) = http(
        page.addr,
        "POST /api/presence",
        &[
            ("Host", &host),
            ("Cookie", &cookie),
            ("Origin", &own_origin),
        ],
        &format!(r#"{{"ws": {ws:?}, "path": "../remote/a.txt", "verb": "drop"}}"#),
    );
    assert_eq!(status, 400, "{body}");

    // And the same request from the page itself is done: the refusals above were the
    // checks, not a broken switch.
    let (status, _, body) = http(
        page.addr,
        "POST /api/mode",
        &[
            ("Host", &host),
            ("Cookie", &cookie),
            ("Origin", &own_origin),
        ],
        &switch_off,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(mode(&env), "disconnected");
}

#[test]
fn switches_for_all_and_for_a_server_and_a_binary_conflict_shown_by_its_facts() {
    let env = Env::with_remote(&[("bin.dat", "\u{0}one")]);
    env.clone_ws();
    env.put_local("bin.dat", "\u{0}mine");
    env.put_remote("bin.dat", "\u{0}theirs, longer");
    assert_eq!(env.run(["sync"]).code, 7);
    let page = start_page(&env);
    let api = Api::of(&page);
    let headers = api.headers();
    let ws = env.ws.display().to_string();

    let (status, _, body) = http(
        page.addr,
        &format!("GET /api/conflict?ws={ws}&path=bin.dat"),
        &headers,
        "",
    );
    assert_eq!(status, 200, "{body}");
    let c: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(c["server"]["binary"], true, "{c}");
    assert_eq!(c["server"]["size"], 15, "{c}");
    assert_eq!(c["client"]["size"], 5, "{c}");
    assert!(c["server"]["text"].is_null() && c["merge"].is_null(), "{c}");
    assert_eq!(c["record"]["kind"], "content", "{c}");
    let (status, _, body) = http(
        page.addr,
        &format!("GET /api/conflict?ws={ws}&path=no-such.txt"),
        &headers,
        "",
    );
    assert_eq!(status, 404, "{body}");

    let set_mode = |json: &str| http(page.addr, "POST /api/mode", &headers, json);
    // Another server's switch leaves this workspace alone; the switch for all does not.
    let (status, _, body) = set_mode(r#"{"server": "elsewhere.example", "online": false}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(mode(&env), "connected");
    let (status, _, body) = set_mode(r#"{"all": true, "online": false}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(mode(&env), "disconnected");
    let (status, _, body) = set_mode(r#"{"all": true, "online": true}"#);
    // Back online, the sync that follows finds the conflict still open: exit 7, said.
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""code":7"#), "{body}");
    assert_eq!(mode(&env), "connected");
    // Undo is refused as on the command line, with the reason.
    let (status, _, body) = http(
        page.addr,
        "POST /api/undo",
        &headers,
        &format!(r#"{{"ws": {ws:?}, "op": 1}}"#),
    );
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("first copy"), "{body}");
    // A switch that names nothing, or two things, is refused.
    let (status, _, body) = set_mode(r#"{"online": false}"#);
    assert_eq!(status, 400, "{body}");
}

#[test]
fn names_that_are_not_plain_text_are_acted_on_as_the_commands_print_them() {
    let env = Env::with_remote(&[("back\\slash.txt", "b\n"), ("a & b?.txt", "ab\n")]);
    env.clone_ws();
    let page = start_page(&env);
    let api = Api::of(&page);
    let headers = api.headers();
    let ws = env.ws.display().to_string();
    let (status, _, body) = http(page.addr, &format!("GET /api/files?ws={ws}"), &headers, "");
    assert_eq!(status, 200, "{body}");
    let entries: Vec<serde_json::Value> = serde_json::from_str(&body).expect("JSON");
    let quoted = entries
        .iter()
        .find(|e| e["path"] == r#""back\\slash.txt""#)
        .unwrap_or_else(|| panic!("ls prints the name quoted: {body}"));
    // Dropped as the page would send it: the path as listed.
    let drop = serde_json::json!({ "ws": ws, "path": quoted["path"], "verb": "drop" });
    let (status, _, body) = http(page.addr, "POST /api/presence", &headers, &drop.to_string());
    assert_eq!(status, 200, "{body}");
    assert!(!env.w("back\\slash.txt").exists(), "not dropped: {body}");
    assert_eq!(read(env.r("back\\slash.txt")), "b\n");
    let get = serde_json::json!({ "ws": ws, "path": quoted["path"], "verb": "get" });
    let (status, _, body) = http(page.addr, "POST /api/presence", &headers, &get.to_string());
    assert_eq!(status, 200, "{body}");
    assert_eq!(read(env.w("back\\slash.txt")), "b\n");
    let plain = serde_json::json!({ "ws": ws, "path": "a & b?.txt", "verb": "drop" });
    let (status, _, body) = http(
        page.addr,
        "POST /api/presence",
        &headers,
        &plain.to_string(),
    );
    assert_eq!(status, 200, "{body}");
    assert!(!env.w("a & b?.txt").exists(), "not dropped: {body}");

    // Every address at once has no name for the Host check to answer to: refused.
    let r = env.run_in(env.root(), ["ui", "--listen", "0.0.0.0", "--port", "0"]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("one interface"), "{r}");
}

/// A free port of 127.0.0.1 (for chromedriver, which takes one on its command line).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// chromedriver, on a port of its own, stopped with the test, and the browser with it: the
/// driver leads a process group of its own, which the browser it starts joins, and the whole
/// group is killed (a test that fails leaves no chromium behind).
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(group) = i32::try_from(self.0.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.0.wait();
    }
}

fn start_driver(dir: &Path) -> Driver {
    let port = free_port();
    let child = Command::new("chromedriver")
        .process_group(0)
        .arg(format!("--port={port}"))
        .arg(format!(
            "--log-path={}",
            dir.join("chromedriver.log").display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver runs (`make test` installs the chromium-driver package)");
    let driver = Driver(child, port);
    wait_until("chromedriver listens", Duration::from_secs(60), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    driver
}

/// chromedriver, a runtime to drive it from, and a browser profile of the test's own.
fn browser_setup(env: &Env) -> (Driver, tokio::runtime::Runtime, std::path::PathBuf) {
    let driver = start_driver(env.root());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    (driver, rt, env.root().join("chromium-profile"))
}

async fn browser(driver: &Driver, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.1))
        .await
        .expect("a headless chromium session")
}

const WAIT: Duration = Duration::from_secs(60);

/// The text of the element `css` matches, once there is one. The page draws a view anew
/// (at each event too), so an element found may be replaced before it is read: then again.
async fn text_of(c: &Client, css: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        let found = c.wait().at_most(WAIT).for_element(Locator::Css(css)).await;
        match found {
            Ok(e) => match e.text().await {
                Ok(text) => return text,
                Err(err) => assert!(start.elapsed() < WAIT, "{css}: {err}"),
            },
            Err(err) => panic!("{css} is not shown: {err}"),
        }
    }
}

/// Waits until `css` matches nothing.
async fn gone(c: &Client, css: &str) {
    let start = std::time::Instant::now();
    while !c
        .find_all(Locator::Css(css))
        .await
        .expect("a query")
        .is_empty()
    {
        assert!(start.elapsed() < WAIT, "{css} still shown after {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clicks the element `css` matches, once there is one (again when it was replaced first).
async fn click(c: &Client, css: &str) {
    let start = std::time::Instant::now();
    loop {
        let found = c.wait().at_most(WAIT).for_element(Locator::Css(css)).await;
        match found {
            Ok(e) => match e.click().await {
                Ok(()) => return,
                Err(err) => assert!(start.elapsed() < WAIT, "click {css}: {err}"),
            },
            Err(err) => panic!("{css} is not shown: {err}"),
        }
    }
}

async fn keep_screenshot(c: &Client, name: &str) {
    let Some(dir) = std::env::var_os("CACHESYNC_SCREENSHOTS") else {
        return;
    };
    let png = c.screenshot().await.expect("a screenshot");
    std::fs::write(Path::new(&dir).join(name), png).expect("keep the screenshot");
}

async fn settle_and_switch(c: &Client, env: &Env, page: &Page) {
    let ws = env.ws.display().to_string();
    let card = format!(r#"section.ws[data-ws="{ws}"]"#);
    c.goto(&page.url).await.expect("open the page");
    // The token has left the address bar.
    let here = c.current_url().await.expect("the address");
    assert!(!here.as_str().contains("token"), "{here}");
    let link = text_of(c, &format!(r#"{card} a.conflict[data-path="a.txt"]"#)).await;
    assert_eq!(link, "a.txt");
    assert_eq!(text_of(c, &format!("{card} .mode")).await, "connected");
    keep_screenshot(c, "ui-overview.png").await;

    // While another command holds the workspace, the card says so and keeps the last state.
    // (The page's own status runs may hold it a moment.)
    let lock = env.w(".cachesync/lock");
    let start = std::time::Instant::now();
    let held = loop {
        match cachesync_engine::lock::WorkspaceLock::acquire(&lock) {
            Ok(held) => break held,
            Err(e) => assert!(start.elapsed() < WAIT, "the lock stays taken: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // (The page draws the overview again as it does at every event.)
    c.execute("route(); return null;", Vec::new())
        .await
        .expect("redraw the overview");
    text_of(c, &format!("{card} .badge.busy")).await;
    assert_eq!(text_of(c, &format!("{card} .mode")).await, "connected");
    drop(held);
    c.execute("route(); return null;", Vec::new())
        .await
        .expect("redraw the overview");
    text_of(c, &format!(r#"{card} a.conflict[data-path="a.txt"]"#)).await;
    gone(c, &format!("{card} .badge.busy")).await;

    click(c, &format!(r#"{card} a.conflict[data-path="a.txt"]"#)).await;
    let server = text_of(c, ".pane.server pre").await;
    let client = text_of(c, ".pane.client pre").await;
    assert!(
        server.contains("two theirs") && server.contains("four"),
        "{server}"
    );
    assert!(client.contains("TWO mine"), "{client}");
    let marked = text_of(c, ".pane.server pre .added").await;
    assert_eq!(marked, "two theirs", "the server's edit is marked");
    keep_screenshot(c, "ui-conflict.png").await;

    click(c, "#take-server").await;
    text_of(c, &card).await;
    gone(c, &format!(r#"{card} a.conflict[data-path="a.txt"]"#)).await;
    assert_eq!(read(env.w("a.txt")), read(env.r("a.txt")));

    // The other one is settled with a text written in the page.
    click(c, &format!(r#"{card} a.conflict[data-path="c.txt"]"#)).await;
    let merged = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#merged"))
        .await
        .expect("the merge to edit");
    merged.clear().await.expect("clear the merge");
    merged
        .send_keys("sea, settled by hand\n")
        .await
        .expect("type the merge");
    click(c, "#save-merged").await;
    text_of(c, &card).await;
    gone(c, &format!("{card} a.conflict")).await;
    assert_eq!(read(env.w("c.txt")), "sea, settled by hand\n");
    let open = env.json(0, &["conflicts", "--json"]);
    assert_eq!(open.as_array().map(Vec::len), Some(0), "{open}");

    click(c, &format!("{card} button.switch")).await;
    let start = std::time::Instant::now();
    while text_of(c, &format!("{card} .mode")).await != "disconnected" {
        assert!(start.elapsed() < WAIT, "the badge still says connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(mode(env), "disconnected");
    // The switch came back as an event, live.
    let event = text_of(c, "#events li.disconnected").await;
    assert!(event.contains("ws"), "{event}");
    working_set(c, env, &card).await;
}

/// The working set, from the file list: drop a file (offline, it stays listed, remote-only),
/// then pin it.
async fn working_set(c: &Client, env: &Env, card: &str) {
    click(c, &format!("{card} a.files")).await;
    let state = r#"tr[data-path="b.txt"] td.state"#;
    assert_eq!(text_of(c, state).await, "synced");
    click(c, r#"tr[data-path="b.txt"] button.drop"#).await;
    let start = std::time::Instant::now();
    while text_of(c, state).await != "remote-only" {
        assert!(start.elapsed() < WAIT, "b.txt was not dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !env.w("b.txt").exists(),
        "dropped, yet still in the workspace"
    );
    click(c, r#"tr[data-path="b.txt"] button.pin"#).await;
    let pins = || {
        let config: serde_json::Value =
            serde_json::from_str(&read(env.w(".cachesync/config.json"))).expect("the config");
        config["pins"].clone()
    };
    let start = std::time::Instant::now();
    while pins() != serde_json::json!(["b.txt"]) {
        assert!(start.elapsed() < WAIT, "b.txt was not pinned: {}", pins());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its content was in the cache: pinned, it is back, offline.
    let start = std::time::Instant::now();
    while text_of(c, state).await != "synced" {
        assert!(start.elapsed() < WAIT, "b.txt did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(read(env.w("b.txt")), "bee\n");
}

#[test]
fn in_a_browser_a_conflict_is_settled_and_the_workspace_switched_offline() {
    let env = env_with_a_conflict();
    let page = start_page(&env);
    let (driver, rt, profile) = browser_setup(&env);
    rt.block_on(async {
        let c = browser(&driver, &profile).await;
        settle_and_switch(&c, &env, &page).await;
        c.close().await.expect("close the browser");
    });
    // What the page settled, a sync carries through: both sides hold the server's version.
    env.ok(&["connect"]);
    env.assert_in_sync();
    assert_eq!(read(env.w("a.txt")), "one\ntwo theirs\nthree\nfour\n");
}

#[test]
fn in_a_browser_an_operation_is_undone_from_the_history() {
    let env = Env::with_remote(&[("x.txt", "x, agreed\n"), ("k1.txt", "k\n")]);
    env.clone_ws();
    common::write_changed(&env.r("x.txt"), b"x, overwritten there\n");
    let op = env.json(0, &["sync", "--json"])["op"].to_string();
    assert_eq!(read(env.w("x.txt")), "x, overwritten there\n");
    let page = start_page(&env);
    let (driver, rt, profile) = browser_setup(&env);
    rt.block_on(async {
        let c = browser(&driver, &profile).await;
        c.goto(&page.url).await.expect("open the page");
        let card = format!(r#"section.ws[data-ws="{}"]"#, env.ws.display());
        click(&c, &format!("{card} a.history")).await;
        let row = format!(r#"tr[data-op="{op}"]"#);
        assert_eq!(text_of(&c, &format!("{row} td:nth-child(3)")).await, "sync");
        click(&c, &format!("{row} button.undo")).await;
        c.accept_alert().await.expect("confirm the undo");
        let start = std::time::Instant::now();
        loop {
            let said = text_of(&c, "#message").await;
            if said.contains("undone") {
                assert!(said.contains("1 path(s) put back"), "{said}");
                break;
            }
            assert!(start.elapsed() < WAIT, "no word of the undo: {said}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The undo is in the history now, itself undoable.
        text_of(&c, r#"tbody tr:first-child button.undo"#).await;
        assert_eq!(
            text_of(&c, "tbody tr:first-child td:nth-child(3)").await,
            "undo"
        );
        c.close().await.expect("close the browser");
    });
    assert_eq!(read(env.w("x.txt")), "x, agreed\n");
    assert_eq!(read(env.r("x.txt")), "x, agreed\n");
    env.assert_noop_sync();
}

//! The page's JSON API. Reads and actions alike name a workspace by its path, which must be
//! one of the registry's (`clone` keeps it), and a path inside it, which must be relative and
//! stay inside (no `..`, no `.cachesync`). Everything else is refused before anything runs.
//!
//! A path comes as the commands print it in JSON: `path`, C-quoted when it is not plain text,
//! and `path_hex` beside it when it is not UTF-8 (`cachesync_engine::paths::path_bytes` reads
//! them back into the name's bytes).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cachesync_engine::merge::{merge3, Merged};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::compare::{against, Version, TEXT_LIMIT};
use crate::App;

/// A refusal or a failure, sent as `{"error": "..."}` with its status.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

fn failed(e: String) -> ApiError {
    ApiError(StatusCode::BAD_GATEWAY, e)
}

/// `given` when it is a workspace of the registry.
fn workspace(given: &str) -> Result<PathBuf, ApiError> {
    cachesync_engine::registry::present_now()
        .into_iter()
        .find(|p| p.as_os_str() == given)
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("{given} is not a workspace of this user (see the registry)"),
            )
        })
}

/// The path `shown` (and `hex`) names, as a path inside a workspace: relative, every
/// component a plain name, the top one not `.cachesync`.
fn inside(shown: &str, hex: Option<&str>) -> Result<OsString, ApiError> {
    let bad = |why: &str| ApiError(StatusCode::BAD_REQUEST, format!("path {shown:?}: {why}"));
    let bytes = cachesync_engine::paths::path_bytes(shown, hex)
        .ok_or_else(|| bad("not a path as cachesync prints one"))?;
    if bytes.is_empty() || bytes == b"." {
        return Ok(OsString::from("."));
    }
    if bytes.starts_with(b"/") || bytes.contains(&0) {
        return Err(bad("must be relative to the workspace"));
    }
    for (i, c) in bytes.split(|&b| b == b'/').enumerate() {
        if c.is_empty() || c == b"." || c == b".." {
            return Err(bad("must stay inside the workspace"));
        }
        if i == 0 && c == cachesync_engine::ignore_rules::META_DIR.as_bytes() {
            return Err(bad("the cache's own directory is not shown"));
        }
    }
    Ok(OsString::from_vec(bytes))
}

fn args(list: &[&str], path: Option<&OsString>) -> Vec<OsString> {
    let mut out: Vec<OsString> = list.iter().map(OsString::from).collect();
    if let Some(p) = path {
        out.push("--".into());
        out.push(p.clone());
    }
    out
}

/// `GET /api/workspaces`: every workspace of the registry with its `status --json` (which
/// answers from the last look at the share, never touching it).
pub async fn workspaces(State(app): State<Arc<App>>) -> ApiResult {
    let roots = cachesync_engine::registry::present_now();
    let looks = roots.iter().map(|root| {
        let app = app.clone();
        async move {
            let shown = root.to_string_lossy();
            if root.to_str().is_none() {
                let why = "its path is not UTF-8: the page cannot name it; use the command line";
                return json!({ "path": shown, "status": null, "error": why, "busy": false });
            }
            let ran = app
                .cachesync
                .look(root, &args(&["status", "--json"], None), None)
                .await;
            let busy = ran.as_ref().is_ok_and(crate::run::Ran::busy);
            let (status, error) = match ran {
                Ok(r) if r.code == 0 => match serde_json::from_slice::<Value>(&r.stdout) {
                    Ok(v) => (v, Value::Null),
                    Err(e) => (Value::Null, json!(format!("status gave no JSON: {e}"))),
                },
                Ok(r) => (Value::Null, json!(r.message())),
                Err(e) => (Value::Null, json!(e)),
            };
            json!({ "path": shown, "status": status, "error": error, "busy": busy })
        }
    });
    let all = futures_util::future::join_all(looks).await;
    Ok(Json(json!({ "workspaces": all })))
}

/// A workspace and a path in it, from the query or the body.
#[derive(Deserialize)]
pub struct At {
    ws: String,
    #[serde(default)]
    path: String,
    path_hex: Option<String>,
}

/// One version of the conflicted `path`, through `show`; only its facts when the record
/// says it is bigger than the page shows (`recorded`: that variant of the record).
async fn version(
    app: &App,
    ws: &std::path::Path,
    path: &OsString,
    which: &str,
    recorded: &Value,
) -> Version {
    let too_big = recorded["size"].as_u64().filter(|&n| n > TEXT_LIMIT as u64);
    if let (Some(size), Some("file")) = (too_big, recorded["kind"].as_str()) {
        return Version {
            present: true,
            binary: true,
            size: Some(size),
            ..Version::default()
        };
    }
    let ran = app
        .cachesync
        .look(
            ws,
            &args(&["show", "--variant", which], Some(path)),
            Some(TEXT_LIMIT as u64),
        )
        .await;
    match ran {
        Ok(r) if r.code == 0 && r.stdout.len() > TEXT_LIMIT => Version {
            present: true,
            binary: true,
            size: recorded["size"].as_u64(),
            ..Version::default()
        },
        Ok(r) if r.code == 0 => Version::of_bytes(r.stdout),
        Ok(r) if r.stderr.contains("no such version") => Version::default(),
        Ok(r) => Version {
            present: true,
            note: Some(r.message().trim_start_matches("cachesync: ").to_string()),
            ..Version::default()
        },
        Err(e) => Version {
            note: Some(e),
            ..Version::default()
        },
    }
}

/// `GET /api/conflict?ws=W&path=P`: the open conflict's record, its three versions, each
/// text one's lines marked against the base (or, with no base, against the other side), and
/// a merge to start editing from.
pub async fn conflict(State(app): State<Arc<App>>, Query(at): Query<At>) -> ApiResult {
    let ws = workspace(&at.ws)?;
    let path = inside(&at.path, at.path_hex.as_deref())?;
    let listed = app
        .cachesync
        .look(&ws, &args(&["conflicts", "--json"], None), None)
        .await
        .map_err(failed)?;
    let records: Vec<Value> = serde_json::from_slice(&listed.stdout)
        .map_err(|_| failed(format!("conflicts: {}", listed.message())))?;
    let wanted = path.clone().into_vec();
    let Some(record) = records.into_iter().find(|r| {
        r["path_hex"]
            .as_str()
            .and_then(cachesync_engine::paths::unhex)
            .is_some_and(|p| p == wanted)
    }) else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no open conflict at {}", at.path),
        ));
    };
    let server = version(&app, &ws, &path, "server", &record["server"]).await;
    let client = version(&app, &ws, &path, "client", &record["client"]).await;
    let base = version(&app, &ws, &path, "base", &record["base"]).await;
    let (s, c) = (server.text.as_deref(), client.text.as_deref());
    let (server_lines, client_lines) = match (base.text.as_deref(), s, c) {
        (Some(b), s, c) => (s.map(|s| against(b, s)), c.map(|c| against(b, c))),
        (None, Some(s), Some(c)) => (Some(against(c, s)), Some(against(s, c))),
        _ => (None, None),
    };
    let merge = match (&base.text, s, c) {
        (b, Some(s), Some(c)) => {
            match merge3(
                b.as_deref().unwrap_or("").as_bytes(),
                c.as_bytes(),
                s.as_bytes(),
            ) {
                Merged::Clean(m) => json!({ "clean": true, "text": String::from_utf8_lossy(&m) }),
                Merged::Conflicted(m) => {
                    json!({ "clean": false, "text": String::from_utf8_lossy(&m) })
                }
                Merged::NotText => Value::Null,
            }
        }
        _ => Value::Null,
    };
    Ok(Json(json!({
        "record": record,
        "server": server,
        "client": client,
        "base": base,
        "server_lines": server_lines,
        "client_lines": client_lines,
        "merge": merge,
    })))
}

/// The body of `POST /api/resolve`: take a version, or give the merged text.
#[derive(Deserialize)]
pub struct Resolve {
    ws: String,
    path: String,
    path_hex: Option<String>,
    take: Option<String>,
    text: Option<String>,
}

fn done(ran: crate::run::Ran) -> ApiResult {
    let ok = ran.code == 0;
    let body = json!({ "ok": ok, "code": ran.code, "message": ran.message() });
    if ok {
        Ok(Json(body))
    } else {
        Err(ApiError(StatusCode::CONFLICT, ran.message()))
    }
}

/// `POST /api/resolve`: `cachesync resolve PATH --take WHICH`, or `--with` a file holding
/// the text edited in the page.
pub async fn resolve(State(app): State<Arc<App>>, Json(r): Json<Resolve>) -> ApiResult {
    let ws = workspace(&r.ws)?;
    let path = inside(&r.path, r.path_hex.as_deref())?;
    let (list, held) = match (&r.take, &r.text) {
        (Some(t), None) if ["server", "client", "base", "merged"].contains(&t.as_str()) => {
            (args(&["resolve", "--take", t], Some(&path)), None)
        }
        (None, Some(text)) => {
            let file = tempfile::NamedTempFile::new()
                .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()).map(|()| f))
                .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
                .into_temp_path();
            let mut a = args(&["resolve", "--with"], None);
            a.push(file.to_path_buf().into());
            a.extend(args(&[], Some(&path)));
            (a, Some(file))
        }
        _ => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "give take (server, client, base or merged) or text".into(),
            ))
        }
    };
    // The file is removed once the command is done with it, even when the page is gone.
    done(app.cachesync.act(&ws, list, held).await.map_err(failed)?)
}

/// The body of `POST /api/mode`: one workspace, the workspaces of one server, or all.
#[derive(Deserialize)]
pub struct Mode {
    ws: Option<String>,
    server: Option<String>,
    #[serde(default)]
    all: bool,
    online: bool,
}

/// `POST /api/mode`: `cachesync connect` or `disconnect`, for one workspace, `--server
/// HOST` or `--all`.
pub async fn mode(State(app): State<Arc<App>>, Json(m): Json<Mode>) -> ApiResult {
    let verb = if m.online {
        vec!["connect", "--quiet"]
    } else {
        vec!["disconnect"]
    };
    let (dir, mut list) = match (&m.ws, &m.server, m.all) {
        (Some(ws), None, false) => (workspace(ws)?, args(&verb, None)),
        (None, Some(host), false) => {
            let mut a = args(&verb, None);
            a.extend(["--server".into(), host.into()]);
            (PathBuf::from("/"), a)
        }
        (None, None, true) => (PathBuf::from("/"), args(&verb, None)),
        _ => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "give one of ws, server or all".into(),
            ))
        }
    };
    if m.all {
        list.push("--all".into());
    }
    let ran = app.cachesync.act(&dir, list, ()).await.map_err(failed)?;
    // 7: switched, with conflicts left by the sync that followed.
    if ran.code == 7 {
        return Ok(Json(
            json!({ "ok": true, "code": 7, "message": ran.message() }),
        ));
    }
    done(ran)
}

/// `POST /api/sync`: `cachesync sync --json`; its report comes back as it is.
pub async fn sync(State(app): State<Arc<App>>, Json(at): Json<At>) -> ApiResult {
    let ws = workspace(&at.ws)?;
    let ran = app
        .cachesync
        .act(&ws, args(&["sync", "--json", "--quiet"], None), ())
        .await
        .map_err(failed)?;
    let report: Value = serde_json::from_slice(&ran.stdout).unwrap_or(Value::Null);
    Ok(Json(json!({
        "ok": ran.code == 0 || ran.code == 7,
        "code": ran.code,
        "report": report,
        "message": if report.is_null() { ran.message() } else { String::new() },
    })))
}

/// `GET /api/files?ws=W&path=DIR`: `cachesync ls --json DIR`, each entry with its state.
pub async fn files(State(app): State<Arc<App>>, Query(at): Query<At>) -> ApiResult {
    let ws = workspace(&at.ws)?;
    let dir = inside(&at.path, at.path_hex.as_deref())?;
    let ran = app
        .cachesync
        .look(&ws, &args(&["ls", "--json"], Some(&dir)), None)
        .await
        .map_err(failed)?;
    if ran.busy() {
        return Err(ApiError(StatusCode::CONFLICT, ran.message()));
    }
    if ran.code != 0 {
        return Err(ApiError(StatusCode::NOT_FOUND, ran.message()));
    }
    serde_json::from_slice(&ran.stdout)
        .map(Json)
        .map_err(|e| failed(format!("ls gave no JSON: {e}")))
}

/// `GET /api/log?ws=W`: the last 100 operations (`cachesync log --json --limit 100
/// --no-plan`), oldest first.
pub async fn log(State(app): State<Arc<App>>, Query(at): Query<At>) -> ApiResult {
    let ws = workspace(&at.ws)?;
    let ran = app
        .cachesync
        .look(
            &ws,
            &args(&["log", "--json", "--limit", "100", "--no-plan"], None),
            None,
        )
        .await
        .map_err(failed)?;
    if ran.busy() {
        return Err(ApiError(StatusCode::CONFLICT, ran.message()));
    }
    serde_json::from_slice(&ran.stdout)
        .map(Json)
        .map_err(|_| failed(format!("log: {}", ran.message())))
}

/// The body of `POST /api/undo`.
#[derive(Deserialize)]
pub struct Undo {
    ws: String,
    op: u64,
}

/// `POST /api/undo`: `cachesync undo OP --json`; its report, with its exit code (7: paths
/// left, or conflicts).
pub async fn undo(State(app): State<Arc<App>>, Json(u): Json<Undo>) -> ApiResult {
    let ws = workspace(&u.ws)?;
    let ran = app
        .cachesync
        .act(
            &ws,
            args(&["undo", &u.op.to_string(), "--json", "--quiet"], None),
            (),
        )
        .await
        .map_err(failed)?;
    let report: Value = serde_json::from_slice(&ran.stdout).unwrap_or(Value::Null);
    if ran.code != 0 && ran.code != 7 {
        // A refusal prints `{"error": "..."}`; a push that failed, its report with `error`.
        let why = report["error"]
            .as_str()
            .or_else(|| report["error"]["error"].as_str())
            .map_or_else(|| ran.message(), str::to_string);
        return Err(ApiError(StatusCode::CONFLICT, why));
    }
    Ok(Json(
        json!({ "ok": true, "code": ran.code, "report": report }),
    ))
}

/// The body of `POST /api/presence`.
#[derive(Deserialize)]
pub struct Presence {
    ws: String,
    path: String,
    path_hex: Option<String>,
    /// `pin`, `unpin`, `get` or `drop`.
    verb: String,
}

/// `POST /api/presence`: `cachesync pin|unpin|get|drop PATH`.
pub async fn presence(State(app): State<Arc<App>>, Json(p): Json<Presence>) -> ApiResult {
    let ws = workspace(&p.ws)?;
    let path = inside(&p.path, p.path_hex.as_deref())?;
    if !["pin", "unpin", "get", "drop"].contains(&p.verb.as_str()) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("{:?} is not one of pin, unpin, get, drop", p.verb),
        ));
    }
    let ran = app
        .cachesync
        .act(&ws, args(&[&p.verb], Some(&path)), ())
        .await
        .map_err(failed)?;
    done(ran)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_stay_inside_the_workspace() {
        let ok = |p: &str| inside(p, None).ok();
        assert_eq!(ok("a/b.txt"), Some(OsString::from("a/b.txt")));
        assert_eq!(ok(""), Some(OsString::from(".")));
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            ".cachesync/config.json",
            "a\0b",
            "\"../x\"",
            "\"unterminated",
        ] {
            assert!(inside(bad, None).is_err(), "{bad:?} was let through");
        }
        assert!(
            ok("a/.cachesync").is_some(),
            "only the top one is the cache's"
        );
        // As the commands print them: quoted, or with the bytes in hex.
        assert_eq!(ok("\"a\\\\b.txt\""), Some(OsString::from("a\\b.txt")));
        assert_eq!(
            inside("\"bad\\xffname\"", Some("626164ff6e616d65")).ok(),
            Some(OsString::from_vec(b"bad\xffname".to_vec()))
        );
        assert!(inside("x", Some("2e2e2f78")).is_err(), "../x in hex");
    }
}

//! Who may use the page: the person who started it, from a browser on this machine.
//!
//! Every request passes three checks, in this order:
//! - **Host**: the `Host` header names the address the page listens on (`127.0.0.1:PORT`,
//!   `localhost:PORT`, `[::1]:PORT`, or the address given with `--listen`). A page of another
//!   site whose name was made to resolve to 127.0.0.1 (DNS rebinding) sends its own name and
//!   is refused.
//! - **Origin**: a request that changes something (any method but GET and HEAD) carries an
//!   `Origin` of the page itself. A foreign page cannot make the browser switch a workspace
//!   offline or resolve a conflict, even with the cookie.
//! - **Token**: the random token printed at start, given once in the URL (`?token=`), after
//!   which the page answers with a cookie; scripts may send `Authorization: Bearer TOKEN`.
//!   Without it: 401.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::App;

/// The checks' facts: the token and the names the page answers to.
pub struct Guard {
    token: String,
    /// `host:port` values accepted in the Host header (lower case).
    hosts: Vec<String>,
    cookie: String,
}

impl Guard {
    /// A guard for a page listening on `addr` with `token`.
    pub fn new(token: String, addr: SocketAddr) -> Guard {
        let port = addr.port();
        let mut hosts = vec![addr.to_string().to_ascii_lowercase()];
        if addr.ip().is_loopback() {
            for name in ["127.0.0.1", "localhost", "[::1]"] {
                hosts.push(format!("{name}:{port}"));
            }
        }
        hosts.dedup();
        Guard {
            token,
            hosts,
            // Cookies are kept per host, not per port: two pages on two ports keep apart.
            cookie: format!("cachesync-ui-{port}"),
        }
    }

    /// A fresh random token: 32 bytes from the kernel, in hex.
    ///
    /// # Panics
    /// When the kernel gives no random bytes (no page can be safe without them).
    pub fn random_token() -> String {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the kernel gives random bytes");
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn host_ok(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|h| self.hosts.iter().any(|a| a.eq_ignore_ascii_case(h)))
    }

    fn origin_ok(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .and_then(|o| o.strip_prefix("http://"))
            .is_some_and(|h| self.hosts.iter().any(|a| a.eq_ignore_ascii_case(h)))
    }

    fn token_ok(&self, given: &str) -> bool {
        // The same time whatever the first wrong byte.
        given.len() == self.token.len()
            && given
                .bytes()
                .zip(self.token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    fn cookie_or_bearer_ok(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| self.token_ok(t.trim()));
        bearer
            || headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|kv| kv.trim().split_once('='))
                .any(|(k, v)| k == self.cookie && self.token_ok(v))
    }
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, format!("cachesync ui: {why}\n")).into_response()
}

/// The query without its `token=` pair, and the token when there was one.
fn split_token(query: &str) -> (Option<&str>, String) {
    let mut token = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.strip_prefix("token=") {
            Some(t) => token = Some(t),
            None => rest.push(pair),
        }
    }
    (token, rest.join("&"))
}

/// The middleware: the three checks, then the page; a token in the URL is traded for the
/// cookie and a redirect to the same URL without it (so it leaves the address bar and the
/// history).
pub async fn check(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let g = &app.guard;
    if !g.host_ok(req.headers()) {
        return refuse(
            StatusCode::FORBIDDEN,
            "this page answers only to its own address (Host header refused)",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD && !g.origin_ok(req.headers()) {
        return refuse(
            StatusCode::FORBIDDEN,
            "a change must come from the page itself (Origin refused)",
        );
    }
    if let Some(query) = req.uri().query() {
        if let (Some(token), rest) = split_token(query) {
            if !g.token_ok(token) {
                return refuse(StatusCode::UNAUTHORIZED, "wrong token");
            }
            let path = req.uri().path();
            let to = if rest.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{rest}")
            };
            let cookie = format!(
                "{}={}; Path=/; HttpOnly; SameSite=Strict",
                g.cookie, g.token
            );
            let mut resp = StatusCode::SEE_OTHER.into_response();
            let headers = resp.headers_mut();
            if let (Ok(loc), Ok(c)) = (HeaderValue::from_str(&to), HeaderValue::from_str(&cookie)) {
                headers.insert(header::LOCATION, loc);
                headers.insert(header::SET_COOKIE, c);
            }
            return resp;
        }
    }
    if !g.cookie_or_bearer_ok(req.headers()) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "open the address `cachesync ui` printed (it holds the token)",
        );
    }
    let mut resp = next.run(req).await;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).expect("a header value"));
        }
        h
    }

    #[test]
    fn the_page_answers_to_its_own_names_only() {
        let g = Guard::new("ab".repeat(32), "127.0.0.1:8384".parse().expect("addr"));
        assert!(g.host_ok(&headers(&[(header::HOST, "127.0.0.1:8384")])));
        assert!(g.host_ok(&headers(&[(header::HOST, "LOCALHOST:8384")])));
        assert!(!g.host_ok(&headers(&[(header::HOST, "evil.example:8384")])));
        assert!(!g.host_ok(&headers(&[(header::HOST, "127.0.0.1:8385")])));
        assert!(!g.host_ok(&headers(&[])));
        assert!(g.origin_ok(&headers(&[(header::ORIGIN, "http://localhost:8384")])));
        assert!(!g.origin_ok(&headers(&[(header::ORIGIN, "http://evil.example")])));
        assert!(!g.origin_ok(&headers(&[(header::ORIGIN, "null")])));
    }

    #[test]
    fn the_token_is_checked_whole_in_cookie_or_bearer() {
        let token = Guard::random_token();
        assert_eq!(token.len(), 64);
        assert_ne!(token, Guard::random_token());
        let g = Guard::new(token.clone(), "127.0.0.1:9000".parse().expect("addr"));
        let cookie = format!("other=1; cachesync-ui-9000={token}");
        assert!(g.cookie_or_bearer_ok(&headers(&[(header::COOKIE, &cookie)])));
        let bearer = format!("Bearer {token}");
        assert!(g.cookie_or_bearer_ok(&headers(&[(header::AUTHORIZATION, &bearer)])));
        let short = format!("cachesync-ui-9000={}", &token[..63]);
        assert!(!g.cookie_or_bearer_ok(&headers(&[(header::COOKIE, &short)])));
        let other_port = format!("cachesync-ui-9001={token}");
        assert!(!g.cookie_or_bearer_ok(&headers(&[(header::COOKIE, &other_port)])));
        assert_eq!(
            split_token("a=1&token=x&b=2"),
            (Some("x"), "a=1&b=2".to_string())
        );
    }
}

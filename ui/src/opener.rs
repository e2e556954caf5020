//! The desktop notification's "Open in cachesync" action. A run that records a conflict, with
//! notifications on and a page running, offers the action; the key names the conflict (see
//! [`cachesync_engine::notify::OPEN_ACTION`]). The notification server broadcasts the
//! person's click as the `ActionInvoked` signal; the page, which listens for it, opens the
//! browser on that conflict ([`crate::open_in_browser`]).

use std::sync::mpsc::Sender;
use std::time::Duration;

use cachesync_engine::notify::OPEN_ACTION;

/// How long the page waits, at start, to be listening (a slow or absent bus costs no more).
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(2);

/// The address to open for the action `key`, on the page at `url` (its address with the
/// token); `None` for another program's action or a key that names no conflict.
pub fn target(url: &str, key: &str) -> Option<String> {
    let fragment = key.strip_prefix(OPEN_ACTION)?;
    // What form_urlencoded writes, and nothing else.
    let ok = fragment.starts_with("#/conflict?")
        && fragment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"%&=+._*-/?#".contains(&b));
    ok.then(|| format!("{url}{fragment}"))
}

/// Listens, on a thread of its own, for the actions on the session bus; returns once it
/// listens, or after [`SUBSCRIBE_WAIT`]. Without a session bus, nothing happens.
pub fn start(url: String) {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("opener".into())
        .spawn(move || {
            let _ = listen(&url, &tx);
        });
    if spawned.is_ok() {
        let _ = rx.recv_timeout(SUBSCRIBE_WAIT);
    }
}

fn listen(url: &str, listening: &Sender<()>) -> zbus::Result<()> {
    let bus = zbus::blocking::Connection::session()?;
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender("org.freedesktop.Notifications")?
        .interface("org.freedesktop.Notifications")?
        .member("ActionInvoked")?
        .build();
    let signals = zbus::blocking::MessageIterator::for_match_rule(rule, &bus, Some(64))?;
    let _ = listening.send(());
    for signal in signals {
        let Ok(signal) = signal else { continue };
        let Ok((_id, key)) = signal.body().deserialize::<(u32, String)>() else {
            continue;
        };
        if let Some(to) = target(url, &key) {
            let _ = crate::open_in_browser(&to);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_actions_naming_a_conflict_open_the_page() {
        let url = "http://127.0.0.1:8386/?token=ab";
        assert_eq!(
            target(url, "cachesync-open:#/conflict?ws=%2Fw&path=a.txt").as_deref(),
            Some("http://127.0.0.1:8386/?token=ab#/conflict?ws=%2Fw&path=a.txt")
        );
        assert_eq!(target(url, "default"), None);
        assert_eq!(target(url, "cachesync-open:#/files?ws=%2Fw"), None);
        assert_eq!(target(url, "cachesync-open:#/conflict?ws=a b"), None);
        assert_eq!(target(url, "cachesync-open:#/conflict?x=\"; rm"), None);
    }
}

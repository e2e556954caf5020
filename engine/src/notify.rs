//! Desktop notifications: each event worth a person's attention (the workspace went
//! offline or came back, a conflict needs resolving, the cache is nearly full or full) is
//! shown by the desktop's notification server over the session D-Bus
//! (`org.freedesktop.Notifications`), when the workspace's config asks for it
//! (`notifications: true`). Like the hook, a notification never holds up a run: it is sent
//! from a thread of its own, waited for at most [`NOTIFY_WAIT`], and a session without a bus
//! or a notification server only loses the notification (the event is in the log).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use crate::events::{Event, EventKind};

/// How long a run waits for the notification server to take a notification.
pub const NOTIFY_WAIT: Duration = Duration::from_secs(2);

/// The start of the key of a notification's "open" action: the rest is the fragment of the
/// page's address that shows the conflict (`#/conflict?ws=...&path=...`). The page
/// (`cachesync ui`) listens for the action and opens the browser there.
pub const OPEN_ACTION: &str = "cachesync-open:";

/// The actions of `event`'s notification (key, label, ...): "Open in cachesync" on a
/// conflict, when a page runs to open it; none otherwise.
pub fn actions(event: &Event, page_runs: bool) -> Vec<String> {
    match (&event.kind, &event.path) {
        (EventKind::Conflict, Some(path)) if page_runs => {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("ws", &event.workspace)
                .append_pair("path", path)
                .finish();
            vec![
                format!("{OPEN_ACTION}#/conflict?{query}"),
                "Open in cachesync".to_owned(),
            ]
        }
        _ => Vec::new(),
    }
}

/// The summary and body of `event`'s notification; `None` for an event not worth one.
pub fn text(event: &Event) -> Option<(String, String)> {
    let name = Path::new(&event.workspace).file_name().map_or_else(
        || event.workspace.clone(),
        |n| n.to_string_lossy().into_owned(),
    );
    let why = event.reason.as_deref().unwrap_or_default();
    let (summary, body) = match event.kind {
        EventKind::Disconnected => (
            format!("{name} is offline"),
            format!("{why}\nKeep working: your changes stay here until the share is back."),
        ),
        EventKind::Connected => (
            format!("{name} is back online"),
            format!("{why}\nThe share answers again."),
        ),
        EventKind::Conflict => (
            format!("Conflict in {name}"),
            format!(
                "{} changed here and on the server; both versions are kept.\n`cachesync conflicts` lists what needs you.",
                event.path.as_deref().unwrap_or("a file")
            ),
        ),
        EventKind::CacheNearlyFull => (
            format!("{name}: the cache is nearly full"),
            "Over 90% of its budget; the least wanted clean files will be dropped.".to_owned(),
        ),
        EventKind::CacheFull => (
            format!("{name}: the cache is full"),
            "Content did not fit the budget: some files stay on the share only.".to_owned(),
        ),
        EventKind::NotCached => return None,
    };
    Some((
        summary,
        format!("{}\n{}", body.trim_start(), event.workspace),
    ))
}

/// Shows `event` as a desktop notification, if it is one worth showing.
pub fn show(event: &Event) {
    let Some((summary, body)) = text(event) else {
        return;
    };
    let actions = actions(event, crate::registry::page_url().is_some());
    let (tx, rx) = std::sync::mpsc::channel();
    let sender = std::thread::Builder::new()
        .name("notify".into())
        .spawn(move || {
            let _ = tx.send(send(&summary, &body, &actions));
        });
    if sender.is_ok() {
        // Left behind when the server is slow: it holds nothing of the run's.
        let _ = rx.recv_timeout(NOTIFY_WAIT);
    }
}

/// One `Notify` call on the session bus; the server's id for the notification.
fn send(summary: &str, body: &str, actions: &[String]) -> zbus::Result<u32> {
    let bus = zbus::blocking::Connection::session()?;
    let hints: HashMap<&str, zbus::zvariant::Value<'_>> = HashMap::new();
    let reply = bus.call_method(
        Some("org.freedesktop.Notifications"),
        "/org/freedesktop/Notifications",
        Some("org.freedesktop.Notifications"),
        "Notify",
        &("cachesync", 0u32, "", summary, body, actions, hints, -1i32),
    )?;
    reply.body().deserialize::<u32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, path: Option<&str>) -> Event {
        Event {
            time_ns: 0,
            kind,
            workspace: "/home/me/project".into(),
            reason: Some("the share did not answer within 10 s".into()),
            path: path.map(str::to_owned),
            manual: None,
        }
    }

    #[test]
    fn a_conflict_can_be_opened_in_the_page_when_one_runs() {
        let conflict = Event {
            path: Some("docs/a b&c.txt".into()),
            ..event(EventKind::Conflict, None)
        };
        assert!(actions(&conflict, false).is_empty());
        assert_eq!(
            actions(&conflict, true),
            [
                "cachesync-open:#/conflict?ws=%2Fhome%2Fme%2Fproject&path=docs%2Fa+b%26c.txt",
                "Open in cachesync"
            ]
        );
        assert!(actions(&event(EventKind::Disconnected, None), true).is_empty());
    }

    #[test]
    fn each_event_worth_attention_says_what_and_where() {
        let (summary, body) = text(&event(EventKind::Conflict, Some("docs/a.txt"))).expect("one");
        assert_eq!(summary, "Conflict in project");
        assert!(
            body.contains("docs/a.txt") && body.ends_with("/home/me/project"),
            "{body}"
        );
        let (summary, body) = text(&event(EventKind::Disconnected, None)).expect("one");
        assert_eq!(summary, "project is offline");
        assert!(body.starts_with("the share did not answer"), "{body}");
        for kind in [
            EventKind::Connected,
            EventKind::CacheNearlyFull,
            EventKind::CacheFull,
        ] {
            assert!(text(&event(kind, None)).is_some(), "{kind}");
        }
        assert!(text(&event(EventKind::NotCached, Some("a"))).is_none());
    }
}

//! `GET /api/events`: the events of every workspace as server-sent events, the same lines
//! `cachesync events --json --follow` prints: the most recent ones first, then each new one
//! as it is appended to a workspace's `events.jsonl`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};

use cachesync_engine::events::EVENTS_FILE;
use cachesync_engine::ignore_rules::META_DIR;

/// How often the event files are looked at.
const POLL: Duration = Duration::from_millis(300);

/// How many past events a new page is sent.
const HISTORY: usize = 50;

/// Where each workspace's events file was read up to.
type Offsets = HashMap<PathBuf, u64>;

/// The complete lines appended to each workspace's events file since the last look. A
/// workspace seen for the first time starts at its end (or, with `history`, gives its whole
/// file, of which the caller keeps the last lines).
fn appended(offsets: &mut Offsets, history: bool) -> Vec<String> {
    let mut lines = Vec::new();
    for root in cachesync_engine::registry::present_now() {
        let file = root.join(META_DIR).join(EVENTS_FILE);
        let len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        let from = offsets.entry(root).or_insert(if history { 0 } else { len });
        if len < *from {
            *from = 0; // replaced: start over
        }
        if len == *from {
            continue;
        }
        let mut buf = Vec::new();
        let read = std::fs::File::open(&file).and_then(|mut f| {
            f.seek(SeekFrom::Start(*from))?;
            f.take(len - *from).read_to_end(&mut buf)
        });
        if read.is_err() {
            continue;
        }
        // Only whole lines: a line being written is read at the next look.
        let whole = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        *from += whole as u64;
        lines.extend(
            String::from_utf8_lossy(&buf[..whole])
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string),
        );
    }
    lines
}

/// The stream: past events (sorted by time, the last [`HISTORY`]), then new ones.
pub async fn events() -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(256);
    tokio::spawn(async move {
        let mut offsets = Offsets::new();
        let mut first = true;
        loop {
            let history = std::mem::take(&mut first);
            let Ok((o, mut lines)) = tokio::task::spawn_blocking(move || {
                let lines = appended(&mut offsets, history);
                (offsets, lines)
            })
            .await
            else {
                return;
            };
            offsets = o;
            if history {
                lines.sort_by_key(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v["time_ns"].as_i64())
                        .unwrap_or(0)
                });
                let skip = lines.len().saturating_sub(HISTORY);
                lines.drain(..skip);
            }
            for line in lines {
                if tx.send(line).await.is_err() {
                    return; // the page is gone
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    });
    let stream = stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        Some((Ok(Event::default().data(line)), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

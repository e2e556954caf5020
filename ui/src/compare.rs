//! The versions of a conflicted path, ready to show side by side: each one's text with its
//! lines marked against the base (from `similar`'s line diff), or its facts when it is not
//! text.

use serde::Serialize;
use similar::{ChangeTag, TextDiff};

/// Past this, a version is shown by its facts only (a browser pane is no place for it).
pub const TEXT_LIMIT: usize = 2 << 20;

/// One version of the path.
#[derive(Debug, Default, Serialize)]
pub struct Version {
    /// The version exists (the path is absent on that side otherwise).
    pub present: bool,
    /// Its text, when it is a file of UTF-8 text under [`TEXT_LIMIT`].
    pub text: Option<String>,
    /// It is a file, but not text (or too big to show).
    pub binary: bool,
    /// Its size in bytes, when it is a file.
    pub size: Option<u64>,
    /// What `show` said when it gave no content (a directory, not in the cache...).
    pub note: Option<String>,
}

impl Version {
    /// A file's content.
    pub fn of_bytes(bytes: Vec<u8>) -> Version {
        let size = Some(bytes.len() as u64);
        let text = (bytes.len() <= TEXT_LIMIT && !bytes.contains(&0))
            .then(|| String::from_utf8(bytes).ok())
            .flatten();
        Version {
            present: true,
            binary: text.is_none(),
            text,
            size,
            note: None,
        }
    }
}

/// One line of a pane.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Line {
    /// `same`, `added` (not in the version compared with) or `removed` (only there).
    pub tag: &'static str,
    /// The line, without its line end.
    pub text: String,
}

/// The lines of `text`, each marked against `base`; lines `base` has and `text` lacks are
/// shown where they were, marked `removed`.
pub fn against(base: &str, text: &str) -> Vec<Line> {
    TextDiff::from_lines(base, text)
        .iter_all_changes()
        .map(|c| Line {
            tag: match c.tag() {
                ChangeTag::Equal => "same",
                ChangeTag::Insert => "added",
                ChangeTag::Delete => "removed",
            },
            text: c
                .value()
                .strip_suffix('\n')
                .unwrap_or(c.value())
                .to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_marked_against_the_base() {
        let lines = against("a\nb\nc\n", "a\nB\nc\nd");
        let tags: Vec<(&str, &str)> = lines.iter().map(|l| (l.tag, l.text.as_str())).collect();
        assert_eq!(
            tags,
            [
                ("same", "a"),
                ("removed", "b"),
                ("added", "B"),
                ("same", "c"),
                ("added", "d")
            ]
        );
    }

    #[test]
    fn binary_and_big_content_is_shown_by_its_facts() {
        let v = Version::of_bytes(b"\x00\x01\xff".to_vec());
        assert!(v.binary && v.text.is_none() && v.size == Some(3));
        let v = Version::of_bytes(vec![b'a'; TEXT_LIMIT + 1]);
        assert!(v.binary && v.text.is_none());
        let v = Version::of_bytes(b"hello\n".to_vec());
        assert_eq!(v.text.as_deref(), Some("hello\n"));
        assert!(!v.binary);
    }
}

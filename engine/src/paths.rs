//! Relative paths as bytes, and how they are shown to people and scripts.
//!
//! Names are bytes: non-UTF-8 names and names with newlines must survive. Paths inside the
//! engine are `/`-separated byte strings relative to the workspace (or remote) root.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A path for humans: as is when it is printable UTF-8, else quoted C-style with `\n`, `\t`,
/// `\\`, `\"` and `\xNN` escapes (as git's `core.quotePath` does).
pub fn display(path: &[u8]) -> String {
    match std::str::from_utf8(path) {
        Ok(s) if !s.chars().any(|c| c.is_control() || c == '"' || c == '\\') => s.to_string(),
        _ => quote(path),
    }
}

fn quote(path: &[u8]) -> String {
    let mut out = String::from("\"");
    let mut rest = path;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                push_escaped(&mut out, s);
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                push_escaped(&mut out, std::str::from_utf8(good).expect("valid prefix"));
                let n = e.error_len().unwrap_or(bad.len());
                for b in &bad[..n] {
                    out.push_str(&format!("\\x{b:02x}"));
                }
                rest = &bad[n..];
            }
        }
    }
    out.push('"');
    out
}

fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
}

/// The workspace path of a relative path.
pub fn under(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(rel))
    }
}

/// The bytes of a path.
pub fn bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

/// True when `path` is `dir` or inside it.
pub fn is_within(path: &[u8], dir: &[u8]) -> bool {
    dir.is_empty()
        || path == dir
        || (path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/')
}

/// Lower-case hex of some bytes (JSON's `path_hex` for names that are not UTF-8).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// [`hex`] of a path that is not UTF-8 (its displayable name loses bytes), `None` for one
/// that is: the `path_hex` that records and JSON output carry beside `path`.
pub fn hex_unless_utf8(path: &[u8]) -> Option<String> {
    std::str::from_utf8(path).is_err().then(|| hex(path))
}

/// The bytes [`hex`] wrote, or `None` when `hex` is not an even run of hex digits (a damaged
/// record: never read as some other path).
pub fn unhex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len() / 2)
        .map(|i| {
            hex.get(i * 2..i * 2 + 2)
                .filter(|pair| pair.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect()
}

/// The bytes of a path as a status or a record shows it: `shown` is [`display`]'s text,
/// `path_hex` the [`hex`] given beside it for a name that is not UTF-8. `None` for text that
/// neither wrote (a damaged record: never read as some other path).
pub fn path_bytes(shown: &str, path_hex: Option<&str>) -> Option<Vec<u8>> {
    if let Some(h) = path_hex {
        return unhex(h);
    }
    let Some(quoted) = shown.strip_prefix('"') else {
        // Unquoted text never holds a quote: it is the path itself.
        return Some(shown.as_bytes().to_vec());
    };
    let inner = quoted.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            '\\' => out.push('\\'),
            '"' => out.push('"'),
            // A control character of valid UTF-8 (a byte that is not UTF-8 has `path_hex`).
            'x' => {
                let digits: String = chars.by_ref().take(2).collect();
                if digits.len() != 2 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                let code = u32::from_str_radix(&digits, 16).ok()?;
                out.push(char::from_u32(code)?);
            }
            _ => return None,
        }
    }
    Some(out.into_bytes())
}

pub use cachesync_objects::store::{join, split_parent};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_damage() {
        // Lower case, high nibble first: the spelling records already hold.
        assert_eq!(hex(b"\xff\x00a/\x0b"), "ff00612f0b");
        for bytes in [&b""[..], b"a/b", b"\xff\x00name"] {
            assert_eq!(unhex(&hex(bytes)).as_deref(), Some(bytes));
        }
        for damaged in ["6", "6g", "+1", "612", "\u{e9}"] {
            assert_eq!(unhex(damaged), None, "{damaged:?}");
        }
    }

    proptest::proptest! {
        /// Whatever the bytes, the text a status shows (with `path_hex` when they are not
        /// UTF-8) gives them back.
        #[test]
        fn shown_paths_give_their_bytes_back(path in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::prelude::any::<u8>(),
                proptest::sample::select(vec![b'"', b'\\', b'\n', b'\t', b'x', b'/', 0x7f, 0xc2, 0x85]),
            ],
            0..24,
        )) {
            let path_hex = hex_unless_utf8(&path);
            proptest::prop_assert_eq!(path_bytes(&display(&path), path_hex.as_deref()), Some(path));
        }
    }

    #[test]
    fn shown_paths_that_no_status_wrote_are_refused() {
        for damaged in ["\"unterminated", "\"bad \\q\"", "\"\\x4\"", "\"\\xzz\""] {
            assert_eq!(path_bytes(damaged, None), None, "{damaged:?}");
        }
        assert_eq!(path_bytes("q\"1.txt", Some("zz")), None);
        assert_eq!(
            path_bytes("\"q\\\"1.txt\"", None).as_deref(),
            Some(&b"q\"1.txt"[..])
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(display(b"src/main.rs"), "src/main.rs");
        assert_eq!(display(b"a\nb"), "\"a\\nb\"");
        assert_eq!(display(b"caf\xc3\xa9"), "café");
        assert_eq!(display(b"bad\xff.txt"), "\"bad\\xff.txt\"");
        assert!(is_within(b"a/b", b"a"));
        assert!(!is_within(b"ab", b"a"));
    }
}

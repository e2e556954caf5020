//! The mount a path lives on, from `/proc/self/mountinfo`.
//!
//! The remote's identity is what survives a remount: the mount's source (e.g.
//! `root@server:/srv/project`) and file-system type (`fuse.sshfs`, `nfs4`), never device or
//! inode numbers.

use std::path::Path;

/// One line of mountinfo that matters to us.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MountInfo {
    /// Where it is mounted.
    pub mount_point: String,
    /// The file-system type (`ext4`, `fuse.sshfs`, `nfs4`, ...).
    pub fstype: String,
    /// The mount source (`/dev/vda`, `user@host:/dir`, `server:/export`).
    pub source: String,
}

impl MountInfo {
    /// The server's host name, when the source names one (`user@host:/dir`, `host:/export`,
    /// `//host/share`).
    pub fn server(&self) -> Option<String> {
        let s = self.source.as_str();
        if let Some(rest) = s.strip_prefix("//") {
            return rest.split('/').next().map(str::to_string);
        }
        let (host_part, _) = s.split_once(':')?;
        let host = host_part.rsplit('@').next()?;
        (!host.is_empty()).then(|| host.to_string())
    }
}

fn unescape(field: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo octal.
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(u8::is_ascii_digit)
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 2 {
            continue;
        }
        out.push(MountInfo {
            mount_point: unescape(left[4]),
            fstype: right[0].to_string(),
            source: unescape(right[1]),
        });
    }
    out
}

/// The mount that holds `path` (which should be canonical): the last-mounted entry whose
/// mount point is the longest prefix of it.
pub fn mount_of(path: &Path, mounts: &[MountInfo]) -> Option<MountInfo> {
    let mut best: Option<&MountInfo> = None;
    for m in mounts {
        let mp = Path::new(&m.mount_point);
        if path.starts_with(mp) {
            let better = match best {
                Some(b) => mp.as_os_str().len() >= b.mount_point.len(),
                None => true,
            };
            if better {
                best = Some(m);
            }
        }
    }
    best.cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
60 22 0:50 / /mnt/share rw,nosuid,nodev,relatime shared:30 - fuse.sshfs root@127.0.0.1:/srv/p rw,user_id=0
61 22 0:51 / /mnt/with\\040space rw - nfs4 files:/export rw
";

    #[test]
    fn finds_the_deepest_mount() {
        let mounts = parse_mountinfo(SAMPLE);
        let m = mount_of(Path::new("/mnt/share/project"), &mounts).expect("found");
        assert_eq!(m.fstype, "fuse.sshfs");
        assert_eq!(m.server().as_deref(), Some("127.0.0.1"));
        let root = mount_of(Path::new("/home/x"), &mounts).expect("found");
        assert_eq!(root.fstype, "ext4");
        assert_eq!(root.server(), None);
        let nfs = mount_of(Path::new("/mnt/with space/a"), &mounts).expect("found");
        assert_eq!(nfs.server().as_deref(), Some("files"));
    }
}

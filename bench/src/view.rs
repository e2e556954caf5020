//! The `view` suite: files read, written and stat'ed through `cachesync mount`, against the
//! same files in the workspace directory. The rows' "× cachesync" column is then the direct
//! time over the view's: 0.8 means the view ran at 80% of the direct speed.

use std::fs;
use std::process::{Command, Stdio};

use anyhow::Result;

use crate::{tree, Bench, Link, Tool};

impl Bench {
    /// Sequential read and write of one big file and a warm `stat` of every file of a big
    /// tree, through the view and directly.
    pub(crate) fn view(&mut self) -> Result<()> {
        let suite = "view";
        let (size, files) = if self.args.quick {
            (128u64 << 20, 10_000)
        } else {
            (1u64 << 30, 100_000)
        };
        let link = Link::local(&self.work.path().join(suite))?;
        eprintln!("{suite}: one file of {size} bytes and {files} small files, local");
        tree::generate_one(&link.served.join("big.bin"), size, self.args.seed)?;
        tree::generate_small(&link.served.join("tree"), files, self.args.seed)?;
        let ws = self.work.path().join(suite).join("ws");
        let mut clone = self.cachesync();
        clone.arg("clone").arg(&link.src).arg(&ws).arg("--quiet");
        self.env(&mut clone);
        self.sample(&mut clone)?;
        let at = self.work.path().join(suite).join("view");
        // The view alone: its own syncs (every 300 s by default) would run amid the timings.
        Bench::configure(&ws, &[("view_sync_seconds", serde_json::json!(0))])?;
        let view = self.mount_view(&ws, &at)?;
        let mib = size >> 20;
        for r in 0..self.args.runs {
            for (tool, base) in [(Tool::Cachesync, &at), (Tool::Direct, &ws)] {
                let mut read = Command::new("dd");
                read.arg(format!("if={}", base.join("big.bin").display()))
                    .args(["of=/dev/null", "bs=1M"]);
                let s = self.sample(&mut read)?;
                self.push(suite, &format!("sequential read, {mib} MiB"), tool, s);
                let out = base.join(format!("written-{r}.bin"));
                let mut write = Command::new("dd");
                write
                    .args(["if=/dev/zero", "bs=1M", "conv=fsync"])
                    .arg(format!("of={}", out.display()))
                    .arg(format!("count={mib}"));
                let s = self.sample(&mut write)?;
                self.push(suite, &format!("sequential write, {mib} MiB"), tool, s);
                fs::remove_file(&out)?;
                let mut stat = Command::new("find");
                stat.arg(base.join("tree"))
                    .args(["-type", "f", "-printf", "%s\n"])
                    .stdout(Stdio::null());
                if r == 0 {
                    self.sample(&mut stat)?; // warm
                }
                let s = self.sample(&mut stat)?;
                self.push(
                    suite,
                    &format!("stat every file, {files} files, warm"),
                    tool,
                    s,
                );
            }
        }
        drop(view);
        Ok(())
    }
}

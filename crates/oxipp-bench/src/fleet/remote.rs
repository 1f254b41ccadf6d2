//! Helper processes that carry part of a fleet, for when one process runs out of descriptors.
//!
//! Protocol (JSON lines on the helper's stdout): first `{"uuids": [...]}`, then one
//! `{"id", "uuid"}` per registration reply, and after its stdin closes `{"stats": {...}}`.
//! A helper stops when its stdin closes, so it cannot outlive the parent, however the parent
//! dies.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::{json, Value};

use super::{Fleet, FleetOptions, Registered};
use crate::conn::Conn;

/// How long a helper may take to exit once told to stop.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The parent's handle on one helper process.
pub(super) struct Child {
    proc: std::process::Child,
    stdin: Option<ChildStdin>,
    lines: Option<BufReader<ChildStdout>>,
    reader: Option<JoinHandle<Option<Value>>>,
    tx: Sender<Registered>,
}

impl Child {
    pub fn spawn(opts: &FleetOptions, count: usize, tx: Sender<Registered>) -> Result<Child> {
        let exe = std::env::current_exe().context("locating oxipp-sim for a helper process")?;
        let mut cmd = Command::new(exe);
        cmd.args(&opts.child_args)
            .arg(format!("--threads={}", opts.threads))
            .args((!opts.verify).then_some("--no-verify"))
            .args(opts.heart_only.then_some("--heart-only"))
            .arg("fleet-worker")
            .arg(format!("--count={count}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut proc = cmd.spawn().context("starting a fleet helper process")?;
        let stdin = proc.stdin.take();
        let lines = proc.stdout.take().map(BufReader::new);
        Ok(Child {
            proc,
            stdin,
            lines,
            reader: None,
            tx,
        })
    }

    /// Reads the helper's uuids (its first line), then forwards its registrations from a
    /// reader thread.
    pub fn uuids(&mut self) -> Result<Vec<String>> {
        let mut lines = self
            .lines
            .take()
            .ok_or_else(|| anyhow!("helper already started"))?;
        let mut first = String::new();
        lines.read_line(&mut first)?;
        let v: Value = serde_json::from_str(&first)
            .with_context(|| format!("fleet helper's first line: {first:?}"))?;
        let Some(uuids) = v["uuids"].as_array() else {
            bail!("fleet helper failed: {}", v.get("error").unwrap_or(&v));
        };
        let uuids = uuids
            .iter()
            .filter_map(|u| u.as_str().map(String::from))
            .collect();
        let tx = self.tx.clone();
        self.reader = Some(std::thread::spawn(move || forward(lines, tx)));
        Ok(uuids)
    }

    /// Closes the helper's stdin and collects its final counters.
    pub fn stop(&mut self) -> Result<Value> {
        drop(self.stdin.take());
        let deadline = Instant::now() + STOP_GRACE;
        while self.proc.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                let _ = self.proc.kill();
                let _ = self.proc.wait();
                bail!(
                    "helper {} did not stop within {} s; killed",
                    self.proc.id(),
                    STOP_GRACE.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let stats = self.reader.take().and_then(|h| h.join().ok().flatten());
        stats.ok_or_else(|| anyhow!("helper {} exited without reporting", self.proc.id()))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if matches!(self.proc.try_wait(), Ok(None)) {
            let _ = self.proc.kill();
            let _ = self.proc.wait();
        }
    }
}

/// Forwards registration lines until the final stats line, which it returns.
fn forward(lines: BufReader<ChildStdout>, tx: Sender<Registered>) -> Option<Value> {
    for line in lines.lines() {
        let Ok(v) = serde_json::from_str::<Value>(&line.ok()?) else {
            continue;
        };
        if let Some(stats) = v.get("stats") {
            return Some(stats.clone());
        }
        if let (Some(id), Some(uuid)) = (v["id"].as_i64(), v["uuid"].as_str()) {
            let _ = tx.send(Registered {
                id,
                uuid: uuid.to_string(),
            });
        }
    }
    None
}

/// The `fleet-worker` subcommand: run `opts.engines` engines here until stdin closes.
pub fn serve_child(conn: &Conn, opts: &FleetOptions) -> Result<()> {
    let local = FleetOptions {
        processes: 1,
        ..opts.clone()
    };
    let mut fleet = Fleet::start(conn, &local)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", json!({ "uuids": fleet.uuids }))?;
    out.flush()?;
    let closed = Arc::new(AtomicBool::new(false));
    let flag = closed.clone();
    std::thread::spawn(move || {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        flag.store(true, Ordering::Relaxed);
    });
    while !closed.load(Ordering::Relaxed) {
        if let Ok(r) = fleet.registered.recv_timeout(Duration::from_millis(100)) {
            writeln!(out, "{}", json!({ "id": r.id, "uuid": r.uuid }))?;
            out.flush()?;
        }
    }
    fleet.stop();
    writeln!(out, "{}", json!({ "stats": fleet.stats.to_json() }))?;
    out.flush()?;
    Ok(())
}

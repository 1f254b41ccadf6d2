//! Many simulated engines served by a few threads, in one or a few processes.
//!
//! Thousands of engines cannot each have a thread on a 2-core machine, and the point is to load
//! the controller, not the scheduler of this process. Each worker thread owns a slice of the
//! engines and runs one `zmq_poll` loop over all of their sockets: pending registration
//! DEALERs, shell ROUTERs, and one heartbeat SUB whose pings are echoed from every engine's own
//! heartbeat DEALER (the controller keys pongs by that DEALER's identity, the engine uuid).
//!
//! Two limits shape the layout:
//! * libzmq caps a context at 1,023 sockets and the `zmq` crate offers no `set_max_sockets`
//!   (the workspace also denies the unsafe FFI call), so each worker splits its engines over
//!   several contexts ("shards") of at most `engines_per_context` engines. `zmq_poll` does not
//!   care which context a socket belongs to.
//! * An engine holds about six file descriptors. Where the hard `RLIMIT_NOFILE` cannot be
//!   raised (containers without CAP_SYS_RESOURCE), one process cannot hold 5,000 engines, so
//!   the fleet is split over helper processes (`oxipp-sim fleet-worker`, see [`remote`]).

mod remote;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context as _, Result};
use oxipp_wire::session::new_id;
use serde_json::{json, Value};

use crate::conn::Conn;
use crate::limits::FDS_PER_ENGINE;
pub use remote::serve_child;

/// At most this many errors are kept verbatim for the report.
const MAX_ERRORS_KEPT: usize = 10;
/// Descriptors kept free in each process for everything that is not an engine.
const FD_RESERVE: u64 = 512;

#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub engines: usize,
    /// Worker threads per process.
    pub threads: usize,
    pub engines_per_context: usize,
    /// Check the signature of every request (a controller that corrupts messages is caught;
    /// costs one HMAC per request).
    pub verify: bool,
    /// Engines connect only their heart after registering, no shell. A full engine holds
    /// four connections at the controller (pong, mux, task, broadcast leaf), so 5,000 of them
    /// need ~20,000 descriptors there, at or above the hard limit of small sandboxes (this
    /// one: 20,000); registration needs only the heart, so it can still be measured.
    pub heart_only: bool,
    /// Processes to spread the engines over (1 = all in this one).
    pub processes: usize,
    /// Arguments that let a helper process find the controller (`--profile-dir`, …).
    pub child_args: Vec<String>,
}

/// An engine whose `registration_reply` arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub id: i64,
    pub uuid: String,
}

/// Counters shared by all workers (helper processes report theirs when they stop).
#[derive(Default)]
pub struct FleetStats {
    pub replies: AtomicU64,
    pub rejected: AtomicU64,
    pub ignored: AtomicU64,
    pub pings: AtomicU64,
    pub registered: AtomicU64,
    pub registration_failed: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl FleetStats {
    fn error(&self, e: String) {
        if let Ok(mut v) = self.errors.lock() {
            if v.len() < MAX_ERRORS_KEPT {
                v.push(e);
            }
        }
    }

    fn counters(&self) -> [(&'static str, &AtomicU64); 6] {
        [
            ("replies", &self.replies),
            ("rejected_requests", &self.rejected),
            ("ignored_requests", &self.ignored),
            ("pings_seen", &self.pings),
            ("registration_replies_ok", &self.registered),
            ("registration_failed", &self.registration_failed),
        ]
    }

    pub fn to_json(&self) -> Value {
        let mut out = serde_json::Map::new();
        for (name, c) in self.counters() {
            out.insert(name.into(), json!(c.load(Ordering::Relaxed)));
        }
        let errors = self.errors.lock().map(|v| v.clone()).unwrap_or_default();
        out.insert("errors".into(), json!(errors));
        Value::Object(out)
    }

    /// Adds the counters of a helper process (its `to_json()` output).
    fn absorb(&self, other: &Value) {
        for (name, c) in self.counters() {
            c.fetch_add(other[name].as_u64().unwrap_or(0), Ordering::Relaxed);
        }
        for e in other["errors"].as_array().into_iter().flatten() {
            self.error(e.as_str().unwrap_or_default().to_string());
        }
    }
}

/// A running fleet of simulated engines. Dropping it stops the workers and helper processes.
pub struct Fleet {
    pub uuids: Vec<String>,
    pub stats: Arc<FleetStats>,
    pub registered: Receiver<Registered>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    children: Vec<remote::Child>,
}

impl Fleet {
    /// Starts the engines; every engine sends its `registration_request` immediately, as a
    /// fleet of engines launched together would.
    pub fn start(conn: &Conn, opts: &FleetOptions) -> Result<Fleet> {
        let stats = Arc::new(FleetStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, registered) = mpsc::channel();
        let shares = split(opts.engines, opts.processes);
        // Helpers first: they take a moment to start, and the clock is already running.
        let mut children = Vec::new();
        for &count in &shares[1..] {
            children.push(remote::Child::spawn(opts, count, tx.clone())?);
        }
        let local: Vec<String> = (0..shares[0]).map(|_| new_id()).collect();
        let threads = opts.threads.clamp(1, local.len().max(1));
        let mut workers = Vec::with_capacity(threads);
        for t in 0..threads {
            let worker = worker::Worker {
                conn: conn.clone(),
                uuids: local.iter().skip(t).step_by(threads).cloned().collect(),
                opts: opts.clone(),
                stats: stats.clone(),
                stop: stop.clone(),
                tx: tx.clone(),
            };
            let h = std::thread::Builder::new()
                .name(format!("sim-engines-{t}"))
                .spawn(move || worker.run())
                .context("spawning an engine worker thread")?;
            workers.push(h);
        }
        let mut uuids = local;
        for c in &mut children {
            uuids.extend(c.uuids()?);
        }
        Ok(Fleet {
            uuids,
            stats,
            registered,
            stop,
            workers,
            children,
        })
    }

    /// Stops all workers and helpers and closes every socket.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        for mut c in self.children.drain(..) {
            match c.stop() {
                Ok(stats) => self.stats.absorb(&stats),
                Err(e) => self.stats.error(format!("fleet helper process: {e:#}")),
            }
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Engines per process, the first share being this process's.
fn split(engines: usize, processes: usize) -> Vec<usize> {
    let p = processes.clamp(1, engines.max(1));
    (0..p)
        .map(|i| engines / p + usize::from(i < engines % p))
        .collect()
}

/// A thread count that keeps polling sets small without flooding two cores with threads.
pub fn default_threads(engines_per_process: usize) -> usize {
    engines_per_process.div_ceil(1000).clamp(1, 4)
}

/// How many processes `engines` need so that each stays under the descriptor limit `nofile`.
pub fn default_processes(engines: usize, nofile: u64) -> usize {
    let per_process = (nofile.saturating_sub(FD_RESERVE) / FDS_PER_ENGINE).max(1);
    (engines as u64).div_ceil(per_process).max(1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        assert_eq!(split(5000, 3), vec![1667, 1667, 1666]);
        assert_eq!(split(2, 5), vec![1, 1]);
        assert_eq!(split(0, 1), vec![0]);
    }

    #[test]
    fn processes_follow_the_fd_limit() {
        assert_eq!(default_processes(5000, 20_000), 3);
        assert_eq!(default_processes(1000, 20_000), 1);
        assert_eq!(default_processes(5000, 1_000_000), 1);
    }

    #[test]
    fn stats_absorb_helper_counters() {
        let a = FleetStats::default();
        a.replies.store(2, Ordering::Relaxed);
        let b = FleetStats::default();
        b.replies.store(3, Ordering::Relaxed);
        b.error("boom".into());
        a.absorb(&b.to_json());
        assert_eq!(a.to_json()["replies"], 5);
        assert_eq!(a.to_json()["errors"][0], "boom");
    }
}

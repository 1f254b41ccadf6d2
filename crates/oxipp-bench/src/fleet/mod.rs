//! Many simulated engines served by a few threads, in one or a few processes.
//!
//! Thousands of engines cannot each have a thread on a 2-core machine, and the point is to load
//! the controller, not the scheduler of this process. Each worker thread owns a slice of the
//! engines and drives all of their [`oxipp_zmtp`] sockets from one epoll loop: pending
//! registration DEALERs, shell ROUTERs, heart DEALERs, and one heartbeat SUB whose pings are
//! echoed from every engine's own heart DEALER (the controller keys pongs by that DEALER's
//! identity, the engine uuid). See [`worker`].
//!
//! An engine holds up to six file descriptors ([`crate::limits`]). Where the hard
//! `RLIMIT_NOFILE` cannot be raised (containers without CAP_SYS_RESOURCE), one process cannot
//! hold 5,000 engines, so the fleet is split over helper processes (`oxipp-sim fleet-worker`,
//! see [`remote`]).

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
use crate::limits::fds_per_engine;
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

/// A thread count that spreads large fleets (registration, ping echoes) without flooding two
/// cores with threads.
pub fn default_threads(engines_per_process: usize) -> usize {
    engines_per_process.div_ceil(1000).clamp(1, 4)
}

/// How many processes `engines` need so that each stays under the descriptor limit `nofile`.
pub fn default_processes(engines: usize, heart_only: bool, nofile: u64) -> usize {
    let per_process = (nofile.saturating_sub(FD_RESERVE) / fds_per_engine(heart_only)).max(1);
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
        assert_eq!(default_processes(5000, false, 20_000), 2);
        assert_eq!(default_processes(5000, true, 20_000), 1);
        assert_eq!(default_processes(1000, false, 20_000), 1);
        assert_eq!(default_processes(5000, false, 1_000_000), 1);
    }

    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use oxipp_wire::msg_types::{
        APPLY_REPLY, APPLY_REQUEST, REGISTRATION_REPLY, REGISTRATION_REQUEST,
        UNREGISTRATION_REQUEST,
    };
    use oxipp_wire::{Message, Session, Signer};
    use oxipp_zmtp::{Options, Socket, SocketType};

    /// A stand-in for the controller's engine-facing sockets, bound on loopback.
    struct FakeController {
        registration: Socket,
        mux: Socket,
        task: Socket,
        leaf: Socket,
        ping: Socket,
        pong: Socket,
    }

    fn bound(kind: SocketType, identity: &[u8]) -> (Socket, u16) {
        let opts = Options {
            identity: Bytes::copy_from_slice(identity),
            ..Options::default()
        };
        let mut s = Socket::new(kind, opts).unwrap();
        let port = s.bind("tcp://127.0.0.1:0").unwrap();
        (s, port)
    }

    impl FakeController {
        fn start(key: &str) -> (FakeController, Conn) {
            let (registration, reg) = bound(SocketType::Router, b"");
            let (mux, mux_port) = bound(SocketType::Router, b"mux");
            let (task, task_port) = bound(SocketType::Router, b"task");
            let (leaf, leaf_port) = bound(SocketType::Router, b"leaf");
            let (ping, ping_port) = bound(SocketType::Pub, b"");
            let (pong, pong_port) = bound(SocketType::Router, b"");
            let common = json!({
                "ssh": "", "interface": "tcp://127.0.0.1", "key": key,
                "curve_serverkey": null, "location": "localhost", "pack": "json",
                "unpack": "json", "signature_scheme": "hmac-sha256",
            });
            let mut engine = common.clone();
            for (k, v) in [
                ("registration", json!(reg)),
                ("control", json!(1)),
                ("mux", json!(mux_port)),
                ("task", json!(task_port)),
                ("iopub", json!(1)),
                ("hb_ping", json!(ping_port)),
                ("hb_pong", json!(pong_port)),
                ("broadcast", json!([leaf_port])),
            ] {
                engine[k] = v;
            }
            let mut client = common;
            for (k, v) in [
                ("registration", json!(1)),
                ("control", json!(1)),
                ("mux", json!(1)),
                ("task", json!(1)),
                ("task_scheme", json!("leastload")),
                ("iopub", json!(1)),
                ("notification", json!(1)),
                ("broadcast", json!(1)),
            ] {
                client[k] = v;
            }
            let conn = Conn {
                client: serde_json::from_value(client).unwrap(),
                engine: serde_json::from_value(engine).unwrap(),
                signer: Signer::new(key.as_bytes(), "hmac-sha256").unwrap(),
            };
            let fake = FakeController {
                registration,
                mux,
                task,
                leaf,
                ping,
                pong,
            };
            (fake, conn)
        }

        fn sockets(&mut self) -> [&mut Socket; 6] {
            [
                &mut self.registration,
                &mut self.mux,
                &mut self.task,
                &mut self.leaf,
                &mut self.ping,
                &mut self.pong,
            ]
        }

        /// Drives every socket until `done` says so (panics after 10 s); `done` sees each
        /// message received as (socket index, frames).
        fn run_until(
            &mut self,
            mut done: impl FnMut(&mut Self, Option<(usize, Vec<Bytes>)>) -> bool,
        ) {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let mut got = Vec::new();
                for (i, s) in self.sockets().into_iter().enumerate() {
                    while let Some(m) = s.recv() {
                        got.push((i, m));
                    }
                    while s.event().is_some() {}
                }
                for m in got {
                    if done(self, Some(m)) {
                        return;
                    }
                }
                if done(self, None) {
                    return;
                }
                for s in self.sockets() {
                    s.flush();
                }
                assert!(Instant::now() < deadline, "fake controller: timed out");
                let socks = self.sockets();
                let refs: Vec<&Socket> = socks.iter().map(|s| &**s).collect();
                oxipp_zmtp::poll(&refs, Some(Duration::from_millis(10))).unwrap();
            }
        }
    }

    /// Two engines against a fake controller: they register (identity = uuid), connect
    /// their shells to mux, task and the leaf, answer a request, and echo pings from their
    /// hearts; stopping the fleet unregisters them.
    #[test]
    fn a_fleet_registers_answers_and_echoes_pings() {
        let (mut ctl, conn) = FakeController::start("secret");
        let hub = Session::with_random_id(conn.signer.clone());
        let opts = FleetOptions {
            engines: 2,
            threads: 1,
            verify: true,
            heart_only: false,
            processes: 1,
            child_args: vec![],
        };
        let mut fleet = Fleet::start(&conn, &opts).unwrap();
        let mut ids = 0;
        ctl.run_until(|ctl, m| {
            if let Some((0, frames)) = m {
                let ident = frames[0].clone();
                let req = Message::parse(frames[1..].to_vec()).unwrap();
                assert_eq!(req.header_fields().unwrap().msg_type, REGISTRATION_REQUEST);
                assert_eq!(
                    req.content_map().unwrap()["uuid"],
                    *String::from_utf8_lossy(&ident)
                );
                ids += 1;
                let rep = hub.build(
                    vec![ident],
                    REGISTRATION_REPLY,
                    Some(&req.header),
                    &json!({}),
                    &json!({"status": "ok", "id": ids}),
                    vec![],
                );
                ctl.registration.send(rep.into_frames()).unwrap();
            }
            ids == 2
        });
        let mut uuids = fleet.uuids.clone();
        uuids.sort();
        // every shell reaches mux, task and the leaf; every heart the pong port
        ctl.run_until(|ctl, _| {
            uuids.iter().all(|u| {
                let u = u.as_bytes();
                ctl.mux.has_peer(u)
                    && ctl.task.has_peer(u)
                    && ctl.leaf.has_peer(u)
                    && ctl.pong.has_peer(u)
            })
        });
        let mut registered: Vec<String> = fleet.registered.try_iter().map(|r| r.uuid).collect();
        registered.sort();
        assert_eq!(registered, uuids);

        let client = Session::with_random_id(conn.signer.clone());
        let mut waiting = std::collections::HashSet::new();
        for u in &uuids {
            let route = vec![Bytes::from(u.clone()), Bytes::from_static(b"client-1")];
            let req = client.build(route, APPLY_REQUEST, None, &json!({}), &json!({}), vec![]);
            waiting.insert(req.header_fields().unwrap().msg_id);
            ctl.mux.send(req.into_frames()).unwrap();
        }
        let mut pongs = std::collections::HashSet::new();
        let mut next_ping = Instant::now();
        ctl.run_until(|ctl, m| {
            match m {
                Some((1, frames)) => {
                    assert_eq!(frames[1], Bytes::from_static(b"client-1"));
                    let rep = Message::parse(frames[1..].to_vec()).unwrap();
                    assert_eq!(rep.header_fields().unwrap().msg_type, APPLY_REPLY);
                    assert!(waiting.remove(&rep.parent_id().unwrap().msg_id.unwrap()));
                }
                Some((5, frames)) => {
                    assert_eq!(frames[1], Bytes::from_static(b"ping-1"));
                    pongs.insert(frames[0].clone());
                }
                Some((i, frames)) => panic!("unexpected message on socket {i}: {frames:?}"),
                None => {}
            }
            // (a SUB's subscription takes a moment to arrive: ping until answered)
            if Instant::now() >= next_ping {
                next_ping += Duration::from_millis(50);
                ctl.ping.send(vec![Bytes::from_static(b"ping-1")]).unwrap();
            }
            waiting.is_empty() && pongs.len() == 2
        });
        let stats = fleet.stats.to_json();
        assert_eq!(stats["replies"], 2);
        assert_eq!(stats["errors"], json!([]));

        // stopping sends one unregistration request per engine
        let stopper = std::thread::spawn(move || {
            fleet.stop();
            fleet
        });
        let mut unregistered = 0;
        ctl.run_until(|_, m| {
            if let Some((0, frames)) = m {
                let req = Message::parse(frames[1..].to_vec()).unwrap();
                assert_eq!(
                    req.header_fields().unwrap().msg_type,
                    UNREGISTRATION_REQUEST
                );
                unregistered += 1;
            }
            unregistered == 2
        });
        let fleet = stopper.join().unwrap();
        assert_eq!(fleet.stats.to_json()["registration_replies_ok"], 2);
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

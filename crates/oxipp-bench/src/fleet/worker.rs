//! One engine worker thread: a single `zmq_poll` loop over the sockets of many engines.
//!
//! Rebuilding the poll set costs O(engines) per wake-up, which is fine for a few thousand
//! engines per thread; the poll timeout is long so that an idle fleet costs little CPU.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use oxipp_wire::sockets::{
    new_socket, recv_frames, send_frames, Context, Socket, SocketSpec, SocketType,
};
use oxipp_wire::Frame;

use super::{FleetOptions, FleetStats, Registered};
use crate::conn::Conn;
use crate::engine::{EngineCore, Outcome};

/// Messages drained from one socket before the loop moves on, so one busy engine cannot
/// starve heartbeats of the others.
const DRAIN_BATCH: usize = 256;
/// Poll timeout; bounds how long `stop()` waits for a worker. Every wake-up scans all sockets,
/// so a short timeout would make an idle 5,000-engine fleet burn a noticeable share of a core.
const POLL_MS: i64 = 250;
/// Request coalescing: after a wake-up that answered fewer requests than this, pause briefly
/// so the next one finds a batch. Each wake-up costs a `zmq_poll` over every engine socket and
/// a context switch, which on two shared cores is CPU taken from the controller under test.
/// The pause bounds what one engine can do (~1 task per 60 µs), far above the no-op rates a
/// controller reaches with hwm=1 and tens of engines.
const COALESCE_BELOW: usize = 8;
const COALESCE_PAUSE: std::time::Duration = std::time::Duration::from_micros(50);
/// The same while engines are still registering: replies trickle in one by one and each
/// wake-up scans every pending socket, which made registering 1,000 engines cost the simulator
/// over a second of CPU. 5 ms is far below the heartbeat period that dominates registration.
const REGISTERING_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

enum State {
    Registering(Socket),
    Ready {
        id: i64,
        /// None for heart-only engines ([`FleetOptions::heart_only`]).
        shell: Option<Socket>,
        heart: Socket,
    },
    Failed,
}

struct Slot {
    core: EngineCore,
    shard: usize,
    state: State,
    /// Not known to be drained (see [`poll`]).
    active: bool,
}

pub(super) struct Worker {
    pub conn: Conn,
    pub uuids: Vec<String>,
    pub opts: FleetOptions,
    pub stats: Arc<FleetStats>,
    pub stop: Arc<AtomicBool>,
    pub tx: Sender<Registered>,
}

impl Worker {
    pub fn run(self) {
        if let Err(e) = self.serve() {
            self.stats.error(format!("engine worker: {e:#}"));
        }
    }

    fn serve(&self) -> Result<()> {
        let per = self.opts.engines_per_context.max(1);
        let shards: Vec<Context> = (0..self.uuids.len().div_ceil(per).max(1))
            .map(|_| Context::new())
            .collect();
        let sub = new_socket(
            &shards[0],
            SocketType::SUB,
            &SocketSpec {
                identity: None,
                subscribe_all: true,
            },
        )?;
        sub.set_linger(0)?;
        sub.connect(&self.conn.engine_url(self.conn.engine.hb_ping))?;
        let mut slots = Vec::with_capacity(self.uuids.len());
        for (i, uuid) in self.uuids.iter().enumerate() {
            let core = EngineCore::new(uuid.clone(), self.conn.signer.clone(), self.opts.verify);
            let state = match self.start_registration(&shards[i / per], &core) {
                Ok(s) => State::Registering(s),
                Err(e) => self.failed(format!("engine {uuid}: {e:#}")),
            };
            slots.push(Slot {
                core,
                shard: i / per,
                state,
                active: true,
            });
        }
        let mut ready: Vec<usize> = Vec::new();
        let mut sub_active = true;
        while !self.stop.load(Ordering::Relaxed) {
            let (ping_ready, readable) = poll(&sub, sub_active, &slots)?;
            sub_active = false;
            if ping_ready {
                self.echo_pings(&sub, &slots, &ready);
            }
            let mut answered = 0;
            let mut registered = 0;
            for i in readable {
                let (became_ready, n) = self.serve_slot(&mut slots[i], &shards);
                if became_ready {
                    ready.push(i);
                    registered += 1;
                }
                answered += n;
            }
            if registered > 0 && ready.len() < slots.len() {
                std::thread::sleep(REGISTERING_PAUSE);
            } else if answered > 0 && answered < COALESCE_BELOW {
                std::thread::sleep(COALESCE_PAUSE);
            }
        }
        drop(sub);
        self.leave(&shards[0], &slots)
    }

    /// Says goodbye for every registered engine, as stock nannies do when engines exit, so a
    /// controller reused for another workload is not left routing tasks to dead engines.
    fn leave(&self, ctx: &Context, slots: &[Slot]) -> Result<()> {
        let dealer = new_socket(ctx, SocketType::DEALER, &SocketSpec::default())?;
        dealer.connect(&self.conn.engine_url(self.conn.engine.registration))?;
        for slot in slots {
            if let State::Ready { id, .. } = slot.state {
                send_frames(&dealer, slot.core.unregistration_request(id).into_frames())?;
            }
        }
        // Closing waits up to the socket's linger (1 s) for these to be flushed.
        Ok(())
    }

    fn failed(&self, e: String) -> State {
        self.stats
            .registration_failed
            .fetch_add(1, Ordering::Relaxed);
        self.stats.error(e);
        State::Failed
    }

    fn start_registration(&self, ctx: &Context, core: &EngineCore) -> Result<Socket> {
        let spec = SocketSpec {
            identity: Some(core.uuid.as_bytes()),
            subscribe_all: false,
        };
        let dealer = new_socket(ctx, SocketType::DEALER, &spec)?;
        dealer.set_linger(0)?;
        dealer.connect(&self.conn.engine_url(self.conn.engine.registration))?;
        send_frames(&dealer, core.registration_request().into_frames())?;
        Ok(dealer)
    }

    /// Echoes each ping frame, unchanged, from every registered engine's heart.
    fn echo_pings(&self, sub: &Socket, slots: &[Slot], ready: &[usize]) {
        while let Ok(ping) = recv_frames(sub, true) {
            self.stats.pings.fetch_add(1, Ordering::Relaxed);
            for &i in ready {
                if let State::Ready { heart, .. } = &slots[i].state {
                    if let Err(e) = send_frames(heart, &ping) {
                        self.stats.error(format!("heartbeat echo: {e}"));
                    }
                }
            }
        }
    }

    /// Handles everything readable on one engine's socket; returns whether the engine has just
    /// finished registering, and how many requests it answered.
    fn serve_slot(&self, slot: &mut Slot, shards: &[Context]) -> (bool, usize) {
        match &slot.state {
            State::Registering(dealer) => {
                let Ok(frames) = recv_frames(dealer, true) else {
                    slot.active = false;
                    return (false, 0);
                };
                // the new shell socket has not been looked at yet
                slot.active = true;
                slot.state = match slot.core.registration_result(frames) {
                    Ok(id) => match self.connect_engine(&shards[slot.shard], &slot.core, id) {
                        Ok(state) => {
                            self.stats.registered.fetch_add(1, Ordering::Relaxed);
                            let _ = self.tx.send(Registered {
                                id,
                                uuid: slot.core.uuid.clone(),
                            });
                            state
                        }
                        Err(e) => self.failed(format!("engine {}: {e:#}", slot.core.uuid)),
                    },
                    Err(e) => self.failed(format!("engine {}: {e}", slot.core.uuid)),
                };
                (matches!(slot.state, State::Ready { .. }), 0)
            }
            State::Ready {
                shell: Some(shell), ..
            } => {
                let mut n = 0;
                // Drained to EAGAIN (the last operation on the socket, so its descriptor
                // is armed again) unless the batch limit stopped us first.
                slot.active = true;
                while n < DRAIN_BATCH {
                    let Ok(frames) = recv_frames(shell, true) else {
                        slot.active = false;
                        break;
                    };
                    self.answer(shell, &mut slot.core, frames);
                    n += 1;
                }
                (false, n)
            }
            State::Ready { shell: None, .. } | State::Failed => (false, 0),
        }
    }

    fn answer(&self, shell: &Socket, core: &mut EngineCore, frames: Vec<Frame>) {
        match core.handle_shell(frames) {
            Outcome::Reply(m) => match send_frames(shell, m.into_frames()) {
                Ok(()) => {
                    self.stats.replies.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => self.stats.error(format!("sending a reply: {e}")),
            },
            Outcome::Ignored => {
                self.stats.ignored.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Rejected => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// After `registration_reply`: the shell ROUTER joins mux, task and one broadcast leaf,
    /// and the heart connects to the pong port, all with the engine uuid as identity (stock
    /// engines do the same, and the controller routes to them by it). Heart-only engines skip
    /// the shell: registration completes on the first heartbeat and never looks at it.
    fn connect_engine(&self, ctx: &Context, core: &EngineCore, id: i64) -> Result<State> {
        let e = &self.conn.engine;
        let spec = SocketSpec {
            identity: Some(core.uuid.as_bytes()),
            subscribe_all: false,
        };
        let shell = if self.opts.heart_only {
            None
        } else {
            let shell = new_socket(ctx, SocketType::ROUTER, &spec)?;
            shell.set_linger(0)?;
            let leaf = e.broadcast[id.rem_euclid(e.broadcast.len() as i64) as usize];
            for port in [e.mux, e.task, leaf] {
                shell.connect(&self.conn.engine_url(port))?;
            }
            Some(shell)
        };
        let heart = new_socket(ctx, SocketType::DEALER, &spec)?;
        heart.set_linger(0)?;
        heart.connect(&self.conn.engine_url(e.hb_pong))?;
        Ok(State::Ready { id, shell, heart })
    }
}

/// Which sockets to read: one poll(2) over the libzmq signalling descriptors (`ZMQ_FD`) of
/// the sockets known to be drained, plus every socket not known to be drained (`active`). A
/// `zmq_poll` over the sockets themselves asks each one for its events, a system call per
/// socket per wake-up, which for 16 engines cost the simulator more CPU per task than the
/// controller spends. Blocks (up to [`POLL_MS`]) only when everything is drained.
fn poll(sub: &Socket, sub_active: bool, slots: &[Slot]) -> Result<(bool, Vec<usize>)> {
    let mut index = Vec::with_capacity(slots.len());
    let mut items = Vec::with_capacity(slots.len() + 1);
    items.push(zmq::PollItem::from_fd(sub.get_fd()?, zmq::POLLIN));
    let mut busy = sub_active;
    for (i, slot) in slots.iter().enumerate() {
        let sock = match &slot.state {
            State::Registering(s) => s,
            State::Ready {
                shell: Some(shell), ..
            } => shell,
            State::Ready { shell: None, .. } | State::Failed => continue,
        };
        busy |= slot.active;
        items.push(zmq::PollItem::from_fd(sock.get_fd()?, zmq::POLLIN));
        index.push(i);
    }
    zmq::poll(&mut items, if busy { 0 } else { POLL_MS }).context("poll in an engine worker")?;
    let ping_ready = sub_active || items[0].is_readable();
    let readable = items[1..]
        .iter()
        .zip(&index)
        .filter(|(item, &i)| slots[i].active || item.is_readable())
        .map(|(_, &i)| i)
        .collect();
    Ok((ping_ready, readable))
}

//! One engine worker thread: one epoll loop over the sockets of many engines.
//!
//! Every socket is an [`oxipp_zmtp::Socket`], whose descriptor is an epoll instance that is
//! readable when the socket has IO to do. The worker adds those descriptors to an epoll
//! instance of its own (epoll instances nest), with the socket's place as the event's data,
//! so a wake-up costs O(sockets ready), not O(engines): a thread can carry thousands of
//! engines. Each pass drains every ready socket (answering requests and echoing pings, which
//! only queues), then flushes each socket that has output once: one `writev` per connection
//! per pass.
//!
//! Timers (reconnects, handshake expiry) act only inside a socket's IO pass, so every
//! [`SWEEP`] the worker also serves the sockets whose timer is due.

use std::mem;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use oxipp_wire::Frame;
use oxipp_zmtp::{Options, Socket, SocketType};
use rustix::buffer::spare_capacity;
use rustix::event::{epoll, Timespec};

use super::{FleetOptions, FleetStats, Registered};
use crate::conn::Conn;
use crate::engine::{EngineCore, Outcome};
use crate::sock::{linger, take};

/// Messages taken from one shell before the loop moves on, so one busy engine cannot starve
/// the heartbeats of the others (the rest is taken in the next pass).
const DRAIN_BATCH: usize = 256;
/// How often sockets with a due timer are served, and the longest wait (bounds how long
/// `stop()` waits for a worker). Each sweep looks at every socket's timer: O(engines), so
/// not too often.
const SWEEP: Duration = Duration::from_millis(100);
/// Ready sockets fetched per `epoll_wait`.
const MAX_EVENTS: usize = 1024;
/// Request coalescing: after a pass that answered fewer requests than this, pause briefly so
/// the next one finds a batch. Each pass costs a few system calls and a context switch,
/// which on two shared cores is CPU taken from the controller under test. The pause bounds
/// what one engine can do (~1 task per 50 µs), far above the no-op rates a controller
/// reaches with hwm=1 and tens of engines.
const COALESCE_BELOW: usize = 8;
const COALESCE_PAUSE: Duration = Duration::from_micros(50);
/// How long the unregistration requests sent at the end may take to leave.
const LEAVE_LINGER: Duration = Duration::from_secs(1);

/// Outer-epoll data of the heartbeat SUB; engine sockets are `slot << 2 | role`.
const SUB_TOKEN: u64 = u64::MAX;

/// Which of an engine's sockets an outer-epoll event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Registration = 0,
    Shell = 1,
    Heart = 2,
}

fn token(slot: usize, role: Role) -> u64 {
    ((slot as u64) << 2) | role as u64
}

fn untoken(t: u64) -> (usize, Role) {
    let role = match t & 3 {
        0 => Role::Registration,
        1 => Role::Shell,
        _ => Role::Heart,
    };
    ((t >> 2) as usize, role)
}

/// (sockets boxed: one is ~600 bytes, and most slots are walked only by the sweep)
enum State {
    /// The registration DEALER, and the engine's sockets made but not yet connected: made
    /// up front because each socket zero-fills a 256 KiB read buffer (on its first read), which fresh
    /// memory gets for free but memory freed by the registration DEALERs would pay a memset
    /// and page faults for (a third of the simulator's CPU registering 5,000 engines).
    Registering {
        dealer: Box<Socket>,
        shell: Option<Box<Socket>>,
        heart: Box<Socket>,
    },
    Ready {
        id: i64,
        /// None for heart-only engines ([`FleetOptions::heart_only`]).
        shell: Option<Box<Socket>>,
        heart: Box<Socket>,
    },
    Failed,
}

struct Slot {
    core: EngineCore,
    state: State,
}

impl Slot {
    fn socket(&mut self, role: Role) -> Option<&mut Socket> {
        match (&mut self.state, role) {
            (State::Registering { dealer, .. }, Role::Registration) => Some(dealer),
            (State::Ready { shell, .. }, Role::Shell) => shell.as_deref_mut(),
            (State::Ready { heart, .. }, Role::Heart) => Some(heart),
            _ => None,
        }
    }
}

pub(super) struct Worker {
    pub conn: Conn,
    pub uuids: Vec<String>,
    pub opts: FleetOptions,
    pub stats: Arc<FleetStats>,
    pub stop: Arc<AtomicBool>,
    pub tx: Sender<Registered>,
}

/// The sockets one worker drives, and what its loop keeps between passes.
struct Engines {
    /// The outer epoll instance: every socket's descriptor, keyed by [`token`].
    epoll: OwnedFd,
    sub: Socket,
    slots: Vec<Slot>,
    /// Slots of registered engines, whose hearts echo the pings.
    ready: Vec<usize>,
    /// Sockets sent on since the last flush (tokens; duplicates are harmless).
    dirty: Vec<u64>,
    /// Sockets to serve in the next pass whatever epoll says: left at the batch limit with
    /// messages decoded, or with a due timer.
    again: Vec<u64>,
}

impl Engines {
    fn watch(epoll: &OwnedFd, sock: &Socket, t: u64) -> Result<()> {
        epoll::add(
            epoll,
            sock,
            epoll::EventData::new_u64(t),
            epoll::EventFlags::IN,
        )
        .context("adding a socket to the worker's epoll")
    }

    fn socket(&mut self, t: u64) -> Option<&mut Socket> {
        if t == SUB_TOKEN {
            return Some(&mut self.sub);
        }
        let (i, role) = untoken(t);
        self.slots.get_mut(i)?.socket(role)
    }

    /// One flush per socket with output.
    fn flush(&mut self) {
        let mut dirty = mem::take(&mut self.dirty);
        for &t in &dirty {
            if let Some(s) = self.socket(t) {
                s.flush();
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }

    /// Queues sockets whose timer (reconnect, handshake expiry) is due for the next pass.
    fn sweep(&mut self) {
        let due = |s: &Socket| s.timeout().is_some_and(|t| t.is_zero());
        if due(&self.sub) {
            self.again.push(SUB_TOKEN);
        }
        for (i, slot) in self.slots.iter().enumerate() {
            match &slot.state {
                State::Registering { dealer, .. } => {
                    if due(dealer) {
                        self.again.push(token(i, Role::Registration));
                    }
                }
                State::Ready { shell, heart, .. } => {
                    if shell.as_deref().is_some_and(due) {
                        self.again.push(token(i, Role::Shell));
                    }
                    if due(heart) {
                        self.again.push(token(i, Role::Heart));
                    }
                }
                State::Failed => {}
            }
        }
    }
}

impl Worker {
    pub fn run(self) {
        if let Err(e) = self.serve() {
            self.stats.error(format!("engine worker: {e:#}"));
        }
    }

    fn serve(&self) -> Result<()> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC).context("epoll_create")?;
        let mut sub = Socket::new(SocketType::Sub, Options::default())?;
        sub.subscribe(b"");
        sub.connect(&self.conn.engine_url(self.conn.engine.hb_ping))?;
        Engines::watch(&epoll, &sub, SUB_TOKEN)?;
        let mut slots = Vec::with_capacity(self.uuids.len());
        for (i, uuid) in self.uuids.iter().enumerate() {
            let core = EngineCore::new(uuid.clone(), self.conn.signer.clone(), self.opts.verify);
            let state = match self.start_registration(&epoll, i, &core) {
                Ok(s) => s,
                Err(e) => self.failed(format!("engine {uuid}: {e:#}")),
            };
            slots.push(Slot { core, state });
        }
        let mut w = Engines {
            epoll,
            sub,
            slots,
            ready: Vec::new(),
            dirty: Vec::new(),
            again: Vec::new(),
        };
        let mut events: Vec<epoll::Event> = Vec::with_capacity(MAX_EVENTS);
        let mut tokens: Vec<u64> = Vec::new();
        let mut next_sweep = Instant::now() + SWEEP;
        while !self.stop.load(Ordering::Relaxed) {
            let wait = if w.again.is_empty() {
                next_sweep.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            let ts = Timespec {
                tv_sec: wait.as_secs() as i64,
                tv_nsec: i64::from(wait.subsec_nanos()),
            };
            events.clear();
            match epoll::wait(&w.epoll, spare_capacity(&mut events), Some(&ts)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e).context("epoll_wait in an engine worker"),
            }
            tokens.clear();
            tokens.extend(events.iter().map(|e| e.data.u64()));
            tokens.append(&mut w.again);
            if tokens.len() > events.len() {
                tokens.sort_unstable();
                tokens.dedup();
            }
            let mut answered = 0;
            for &t in &tokens {
                answered += self.serve_socket(&mut w, t);
            }
            w.flush();
            let now = Instant::now();
            if now >= next_sweep {
                w.sweep();
                next_sweep = now + SWEEP;
            }
            if answered > 0 && answered < COALESCE_BELOW {
                std::thread::sleep(COALESCE_PAUSE);
            }
        }
        self.leave(&w.slots);
        Ok(())
    }

    /// Says goodbye for every registered engine, as stock nannies do when engines exit, so a
    /// controller reused for another workload is not left routing tasks to dead engines.
    fn leave(&self, slots: &[Slot]) {
        let r = (|| -> Result<()> {
            let mut dealer = Socket::new(SocketType::Dealer, Options::default())?;
            dealer.connect(&self.conn.engine_url(self.conn.engine.registration))?;
            let mut any = false;
            for slot in slots {
                if let State::Ready { id, .. } = slot.state {
                    dealer.send(slot.core.unregistration_request(id).into_frames())?;
                    any = true;
                }
            }
            if any && !linger(&mut dealer, LEAVE_LINGER) {
                anyhow::bail!("unregistration requests not sent within {LEAVE_LINGER:?}");
            }
            Ok(())
        })();
        if let Err(e) = r {
            self.stats.error(format!("engine worker leaving: {e:#}"));
        }
    }

    fn failed(&self, e: String) -> State {
        self.stats
            .registration_failed
            .fetch_add(1, Ordering::Relaxed);
        self.stats.error(e);
        State::Failed
    }

    fn options(core: &EngineCore) -> Options {
        Options {
            identity: Bytes::copy_from_slice(core.uuid.as_bytes()),
            ..Options::default()
        }
    }

    /// A DEALER with the engine's identity, its `registration_request` queued (it goes out
    /// once the connection is up, from the loop's IO pass); the engine's other sockets are
    /// made now and connected once it has registered (see [`State::Registering`]).
    fn start_registration(&self, epoll: &OwnedFd, i: usize, core: &EngineCore) -> Result<State> {
        let mut dealer = Socket::new(SocketType::Dealer, Self::options(core))?;
        dealer.connect(&self.conn.engine_url(self.conn.engine.registration))?;
        dealer.send(core.registration_request().into_frames())?;
        let shell = if self.opts.heart_only {
            None
        } else {
            let shell = Socket::new(SocketType::Router, Self::options(core))?;
            Some(Box::new(shell))
        };
        let heart = Socket::new(SocketType::Dealer, Self::options(core))?;
        Engines::watch(epoll, &dealer, token(i, Role::Registration))?;
        Ok(State::Registering {
            dealer: Box::new(dealer),
            shell,
            heart: Box::new(heart),
        })
    }

    /// Does one socket's IO and handles what it received; returns the requests answered.
    fn serve_socket(&self, w: &mut Engines, t: u64) -> usize {
        if t == SUB_TOKEN {
            self.echo_pings(w);
            return 0;
        }
        let (i, role) = untoken(t);
        let Some(slot) = w.slots.get_mut(i) else {
            return 0;
        };
        match (role, &mut slot.state) {
            (Role::Registration, State::Registering { dealer, .. }) => {
                dealer.handle_io();
                if let Some(frames) = take(dealer) {
                    let State::Registering {
                        dealer,
                        shell,
                        heart,
                    } = mem::replace(&mut slot.state, State::Failed)
                    else {
                        unreachable!("matched above")
                    };
                    let _ = epoll::delete(&w.epoll, &*dealer);
                    drop(dealer); // closes its connection
                    slot.state = self.register(&w.epoll, i, &slot.core, frames, shell, heart);
                    if matches!(slot.state, State::Ready { .. }) {
                        w.ready.push(i);
                    }
                }
                0
            }
            (
                Role::Shell,
                State::Ready {
                    shell: Some(shell), ..
                },
            ) => {
                shell.handle_io();
                let mut n = 0;
                while let Some(frames) = take(shell) {
                    self.answer(shell, &mut slot.core, frames);
                    n += 1;
                    if n == DRAIN_BATCH {
                        if shell.has_pending() {
                            w.again.push(t);
                        }
                        break;
                    }
                }
                if n > 0 {
                    w.dirty.push(t);
                }
                n
            }
            (Role::Heart, State::Ready { heart, .. }) => {
                // nothing comes back on a heart; this completes its handshake, reconnects,
                // and sends the pongs held while it was not connected
                heart.handle_io();
                while take(heart).is_some() {}
                0
            }
            _ => 0,
        }
    }

    /// The `registration_reply` arrived: connect the engine, or record why not.
    fn register(
        &self,
        epoll: &OwnedFd,
        i: usize,
        core: &EngineCore,
        reply: Vec<Frame>,
        shell: Option<Box<Socket>>,
        heart: Box<Socket>,
    ) -> State {
        let id = match core.registration_result(reply) {
            Ok(id) => id,
            Err(e) => return self.failed(format!("engine {}: {e}", core.uuid)),
        };
        match self.connect_engine(epoll, i, id, shell, heart) {
            Ok(state) => {
                self.stats.registered.fetch_add(1, Ordering::Relaxed);
                let _ = self.tx.send(Registered {
                    id,
                    uuid: core.uuid.clone(),
                });
                state
            }
            Err(e) => self.failed(format!("engine {}: {e:#}", core.uuid)),
        }
    }

    /// Echoes each ping frame, unchanged, from every registered engine's heart.
    fn echo_pings(&self, w: &mut Engines) {
        w.sub.handle_io();
        while let Some(ping) = take(&mut w.sub) {
            self.stats.pings.fetch_add(1, Ordering::Relaxed);
            for &i in &w.ready {
                if let State::Ready { heart, .. } = &mut w.slots[i].state {
                    // held until the heart is connected, if it is not yet
                    if let Err(e) = heart.send(ping.clone()) {
                        self.stats.error(format!("heartbeat echo: {e}"));
                    }
                    w.dirty.push(token(i, Role::Heart));
                }
            }
        }
    }

    fn answer(&self, shell: &mut Socket, core: &mut EngineCore, frames: Vec<Frame>) {
        match core.handle_shell(frames) {
            Outcome::Reply(m) => match shell.send(m.into_frames()) {
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
    fn connect_engine(
        &self,
        epoll: &OwnedFd,
        i: usize,
        id: i64,
        mut shell: Option<Box<Socket>>,
        mut heart: Box<Socket>,
    ) -> Result<State> {
        let e = &self.conn.engine;
        if let Some(shell) = &mut shell {
            let leaf = e.broadcast[id.rem_euclid(e.broadcast.len() as i64) as usize];
            for port in [e.mux, e.task, leaf] {
                shell.connect(&self.conn.engine_url(port))?;
            }
            Engines::watch(epoll, shell, token(i, Role::Shell))?;
        }
        heart.connect(&self.conn.engine_url(e.hb_pong))?;
        Engines::watch(epoll, &heart, token(i, Role::Heart))?;
        Ok(State::Ready { id, shell, heart })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for role in [Role::Registration, Role::Shell, Role::Heart] {
            assert_eq!(untoken(token(4999, role)), (4999, role));
        }
        assert_ne!(token(usize::MAX >> 2, Role::Heart), SUB_TOKEN);
    }
}

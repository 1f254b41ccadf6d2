//! Receiving: the client's sockets, and whoever reads them.
//!
//! The sockets speak ZMTP themselves ([`oxipp_zmtp`]): no background IO thread of a library
//! sits between a caller and the kernel's TCP sockets. They live behind one mutex ([`Wire`]).
//! A caller that sends takes it, queues and flushes itself, so a request is written to TCP by
//! the calling thread. Reading is a *turn* ([`Receiver`], a second mutex) taken by one thread
//! at a time: a thread blocked on a result takes it itself (`Core::wait_foreground`), so its
//! reply wakes that very thread; the IO thread takes it only while no such thread is around
//! (and [`crate::LINGER`] after the last one left), so that events also arrive while nobody
//! waits. The holder sleeps on the sockets' descriptors (one epoll descriptor each,
//! level-triggered: readable while a connection has input, or output the kernel did not take
//! yet) and the [`Bell`]; each wake-up drains the ready sockets (reads, handshakes,
//! reconnects, pending writes), then verifies and classifies what arrived outside the
//! sockets' lock, and hands the batch to the [`EventQueue`] in one lock.
//!
//! The bell tells the holder to re-check: a waiter wanting the turn, a kick, close. It is
//! armed before the sockets are drained, so a ring after the drain wakes the sleep.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use oxipp_wire::bell::Bell;
use oxipp_wire::signing::{Signer, Verdict};
use oxipp_wire::Message;
use oxipp_zmtp::Socket;
use rustix::event::{PollFd, PollFlags, Timespec};
use serde_json::Value;

use crate::events::{Event, EventQueue, Source};
use crate::Channel;

pub struct Sockets {
    pub query: Socket,
    pub mux: Socket,
    pub task: Socket,
    pub control: Socket,
    pub broadcast: Socket,
    pub iopub: Socket,
    pub notification: Socket,
}

/// The order of sockets in the poll set.
const SOURCES: [Source; 7] = [
    Source::Query,
    Source::Mux,
    Source::Task,
    Source::Control,
    Source::Broadcast,
    Source::IOPub,
    Source::Notification,
];

/// Bytes that sends without flushing may queue on a socket before it is flushed anyway (so
/// a batch of big messages is not held in memory).
const UNFLUSHED_MAX: usize = 256 * 1024;

/// Every channel a client sends on.
const CHANNELS: [Channel; 5] = [
    Channel::Query,
    Channel::Mux,
    Channel::Task,
    Channel::Control,
    Channel::Broadcast,
];

/// The IO thread's longest sleep: only bounds how late it notices a `close()` whose ring
/// was lost.
const POLL_MS: u64 = 200;

/// Most messages read from one socket per wake-up, so one flooding socket cannot starve the
/// others.
const DRAIN_BATCH: usize = 4096;

impl Sockets {
    fn socket(&mut self, src: Source) -> &mut Socket {
        match src {
            Source::Query => &mut self.query,
            Source::Mux => &mut self.mux,
            Source::Task => &mut self.task,
            Source::Control => &mut self.control,
            Source::Broadcast => &mut self.broadcast,
            Source::IOPub => &mut self.iopub,
            Source::Notification => &mut self.notification,
        }
    }

    fn channel(&mut self, c: Channel) -> &mut Socket {
        match c {
            Channel::Query => &mut self.query,
            Channel::Mux => &mut self.mux,
            Channel::Task => &mut self.task,
            Channel::Control => &mut self.control,
            Channel::Broadcast => &mut self.broadcast,
        }
    }
}

/// The sockets, shared by senders and the receiving thread, and the receiving turn.
pub struct Wire {
    sockets: Mutex<Sockets>,
    /// Duplicates of the sockets' epoll descriptors in [`SOURCES`] order, polled without the
    /// sockets' lock (a duplicate is the same epoll instance).
    fds: [OwnedFd; 7],
    bell: Bell,
    turn: Mutex<Receiver>,
}

impl Wire {
    pub fn new(mut sockets: Sockets, signer: Signer, session: String) -> std::io::Result<Wire> {
        let fds = SOURCES.map(|src| sockets.socket(src).as_fd().try_clone_to_owned());
        let [a, b, c, d, e, f, g] = fds;
        Ok(Wire {
            sockets: Mutex::new(sockets),
            fds: [a?, b?, c?, d?, e?, f?, g?],
            bell: Bell::new()?,
            turn: Mutex::new(Receiver {
                signer,
                session,
                rejected: 0,
                raw: Vec::new(),
                ready: [true; 7],
                timer: None,
            }),
        })
    }

    /// Queues one message on `ch` and, with `flush`, writes it (and whatever was queued
    /// before) from the calling thread (what the kernel does not take now goes out from the
    /// receiving thread's next pass: the socket's descriptor is readable until it has).
    /// Without `flush` the message waits for the next [`Wire::flush`] or flushing send (or
    /// until [`UNFLUSHED_MAX`] bytes are queued): a sender of many messages (a map's tasks)
    /// writes them in a few big writes instead of one system call, and one wake-up of the
    /// controller, per message.
    pub fn send(
        &self,
        ch: Channel,
        frames: Vec<Bytes>,
        flush: bool,
    ) -> Result<(), oxipp_zmtp::SendError> {
        let mut s = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        let sock = s.channel(ch);
        sock.send(frames)?;
        if flush || sock.queued_bytes() >= UNFLUSHED_MAX {
            sock.flush();
        }
        Ok(())
    }

    /// Writes what unflushed sends queued on every channel.
    pub fn flush(&self) {
        let mut s = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        for ch in CHANNELS {
            s.channel(ch).flush();
        }
    }

    /// Wakes the thread whose turn it is to receive, if it sleeps, to re-check.
    pub fn ring(&self) {
        self.bell.ring();
    }

    /// Receives once if the turn is free (see [`Receiver::receive`]): `None` when another
    /// thread has it. Whoever ends a turn nudges the foreground waiters, one of which may
    /// be waiting for it.
    pub fn try_receive(
        &self,
        events: &EventQueue,
        max_sleep: Duration,
        may_sleep: impl FnOnce() -> bool,
    ) -> Option<bool> {
        let mut turn = match self.turn.try_lock() {
            Ok(t) => t,
            Err(std::sync::TryLockError::WouldBlock) => return None,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        };
        let got = turn.receive(self, events, max_sleep, may_sleep);
        drop(turn);
        events.nudge();
        Some(got)
    }

    /// Whether the turn is free right now.
    pub fn turn_free(&self) -> bool {
        self.turn.try_lock().is_ok()
    }
}

/// The receiving turn: what reading and classifying messages needs.
pub struct Receiver {
    signer: Signer,
    session: String,
    /// Messages dropped for a bad signature or malformed frames (logged once each).
    rejected: u64,
    /// Messages read under the sockets' lock, classified after it.
    raw: Vec<(Source, Vec<Bytes>)>,
    /// Sockets to drain on the next pass: those whose descriptor a sleep found ready since
    /// they were last drained (all of them at first and after a failed poll).
    ready: [bool; 7],
    /// The earliest socket timer (reconnect, handshake timeout) as of the last drain.
    timer: Option<Duration>,
}

/// The IO thread: receives while no foreground waiter does, until `stop`.
pub fn run_io_thread(wire: Arc<Wire>, events: Arc<EventQueue>, stop: Arc<AtomicBool>) {
    while events.wait_io_turn() && !stop.load(Ordering::SeqCst) {
        let sleep = Duration::from_millis(POLL_MS);
        let quiet = || !events.foreground_active() && !stop.load(Ordering::SeqCst);
        if wire.try_receive(&events, sleep, quiet).is_none() {
            // a foreground waiter has the turn and will hand it back: wait for it to leave
            std::thread::yield_now();
        }
    }
}

impl Receiver {
    /// Drains the ready sockets, classifies and queues what arrived; when nothing did and
    /// `may_sleep()`, sleeps until a socket or the bell is ready, a socket timer is due, or
    /// `max_sleep`. Returns whether events were queued.
    fn receive(
        &mut self,
        wire: &Wire,
        events: &EventQueue,
        max_sleep: Duration,
        may_sleep: impl FnOnce() -> bool,
    ) -> bool {
        // armed before draining: a ring after this point wakes the sleep below
        wire.bell.arm();
        let drained = self.drain(wire);
        let mut raw = std::mem::take(&mut self.raw);
        let batch: Vec<Event> = raw
            .drain(..)
            .filter_map(|(src, frames)| self.classify(src, frames))
            .collect();
        self.raw = raw;
        let got = !batch.is_empty();
        if got {
            events.push_all(batch);
        }
        if got || !drained || !may_sleep() {
            wire.bell.disarm(false);
            return got;
        }
        let max = self.timer.map_or(max_sleep, |t| t.min(max_sleep));
        self.sleep(wire, max);
        false
    }

    /// Reads the ready sockets (up to [`DRAIN_BATCH`] messages each) under the sockets' lock,
    /// and writes what they have queued (subscriptions and held messages of a connection
    /// just made); true when every socket was read empty.
    fn drain(&mut self, wire: &Wire) -> bool {
        let mut s = wire.sockets.lock().unwrap_or_else(|p| p.into_inner());
        let mut all_empty = true;
        let mut timer: Option<Duration> = None;
        for (i, src) in SOURCES.into_iter().enumerate() {
            let sock = s.socket(src);
            // a due timer (reconnect, handshake timeout) is only acted on inside the
            // socket's IO pass, so a socket whose timer is due is drained like a ready one
            let due = sock.timeout().is_some_and(|t| t.is_zero());
            if self.ready[i] || due || sock.has_pending() {
                self.ready[i] = false;
                let mut n = 0;
                while let Some(frames) = sock.recv() {
                    self.raw.push((src, frames));
                    n += 1;
                    if n == DRAIN_BATCH {
                        all_empty = false;
                        self.ready[i] = true;
                        break;
                    }
                }
                while let Some(ev) = sock.event() {
                    tracing::debug!("client {}: {ev:?}", src.as_str());
                }
                sock.flush();
            }
            timer = match (timer, sock.timeout()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        self.timer = timer;
        all_empty
    }

    /// Sleeps until a socket descriptor or the bell is readable, or `max`; notes which
    /// sockets are ready.
    fn sleep(&mut self, wire: &Wire, max: Duration) {
        let mut fds: Vec<PollFd<'_>> = std::iter::once(wire.bell.as_fd())
            .chain(wire.fds.iter().map(|f| f.as_fd()))
            .map(|fd| PollFd::from_borrowed_fd(fd, PollFlags::IN))
            .collect();
        let ts = Timespec {
            tv_sec: max.as_secs() as i64,
            tv_nsec: i64::from(max.subsec_nanos()),
        };
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                tracing::warn!("client receive poll failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                self.ready = [true; 7];
            }
        }
        let ready = |f: &PollFd<'_>| !f.revents().is_empty();
        for (r, f) in self.ready.iter_mut().zip(&fds[1..]) {
            *r |= ready(f);
        }
        let bell = ready(&fds[0]);
        drop(fds);
        wire.bell.disarm(bell);
    }

    fn reject(&mut self, src: Source, why: &dyn std::fmt::Display) {
        self.rejected += 1;
        if self.rejected <= 10 || self.rejected.is_power_of_two() {
            tracing::warn!(
                "client dropped a message on {} ({why}); {} dropped so far",
                src.as_str(),
                self.rejected
            );
        }
    }

    fn classify(&mut self, src: Source, frames: Vec<oxipp_wire::Frame>) -> Option<Event> {
        let m = match Message::parse(frames) {
            Ok(m) => m,
            Err(e) => {
                self.reject(src, &e);
                return None;
            }
        };
        if self.signer.enabled()
            && self.signer.verify(&m.signature, m.signed_parts()) != Verdict::Valid
        {
            self.reject(src, &"bad signature");
            return None;
        }
        let msg_type = match m.header_fields() {
            Ok(h) => h.msg_type,
            Err(e) => {
                self.reject(src, &e);
                return None;
            }
        };
        let parent = m.parent_id().unwrap_or(oxipp_wire::frames::ParentId {
            msg_id: None,
            session: None,
        });
        if src == Source::IOPub {
            // only output of our own requests matters, and of status only `idle`
            if parent.session.as_deref() != Some(self.session.as_str()) {
                return None;
            }
            if msg_type == "status" && !is_idle(&m.content) {
                return None;
            }
        }
        Some(Event {
            source: src,
            msg_type,
            parent_id: parent.msg_id,
            idents: m.idents,
            header: m.header,
            parent: m.parent,
            metadata: m.metadata,
            content: m.content,
            buffers: m.buffers,
        })
    }
}

fn is_idle(content: &[u8]) -> bool {
    serde_json::from_slice::<Value>(content)
        .ok()
        .and_then(|v| {
            v.get("execution_state")
                .and_then(Value::as_str)
                .map(|s| s == "idle")
        })
        .unwrap_or(false)
}

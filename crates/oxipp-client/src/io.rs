//! Receiving: the client's sockets, and whoever reads them.
//!
//! Sockets live behind one mutex ([`Wire`]). A caller that sends takes it and sends itself, so
//! a request goes out without waking another thread. Reading is a *turn* ([`Receiver`], a
//! second mutex) taken by one thread at a time: a thread blocked on a result takes it itself
//! (`Core::wait_foreground`), so its reply wakes that very thread, with no hand-off; the IO
//! thread takes it only while no such thread is around (and [`crate::LINGER`] after the last
//! one left), so that events also arrive while nobody waits. The holder sleeps on the sockets'
//! `ZMQ_FD`s and the [`Bell`]; each wake-up drains every socket, then verifies and classifies
//! what arrived outside the sockets' lock, and hands the batch to the [`EventQueue`] in one
//! lock, so a burst of replies costs one wake-up.
//!
//! The `ZMQ_FD` rule: a socket's descriptor signals new input only after the socket was read
//! empty, and any operation on the socket (a send included) may consume that signal. So the
//! holder arms the bell *before* draining, and a sender that finds input waiting after its
//! send rings it ([`Wire::send`]): no input is left unread while the holder sleeps. The bell
//! also tells the holder to re-check: a waiter wanting the turn, a kick, close.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxipp_wire::bell::Bell;
use oxipp_wire::signing::{Signer, Verdict};
use oxipp_wire::sockets::{recv_frames, send_owned_frames, Socket};
use oxipp_wire::{Frame, Message};
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

/// The IO thread's longest sleep: only bounds how late it notices a `close()` whose ring
/// was lost.
const POLL_MS: u64 = 200;

/// Most messages read from one socket per wake-up, so one flooding socket cannot starve the
/// others.
const DRAIN_BATCH: usize = 4096;

impl Sockets {
    fn socket(&self, src: Source) -> &Socket {
        match src {
            Source::Query => &self.query,
            Source::Mux => &self.mux,
            Source::Task => &self.task,
            Source::Control => &self.control,
            Source::Broadcast => &self.broadcast,
            Source::IOPub => &self.iopub,
            Source::Notification => &self.notification,
        }
    }

    fn channel(&self, c: Channel) -> &Socket {
        match c {
            Channel::Query => &self.query,
            Channel::Mux => &self.mux,
            Channel::Task => &self.task,
            Channel::Control => &self.control,
            Channel::Broadcast => &self.broadcast,
        }
    }
}

/// The sockets, shared by senders and the receiving thread, and the receiving turn.
pub struct Wire {
    sockets: Mutex<Sockets>,
    /// The `ZMQ_FD`s in [`SOURCES`] order (read once: they never change).
    fds: [RawFd; 7],
    bell: Bell,
    turn: Mutex<Receiver>,
}

impl Wire {
    pub fn new(sockets: Sockets, signer: Signer, session: String) -> std::io::Result<Wire> {
        let mut fds = [-1; 7];
        for (fd, src) in fds.iter_mut().zip(SOURCES) {
            *fd = sockets
                .socket(src)
                .get_fd()
                .map_err(std::io::Error::other)?;
        }
        Ok(Wire {
            sockets: Mutex::new(sockets),
            fds,
            bell: Bell::new()?,
            turn: Mutex::new(Receiver {
                signer,
                session,
                rejected: 0,
                raw: Vec::new(),
            }),
        })
    }

    /// Sends one message on `ch` from the calling thread; rings the receiving thread if the
    /// send left input waiting on that socket (see the module doc).
    pub fn send(&self, ch: Channel, frames: Vec<Frame>) -> zmq::Result<()> {
        let s = self.sockets.lock().map_err(|_| zmq::Error::ETERM)?;
        let sock = s.channel(ch);
        let sent = send_owned_frames(sock, frames);
        let input = sock
            .get_events()
            .map(|e| e.contains(zmq::POLLIN))
            .unwrap_or(true);
        drop(s);
        if input {
            self.bell.ring();
        }
        sent
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
    raw: Vec<(Source, Vec<Frame>)>,
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
    /// Drains every socket, classifies and queues what arrived; when nothing did and
    /// `may_sleep()`, sleeps until input, the bell or `max_sleep`. Returns whether events
    /// were queued.
    fn receive(
        &mut self,
        wire: &Wire,
        events: &EventQueue,
        max_sleep: Duration,
        may_sleep: impl FnOnce() -> bool,
    ) -> bool {
        // armed before draining: a send after this point that finds input rings
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
        sleep(wire, max_sleep);
        false
    }

    /// Reads every socket (up to [`DRAIN_BATCH`] each) under the sockets' lock; true when
    /// all were read empty.
    fn drain(&mut self, wire: &Wire) -> bool {
        let Ok(s) = wire.sockets.lock() else {
            return true;
        };
        let mut all_empty = true;
        for src in SOURCES {
            let sock = s.socket(src);
            let mut n = 0;
            loop {
                if n == DRAIN_BATCH {
                    all_empty = false;
                    break;
                }
                match recv_frames(sock, true) {
                    Ok(frames) => self.raw.push((src, frames)),
                    Err(_) => break,
                }
                n += 1;
            }
        }
        all_empty
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

/// Sleeps until a socket descriptor or the bell is readable, or `max`.
fn sleep(wire: &Wire, max: Duration) {
    let mut items: Vec<zmq::PollItem> = std::iter::once(wire.bell.fd())
        .chain(wire.fds)
        .map(|fd| zmq::PollItem::from_fd(fd, zmq::POLLIN))
        .collect();
    let ms = i64::try_from(max.as_millis()).unwrap_or(i64::MAX).max(1);
    if let Err(e) = zmq::poll(&mut items, ms) {
        if e != zmq::Error::EINTR {
            tracing::warn!("client receive poll failed: {e}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    wire.bell.disarm(items[0].is_readable());
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

//! The IO thread: receives everything the client's sockets get.
//!
//! Sockets live behind one mutex ([`Wire`]). A caller that sends takes it and sends itself, so
//! a request goes out without waking this thread (one thread hand-off less per request). This
//! thread sleeps on the sockets' `ZMQ_FD`s and its [`Bell`]; each wake-up drains every socket,
//! then verifies and classifies what arrived outside the lock, and hands the batch to the
//! [`EventQueue`] in one lock, so a burst of replies costs Python one wake-up.
//!
//! The `ZMQ_FD` rule: a socket's descriptor signals new input only after the socket was read
//! empty, and any operation on the socket (a send included) may consume that signal. So this
//! thread arms its bell *before* draining, and a sender that finds input waiting after its
//! send rings the bell ([`Wire::send`]): no input is left unread while this thread sleeps.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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

/// Poll timeout: only bounds how late a `close()` is noticed if its ring were lost.
const POLL_MS: i64 = 200;

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

/// The sockets, shared by senders and the IO thread, and the IO thread's bell.
pub struct Wire {
    sockets: Mutex<Sockets>,
    /// The `ZMQ_FD`s in [`SOURCES`] order (read once: they never change).
    fds: [RawFd; 7],
    bell: Bell,
}

impl Wire {
    pub fn new(sockets: Sockets) -> std::io::Result<Wire> {
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
        })
    }

    /// Sends one message on `ch` from the calling thread; rings the IO thread if the send
    /// left input waiting on that socket (see the module doc).
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

    /// Wakes the IO thread (to notice `close()`).
    pub fn ring(&self) {
        self.bell.ring();
    }
}

pub struct Io {
    wire: Arc<Wire>,
    signer: Signer,
    session: String,
    events: Arc<EventQueue>,
    stop: Arc<AtomicBool>,
    /// Messages dropped for a bad signature or malformed frames (logged once each).
    rejected: u64,
}

impl Io {
    pub fn new(
        wire: Arc<Wire>,
        signer: Signer,
        session: String,
        events: Arc<EventQueue>,
        stop: Arc<AtomicBool>,
    ) -> Io {
        Io {
            wire,
            signer,
            session,
            events,
            stop,
            rejected: 0,
        }
    }

    pub fn run(mut self) {
        let mut raw: Vec<(Source, Vec<Frame>)> = Vec::new();
        loop {
            // armed before draining: a send after this point that finds input rings
            self.wire.bell.arm();
            let drained = self.drain(&mut raw);
            if self.stop.load(Ordering::SeqCst) {
                self.wire.bell.disarm(false);
                return;
            }
            let batch: Vec<Event> = raw
                .drain(..)
                .filter_map(|(src, frames)| self.classify(src, frames))
                .collect();
            if !batch.is_empty() {
                self.events.push_all(batch);
            }
            let timeout = if drained { POLL_MS } else { 0 };
            self.sleep(timeout);
        }
    }

    /// Reads every socket (up to [`DRAIN_BATCH`] each) under the lock; true when all were
    /// read empty.
    fn drain(&self, raw: &mut Vec<(Source, Vec<Frame>)>) -> bool {
        let Ok(s) = self.wire.sockets.lock() else {
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
                    Ok(frames) => raw.push((src, frames)),
                    Err(_) => break,
                }
                n += 1;
            }
        }
        all_empty
    }

    /// Sleeps until a socket descriptor or the bell is readable, or `timeout_ms`.
    fn sleep(&self, timeout_ms: i64) {
        let mut items: Vec<zmq::PollItem> = std::iter::once(self.wire.bell.fd())
            .chain(self.wire.fds)
            .map(|fd| zmq::PollItem::from_fd(fd, zmq::POLLIN))
            .collect();
        if let Err(e) = zmq::poll(&mut items, timeout_ms) {
            if e != zmq::Error::EINTR {
                tracing::warn!("client IO poll failed: {e}");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        self.wire.bell.disarm(items[0].is_readable());
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

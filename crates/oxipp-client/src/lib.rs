//! The client core of oxipp: what `oxipp.Client` stands on.
//!
//! A [`Core`] owns one DEALER per controller channel (query, mux, task, control, broadcast)
//! and SUBs for IOPub and notifications, behind one mutex because ZeroMQ sockets are
//! single-threaded: callers sign and send their messages themselves, and every verified
//! incoming message comes back as an [`Event`] in arrival order, received by the thread that
//! waits for it or else by an IO thread ([`io`]). The Python layer waits for events with the
//! GIL released and resolves its futures from them.
//!
//! What is decided here rather than in Python, because it is per-message work: signing,
//! signature checks, dropping IOPub traffic for other clients' requests and `busy` status
//! messages nobody reads, and extracting the parent msg_id every reply is routed by.

mod endpoints;
mod events;
mod io;

pub use endpoints::Endpoints;
pub use events::{Event, EventQueue, Source, Wake, LINGER};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use oxipp_wire::frames::DELIMITER;
use oxipp_wire::signing::Signer;
use oxipp_wire::Session;
use oxipp_zmtp::{Options, Socket, SocketType};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad connection info: {0}")]
    Config(String),
    #[error("socket: {0}")]
    Socket(#[from] std::io::Error),
    #[error("cannot send: {0}")]
    Send(#[from] oxipp_zmtp::SendError),
    #[error("the client is closed")]
    Closed,
}

/// The DEALER channels a client sends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Query,
    Mux,
    Task,
    Control,
    Broadcast,
}

impl Channel {
    pub fn parse(name: &str) -> Option<Channel> {
        Some(match name {
            "query" | "registration" => Channel::Query,
            "mux" => Channel::Mux,
            "task" => Channel::Task,
            "control" => Channel::Control,
            "broadcast" => Channel::Broadcast,
            _ => return None,
        })
    }
}

/// Longest sleep of a waiter on the sockets before it re-checks (a lost ring costs at most
/// this).
const RECEIVE_SLICE: Duration = Duration::from_millis(200);

/// One connected client.
pub struct Core {
    pub session: Session,
    pub endpoints: Endpoints,
    wire: Arc<io::Wire>,
    events: Arc<EventQueue>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Core {
    /// Connects every socket (connections are made in the background, so this does not wait
    /// for the controller; messages sent before are held until they are) and starts the IO
    /// thread.
    pub fn connect(connection_json: &str) -> Result<Core, ClientError> {
        oxipp_wire::alloc::keep_large_buffers_on_heap();
        let endpoints = Endpoints::parse(connection_json)?;
        let signer = Signer::new(endpoints.key.as_bytes(), &endpoints.signature_scheme)
            .map_err(ClientError::Config)?;
        let session = Session::with_random_id(signer.clone());
        let socket = |kind: SocketType, url: &str| -> Result<Socket, ClientError> {
            if !url.starts_with("tcp://") {
                return Err(ClientError::Config(format!(
                    "{url}: oxipp clients connect over tcp:// only"
                )));
            }
            let mut s = Socket::new(kind, Options::default())?;
            s.connect(url)
                .map_err(|e| ClientError::Config(format!("cannot connect to {url}: {e}")))?;
            if kind == SocketType::Sub {
                s.subscribe(b"");
            }
            Ok(s)
        };
        let sockets = io::Sockets {
            query: socket(SocketType::Dealer, &endpoints.registration)?,
            mux: socket(SocketType::Dealer, &endpoints.mux)?,
            task: socket(SocketType::Dealer, &endpoints.task)?,
            control: socket(SocketType::Dealer, &endpoints.control)?,
            broadcast: socket(SocketType::Dealer, &endpoints.broadcast)?,
            iopub: socket(SocketType::Sub, &endpoints.iopub)?,
            notification: socket(SocketType::Sub, &endpoints.notification)?,
        };
        let wire = Arc::new(
            io::Wire::new(sockets, signer, session.id.clone())
                .map_err(|e| ClientError::Config(format!("cannot set up the sockets: {e}")))?,
        );
        let events = Arc::new(EventQueue::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (wire, events, stop) = (wire.clone(), events.clone(), stop.clone());
            std::thread::Builder::new()
                .name("oxipp-client-io".into())
                .spawn(move || io::run_io_thread(wire, events, stop))
                .map_err(|e| ClientError::Config(format!("cannot start the IO thread: {e}")))?
        };
        Ok(Core {
            session,
            endpoints,
            wire,
            events,
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// A fresh header for `msg_type`: (msg_id, header bytes). Callers file the msg_id as
    /// pending before [`Core::send`], so a reply can never arrive for an unknown request.
    pub fn new_header(&self, msg_type: &str) -> (String, Vec<u8>) {
        self.session.new_header(msg_type)
    }

    /// Signs and sends one message from the calling thread. `ident` (an engine uuid)
    /// addresses an engine through the mux or control relay. Without `flush` it is only
    /// queued, for a later flushing send or [`Core::flush`] (see [`io::Wire::send`]).
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &self,
        channel: Channel,
        ident: Option<&[u8]>,
        header: Vec<u8>,
        parent: Option<Vec<u8>>,
        metadata: Vec<u8>,
        content: Vec<u8>,
        buffers: Vec<Bytes>,
        flush: bool,
    ) -> Result<(), ClientError> {
        if self.stop.load(Ordering::SeqCst) {
            return Err(ClientError::Closed);
        }
        let parent = parent.unwrap_or_else(|| b"{}".to_vec());
        let sig = self
            .session
            .signer()
            .sign([&header, &parent, &metadata, &content]);
        let mut frames = Vec::with_capacity(7 + buffers.len());
        if let Some(id) = ident {
            frames.push(Bytes::copy_from_slice(id));
        }
        frames.push(Bytes::from_static(DELIMITER));
        frames.push(Bytes::from(sig));
        frames.push(Bytes::from(header));
        frames.push(Bytes::from(parent));
        frames.push(Bytes::from(metadata));
        frames.push(Bytes::from(content));
        frames.extend(buffers);
        Ok(self.wire.send(channel, frames, flush)?)
    }

    /// Writes every message queued by sends without `flush`.
    pub fn flush(&self) {
        self.wire.flush();
    }

    /// Waits up to `timeout` for events and takes up to `max` of them. Empty after a timeout;
    /// `None` once the client is closed and every event was taken.
    pub fn next_events(&self, timeout: Option<Duration>, max: usize) -> Option<Vec<Event>> {
        self.events.take(timeout, max)
    }

    /// Waits (without taking) until events are there for a thread blocked on a result, which
    /// then handles them itself; see [`EventQueue`] for the foreground/background split.
    /// The waiter receives them itself when the receiving turn is free (see [`io`]), so its
    /// reply wakes this thread directly; else it sleeps until the holder queues events or
    /// hands the turn over.
    pub fn wait_foreground(&self, timeout: Option<Duration>, seen: Option<u64>) -> Wake {
        let deadline = timeout.map(|t| Instant::now() + t);
        let seen = self.events.enter_foreground(seen);
        let wake = loop {
            if let Some(w) = self.events.foreground_check(seen) {
                break w;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break Wake::TimedOut;
            }
            let max_sleep = deadline.map_or(RECEIVE_SLICE, |d| (d - now).min(RECEIVE_SLICE));
            let quiet = || self.events.foreground_check(seen).is_none();
            if self
                .wire
                .try_receive(&self.events, max_sleep, quiet)
                .is_some()
            {
                continue;
            }
            // the holder (the IO thread, or another waiter) may sleep: it re-checks, and the
            // IO thread hands the turn over
            self.wire.ring();
            self.events
                .foreground_sleep(seen, Some(now + max_sleep), || self.wire.turn_free());
        };
        self.events.leave_foreground();
        wake
    }

    /// See [`EventQueue::generation`].
    pub fn generation(&self) -> u64 {
        self.events.generation()
    }

    /// Waits (without taking) until the background handler should take events.
    pub fn wait_background(&self, timeout: Option<Duration>) -> Wake {
        self.events.wait_background(timeout)
    }

    /// Up to `max` events without waiting; `None` once closed and drained.
    pub fn take_events(&self, max: usize) -> Option<Vec<Event>> {
        self.events.take_now(max)
    }

    /// Wakes every foreground waiter to re-check its own condition.
    pub fn kick(&self) {
        self.events.kick();
        self.wire.ring(); // the one receiving may be asleep on the sockets
    }

    pub fn is_closed(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Stops the IO thread and wakes every waiter. (Sent messages were written, or are queued
    /// for the kernel, when `send` returned; the sockets close when the `Core` is dropped.)
    pub fn close(&self) {
        if self.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        self.events.stop_io();
        self.wire.ring();
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
        self.events.close();
        self.wire.ring(); // a waiter receiving on the sockets learns of the close
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.close();
    }
}

//! Requests waiting for the executor, and the request type itself.
//!
//! Whoever reads the shell socket (the IO thread, or the executor itself while it waits)
//! pushes; the executor thread (Python's main thread) pops. The queue is shared rather than a
//! channel because abort handling must remove queued requests by msg_id, which a channel
//! cannot do.

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};

use oxipp_wire::{Frame, Message};
use serde_json::Value;

use crate::bell::Bell;

/// What the executor is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A shell request (apply, execute, complete, …).
    Shell,
    /// A control `clear_request`: reset the namespace, then reply.
    Clear,
    /// Stop the loop; the shutdown reply was already sent.
    Shutdown,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Shell => "shell",
            Kind::Clear => "clear",
            Kind::Shutdown => "shutdown",
        }
    }
}

/// The socket a request came in on (and its reply goes out on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Shell,
    Control,
    /// The Jupyter kernel sockets `bind_kernel()` opens (see `kernel.rs`).
    KernelShell,
    KernelControl,
}

/// One request, as received (raw JSON frames kept for the reply's parent header).
#[derive(Debug)]
pub struct Request {
    pub kind: Kind,
    pub channel: Channel,
    pub msg_type: String,
    pub msg_id: String,
    pub idents: Vec<Frame>,
    pub header: Frame,
    pub metadata: Frame,
    pub content: Frame,
    pub buffers: Vec<Frame>,
    pub is_broadcast: bool,
    pub is_coalescing: bool,
    /// `original_msg_id` and `label` from the request metadata, echoed in reply metadata.
    pub original_msg_id: Value,
    pub label: Value,
    /// When the request was handed to the executor (reply metadata `started`).
    pub started: OnceLock<String>,
}

impl Request {
    /// Builds a request from a verified message. Metadata that is not an object counts as empty.
    pub fn from_message(
        kind: Kind,
        channel: Channel,
        msg_type: String,
        msg_id: String,
        m: Message,
    ) -> Request {
        let md = m.metadata_map().unwrap_or_default();
        let flag = |k: &str| md.get(k).and_then(Value::as_bool).unwrap_or(false);
        Request {
            kind,
            channel,
            is_broadcast: flag("is_broadcast"),
            is_coalescing: flag("is_coalescing"),
            original_msg_id: md
                .get("original_msg_id")
                .cloned()
                .unwrap_or_else(|| Value::String(String::new())),
            label: md.get("label").cloned().unwrap_or(Value::Null),
            msg_type,
            msg_id,
            idents: m.idents,
            header: m.header,
            metadata: m.metadata,
            content: m.content,
            buffers: m.buffers,
            started: OnceLock::new(),
        }
    }

    /// A `shutdown` item (no message behind it).
    pub fn shutdown() -> Request {
        Request {
            kind: Kind::Shutdown,
            channel: Channel::Control,
            msg_type: String::new(),
            msg_id: String::new(),
            idents: vec![],
            header: Frame::from_static(b"{}"),
            metadata: Frame::from_static(b"{}"),
            content: Frame::from_static(b"{}"),
            buffers: vec![],
            is_broadcast: false,
            is_coalescing: false,
            original_msg_id: Value::String(String::new()),
            label: Value::Null,
            started: OnceLock::new(),
        }
    }
}

/// FIFO of requests. The consumer (the executor, in `Runtime::next_request`) sleeps in `poll`
/// on [`Queue::bell`] together with the shell socket, so a push rings the bell instead of
/// signalling a condvar; the ring is free while the consumer is awake.
pub struct Queue {
    items: Mutex<VecDeque<std::sync::Arc<Request>>>,
    bell: Bell,
}

type Item = std::sync::Arc<Request>;

impl Queue {
    pub fn new() -> std::io::Result<Queue> {
        Ok(Queue {
            items: Mutex::default(),
            bell: Bell::new()?,
        })
    }

    pub fn push_back(&self, r: Item) {
        self.lock().push_back(r);
        self.bell.ring(); // one consumer: the executor loop
    }

    /// Control work (clear, shutdown) jumps ahead of queued shell requests, as ipykernel's
    /// separate control thread effectively does.
    pub fn push_front(&self, r: Item) {
        self.lock().push_front(r);
        self.bell.ring();
    }

    /// The next request, if any (never waits).
    pub fn try_pop(&self) -> Option<Item> {
        self.lock().pop_front()
    }

    /// What the consumer arms before checking [`Queue::is_empty`] and sleeping.
    pub fn bell(&self) -> &Bell {
        &self.bell
    }

    /// Removes queued shell requests matching `pred` and returns them in order.
    pub fn remove_shell(&self, pred: impl Fn(&Request) -> bool) -> Vec<Item> {
        let mut q = self.lock();
        let mut out = Vec::new();
        q.retain(|r| {
            if r.kind == Kind::Shell && pred(r) {
                out.push(r.clone());
                false
            } else {
                true
            }
        });
        out
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Item>> {
        // a panic while holding the lock cannot leave the deque inconsistent
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }
}

//! What the IO thread hands to the Python layer, and the queue it waits on.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use oxipp_wire::Frame;

/// Where a message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Query,
    Mux,
    Task,
    Control,
    Broadcast,
    IOPub,
    Notification,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Query => "query",
            Source::Mux => "mux",
            Source::Task => "task",
            Source::Control => "control",
            Source::Broadcast => "broadcast",
            Source::IOPub => "iopub",
            Source::Notification => "notification",
        }
    }
}

/// One verified message. JSON parts stay raw bytes: Python decodes what it reads.
#[derive(Debug)]
pub struct Event {
    pub source: Source,
    pub msg_type: String,
    /// `parent_header.msg_id`, when there is one.
    pub parent_id: Option<String>,
    /// The routing frames before the delimiter (the engine uuid for relayed replies, topics
    /// on IOPub).
    pub idents: Vec<Frame>,
    pub header: Frame,
    pub parent: Frame,
    pub metadata: Frame,
    pub content: Frame,
    pub buffers: Vec<Frame>,
}

#[derive(Default)]
pub struct EventQueue {
    inner: Mutex<State>,
    ready: Condvar,
}

#[derive(Default)]
struct State {
    events: VecDeque<Event>,
    closed: bool,
}

impl EventQueue {
    pub fn push_all(&self, batch: Vec<Event>) {
        if batch.is_empty() {
            return;
        }
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        s.events.extend(batch);
        drop(s);
        self.ready.notify_all();
    }

    pub fn close(&self) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        self.ready.notify_all();
    }

    /// Up to `max` events, waiting up to `timeout` (`None` = forever) for the first one.
    /// `None` when closed and drained.
    pub fn take(&self, timeout: Option<Duration>, max: usize) -> Option<Vec<Event>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        while s.events.is_empty() {
            if s.closed {
                return None;
            }
            match deadline {
                None => s = self.ready.wait(s).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Some(Vec::new());
                    }
                    s = self
                        .ready
                        .wait_timeout(s, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
        let n = s.events.len().min(max.max(1));
        Some(s.events.drain(..n).collect())
    }
}

//! The IO thread: every client socket lives here.
//!
//! Each wake-up drains all readable sockets, verifies and classifies what arrived, and hands
//! the batch to the [`EventQueue`] in one lock, so a burst of replies costs Python one wake-up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use oxipp_wire::signing::{Signer, Verdict};
use oxipp_wire::sockets::{recv_frames, send_owned_frames, Socket};
use oxipp_wire::Message;
use serde_json::Value;

use crate::events::{Event, EventQueue, Source};
use crate::{Channel, Cmd};

pub struct Sockets {
    pub query: Socket,
    pub mux: Socket,
    pub task: Socket,
    pub control: Socket,
    pub broadcast: Socket,
    pub iopub: Socket,
    pub notification: Socket,
    /// PULL end of the wake-up pipe.
    pub wake: Socket,
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

/// Poll timeout: only bounds how late a `close()` is noticed if its wake byte were lost.
const POLL_MS: i64 = 200;

pub struct Io {
    s: Sockets,
    signer: Signer,
    session: String,
    events: Arc<EventQueue>,
    stop: Arc<AtomicBool>,
    /// Messages dropped for a bad signature or malformed frames (logged once each).
    rejected: u64,
}

impl Io {
    pub fn new(
        s: Sockets,
        signer: Signer,
        session: String,
        events: Arc<EventQueue>,
        stop: Arc<AtomicBool>,
    ) -> Io {
        Io {
            s,
            signer,
            session,
            events,
            stop,
            rejected: 0,
        }
    }

    fn socket(&self, src: Source) -> &Socket {
        match src {
            Source::Query => &self.s.query,
            Source::Mux => &self.s.mux,
            Source::Task => &self.s.task,
            Source::Control => &self.s.control,
            Source::Broadcast => &self.s.broadcast,
            Source::IOPub => &self.s.iopub,
            Source::Notification => &self.s.notification,
        }
    }

    fn channel(&self, c: Channel) -> &Socket {
        match c {
            Channel::Query => &self.s.query,
            Channel::Mux => &self.s.mux,
            Channel::Task => &self.s.task,
            Channel::Control => &self.s.control,
            Channel::Broadcast => &self.s.broadcast,
        }
    }

    pub fn run(mut self, cmds: mpsc::Receiver<Cmd>) {
        loop {
            let ready = self.poll();
            if ready[7] {
                while recv_frames(&self.s.wake, true).is_ok() {}
            }
            while let Ok(c) = cmds.try_recv() {
                self.command(c);
            }
            if self.stop.load(Ordering::SeqCst) {
                // send whatever is still queued (a shutdown or abort the user just asked for)
                while let Ok(c) = cmds.try_recv() {
                    self.command(c);
                }
                return;
            }
            let mut batch = Vec::new();
            for (i, src) in SOURCES.iter().enumerate() {
                if ready[i] {
                    self.drain(*src, &mut batch);
                }
            }
            self.events.push_all(batch);
        }
    }

    fn poll(&self) -> [bool; 8] {
        let mut items = [
            self.s.query.as_poll_item(zmq::POLLIN),
            self.s.mux.as_poll_item(zmq::POLLIN),
            self.s.task.as_poll_item(zmq::POLLIN),
            self.s.control.as_poll_item(zmq::POLLIN),
            self.s.broadcast.as_poll_item(zmq::POLLIN),
            self.s.iopub.as_poll_item(zmq::POLLIN),
            self.s.notification.as_poll_item(zmq::POLLIN),
            self.s.wake.as_poll_item(zmq::POLLIN),
        ];
        let mut ready = [false; 8];
        match zmq::poll(&mut items, POLL_MS) {
            Ok(_) => {
                for (r, item) in ready.iter_mut().zip(&items) {
                    *r = item.is_readable();
                }
            }
            Err(e) => {
                tracing::warn!("client IO poll failed: {e}");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        ready
    }

    fn command(&mut self, c: Cmd) {
        match c {
            Cmd::Send(ch, frames) => {
                if let Err(e) = send_owned_frames(self.channel(ch), frames) {
                    tracing::warn!("client send on {ch:?} failed: {e}");
                }
            }
        }
    }

    /// Receives everything waiting on `src` (bounded, so one flooding socket cannot starve the
    /// others or the command queue).
    fn drain(&mut self, src: Source, batch: &mut Vec<Event>) {
        for _ in 0..4096 {
            let frames = match recv_frames(self.socket(src), true) {
                Ok(f) => f,
                Err(_) => return,
            };
            if let Some(ev) = self.classify(src, frames) {
                batch.push(ev);
            }
        }
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

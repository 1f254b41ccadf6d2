//! The IO thread: owns the shell, control and IOPub sockets.
//!
//! ZeroMQ sockets are single-threaded, so everything other threads want sent arrives here as a
//! [`Cmd`] over a channel (plus a byte on an inproc socket to wake the poll). Incoming shell
//! requests are verified and queued for the executor; control requests are answered here, so
//! abort, signal, shutdown and kernel_info work while user code runs.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use oxipp_wire::replay::DigestHistory;
use oxipp_wire::signing::Verdict;
use oxipp_wire::sockets::{recv_frames, send_frames, send_owned_frames, Socket};
use oxipp_wire::{msg_types as mt, Frame, Message};
use serde_json::{json, Value};

use crate::kernel::KernelSockets;
use crate::queue::{Channel, Kind, Request};
use crate::runtime::Shared;
use crate::signals;

/// How often buffered stream output is published while a request runs.
pub const STREAM_FLUSH: Duration = Duration::from_millis(50);

/// Work handed to the IO thread.
pub enum Cmd {
    Send(Channel, Vec<Frame>),
    Publish(Vec<Frame>),
    /// Answer every queued shell request `aborted` (stop-on-error, `abort_request []`).
    AbortQueued,
    /// Serve these Jupyter kernel sockets too (`bind_kernel()`).
    AdoptKernel(Box<KernelSockets>),
}

pub struct IoSockets {
    pub shell: Socket,
    pub control: Socket,
    pub iopub: Socket,
    /// PULL end of the wake-up pipe.
    pub wake: Socket,
}

struct Io {
    shared: Arc<Shared>,
    s: IoSockets,
    /// msg_ids an `abort_request` named that have not arrived yet.
    aborted: HashSet<String>,
    /// Signatures already seen: a replayed message is dropped, as jupyter_client's Session
    /// does in stock engines (same capacity).
    digests: DigestHistory,
    /// The Jupyter kernel sockets, once `bind_kernel()` opened them.
    kernel: Option<Box<KernelSockets>>,
}

pub fn run(shared: Arc<Shared>, s: IoSockets, cmds: mpsc::Receiver<Cmd>) {
    let mut io = Io {
        shared,
        s,
        aborted: HashSet::new(),
        digests: DigestHistory::new(65536),
        kernel: None,
    };
    let mut last_flush = Instant::now();
    loop {
        let stopping = io.shared.stop.load(Ordering::SeqCst);
        let ready = io.poll(stopping);
        if ready[2] {
            while recv_frames(&io.s.wake, true).is_ok() {}
        }
        // commands first: replies and output queued by the executor keep their order
        while let Ok(c) = cmds.try_recv() {
            io.command(c);
        }
        if ready[1] {
            io.drain(Channel::Control);
        }
        if ready[0] {
            io.drain(Channel::Shell);
        }
        if ready[3] {
            io.drain(Channel::KernelControl);
        }
        if ready[4] {
            io.drain(Channel::KernelShell);
        }
        if ready[5] {
            io.echo_heartbeats();
        }
        if ready[6] {
            io.drop_stdin();
        }
        if last_flush.elapsed() >= STREAM_FLUSH {
            io.flush_streams();
            last_flush = Instant::now();
        }
        if stopping {
            io.flush_streams();
            while let Ok(c) = cmds.try_recv() {
                io.command(c);
            }
            return;
        }
    }
}

impl Io {
    /// Waits for input on any socket (up to the stream flush interval); which are readable, in
    /// the order shell, control, wake, kernel control, kernel shell, kernel hb, kernel stdin.
    fn poll(&self, stopping: bool) -> [bool; 7] {
        let mut items = vec![
            self.s.shell.as_poll_item(zmq::POLLIN),
            self.s.control.as_poll_item(zmq::POLLIN),
            self.s.wake.as_poll_item(zmq::POLLIN),
        ];
        if let Some(k) = &self.kernel {
            items.push(k.control.as_poll_item(zmq::POLLIN));
            items.push(k.shell.as_poll_item(zmq::POLLIN));
            items.push(k.hb.as_poll_item(zmq::POLLIN));
            items.push(k.stdin.as_poll_item(zmq::POLLIN));
        }
        let timeout = if stopping {
            0
        } else {
            STREAM_FLUSH.as_millis() as i64
        };
        let mut ready = [false; 7];
        match zmq::poll(&mut items, timeout) {
            Ok(_) => {
                for (r, item) in ready.iter_mut().zip(&items) {
                    *r = item.is_readable();
                }
            }
            Err(e) => {
                tracing::warn!("IO poll failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        ready
    }

    fn socket(&self, ch: Channel) -> Option<&Socket> {
        match ch {
            Channel::Shell => Some(&self.s.shell),
            Channel::Control => Some(&self.s.control),
            Channel::KernelShell => self.kernel.as_ref().map(|k| &k.shell),
            Channel::KernelControl => self.kernel.as_ref().map(|k| &k.control),
        }
    }

    /// Jupyter's heartbeat: echo every ping on the kernel's REP socket.
    fn echo_heartbeats(&self) {
        let Some(k) = &self.kernel else { return };
        for _ in 0..100 {
            match recv_frames(&k.hb, true) {
                Ok(frames) => {
                    if let Err(e) = send_frames(&k.hb, frames) {
                        tracing::warn!("kernel heartbeat echo failed: {e}");
                    }
                }
                Err(_) => return,
            }
        }
    }

    /// Nothing here asks for input (`input()` raises in engines), so stdin messages are dropped.
    fn drop_stdin(&self) {
        let Some(k) = &self.kernel else { return };
        while recv_frames(&k.stdin, true).is_ok() {}
    }

    fn command(&mut self, c: Cmd) {
        match c {
            Cmd::Send(ch, frames) => self.send(ch, frames),
            Cmd::Publish(frames) => self.publish(frames),
            Cmd::AbortQueued => {
                for r in self.shared.queue.remove_shell(|_| true) {
                    self.abort(&r);
                }
            }
            Cmd::AdoptKernel(k) => self.kernel = Some(k),
        }
    }

    fn send(&self, ch: Channel, frames: Vec<Frame>) {
        let Some(sock) = self.socket(ch) else {
            tracing::warn!("no {ch:?} socket to send on");
            return;
        };
        if let Err(e) = send_owned_frames(sock, frames) {
            tracing::warn!("send on {ch:?} failed: {e}");
        }
    }

    /// IOPub goes to the controller and, after `bind_kernel()`, to the kernel's subscribers
    /// (each client keeps what has its own session as parent).
    fn publish(&self, frames: Vec<Frame>) {
        if let Some(k) = &self.kernel {
            if let Err(e) = send_frames(&k.iopub, frames.iter()) {
                tracing::warn!("kernel IOPub send failed: {e}");
            }
        }
        if let Err(e) = send_frames(&self.s.iopub, frames) {
            tracing::warn!("IOPub send failed: {e}");
        }
    }

    fn flush_streams(&self) {
        let msgs = self
            .shared
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(&self.shared.me);
        for m in msgs {
            self.publish(m);
        }
    }

    fn abort(&self, r: &Request) {
        tracing::info!("aborting {} {}", r.msg_type, r.msg_id);
        self.send(r.channel, self.shared.me.aborted(r));
    }

    /// Reads every message waiting on one socket (bounded per round so one busy channel cannot
    /// starve the other).
    fn drain(&mut self, ch: Channel) {
        for _ in 0..1000 {
            let Some(sock) = self.socket(ch) else { return };
            let frames = match recv_frames(sock, true) {
                Ok(f) => f,
                Err(zmq::Error::EAGAIN) => return,
                Err(e) => {
                    tracing::warn!("recv on {ch:?} failed: {e}");
                    return;
                }
            };
            if let Some((msg_type, msg_id, m)) = self.verify(ch, frames) {
                match ch {
                    Channel::Shell | Channel::KernelShell => self.on_shell(ch, msg_type, msg_id, m),
                    Channel::Control | Channel::KernelControl => {
                        self.on_control(ch, msg_type, msg_id, m)
                    }
                }
            }
        }
    }

    /// Parses and checks a message; garbage and bad signatures are logged and dropped.
    fn verify(&mut self, ch: Channel, frames: Vec<Frame>) -> Option<(String, String, Message)> {
        let m = match Message::parse(frames) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("dropping unparseable message on {ch:?}: {e}");
                return None;
            }
        };
        let verdict = self
            .shared
            .me
            .session
            .signer()
            .verify(&m.signature, m.signed_parts());
        if verdict != Verdict::Valid {
            tracing::warn!("dropping message with {verdict:?} signature on {ch:?}");
            return None;
        }
        if self.shared.me.session.signer().enabled() {
            let mut digest = [0u8; 32];
            if hex::decode_to_slice(&m.signature, &mut digest).is_err()
                || !self.digests.insert(digest)
            {
                tracing::warn!("dropping replayed message on {ch:?}");
                return None;
            }
        }
        match m.header_fields() {
            Ok(h) => Some((h.msg_type, h.msg_id, m)),
            Err(e) => {
                tracing::warn!("dropping message with bad header on {ch:?}: {e}");
                None
            }
        }
    }

    fn on_shell(&mut self, ch: Channel, msg_type: String, msg_id: String, m: Message) {
        let req = Request::from_message(Kind::Shell, ch, msg_type, msg_id, m);
        if req.msg_type == "kernel_info_request" {
            return self.kernel_info(&req);
        }
        if self.aborted.remove(&req.msg_id) {
            return self.abort(&req);
        }
        self.shared.queue.push_back(Arc::new(req));
    }

    fn on_control(&mut self, ch: Channel, msg_type: String, msg_id: String, m: Message) {
        let req = Request::from_message(Kind::Clear, ch, msg_type, msg_id, m);
        let content: Value = serde_json::from_slice(&req.content).unwrap_or(Value::Null);
        let shared = self.shared.clone();
        let me = &shared.me;
        match req.msg_type.as_str() {
            mt::CLEAR_REQUEST => self.shared.queue.push_front(Arc::new(req)),
            mt::ABORT_REQUEST => {
                self.publish(me.status("busy", Some(&req.header)));
                let ids: Vec<String> = content
                    .get("msg_ids")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                if ids.is_empty() {
                    self.command(Cmd::AbortQueued);
                } else {
                    let queued = self.shared.queue.remove_shell(|r| ids.contains(&r.msg_id));
                    for r in &queued {
                        self.abort(r);
                    }
                    for id in ids {
                        if !queued.iter().any(|r| r.msg_id == id) {
                            self.aborted.insert(id);
                        }
                    }
                }
                self.send(
                    req.channel,
                    me.control_reply(&req, mt::ABORT_REPLY, &json!({"status": "ok"})),
                );
                self.publish(me.status("idle", Some(&req.header)));
            }
            mt::SIGNAL_REQUEST => {
                let sig = content.get("sig").unwrap_or(&Value::Null);
                let (reply, deliver) = match signals::resolve(sig) {
                    Some(n) => (json!({"status": "ok"}), Some(n)),
                    None => (
                        engine_error("AttributeError", &format!("bad signal {sig}")),
                        None,
                    ),
                };
                // stock's nanny names the reply "_request" (it slices the wrong end of the
                // type); clients match replies by parent msg_id, so we keep stock's bytes.
                // The reply goes first: stock's nanny answers from another process, so a client
                // waiting for it after SIGKILL gets it; here the signal may end us.
                self.send(req.channel, me.control_reply(&req, "_request", &reply));
                if let Some(n) = deliver {
                    signals::deliver(n);
                }
            }
            "interrupt_request" => {
                let _ = signals::send_to_self(libc::SIGINT);
                self.send(
                    req.channel,
                    me.control_reply(&req, "interrupt_reply", &json!({"status": "ok"})),
                );
            }
            mt::SHUTDOWN_REQUEST => self.shutdown(&req, &content),
            "kernel_info_request" => self.kernel_info(&req),
            other => tracing::warn!("unhandled control message type {other:?}, dropped"),
        }
    }

    fn kernel_info(&self, req: &Request) {
        let me = &self.shared.me;
        let info = self
            .shared
            .kernel_info
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.publish(me.status("busy", Some(&req.header)));
        self.send(
            req.channel,
            me.control_reply(req, "kernel_info_reply", &info),
        );
        self.publish(me.status("idle", Some(&req.header)));
    }

    /// Control reply, IOPub `shutdown_reply` (the Hub unregisters us on seeing it), then a
    /// `shutdown` item for the executor, and a fallback exit in case it never looks.
    fn shutdown(&self, req: &Request, content: &Value) {
        let me = &self.shared.me;
        let restart = content
            .get("restart")
            .cloned()
            .unwrap_or(Value::Bool(false));
        let c = json!({"status": "ok", "restart": restart});
        self.send(req.channel, me.control_reply(req, mt::SHUTDOWN_REPLY, &c));
        self.publish(me.iopub(mt::SHUTDOWN_REPLY, &c, Some(&req.header), None, vec![]));
        if self.shared.shutting_down.swap(true, Ordering::SeqCst) {
            return;
        }
        self.shared.queue.push_front(Arc::new(Request::shutdown()));
        if self.shared.exit_process {
            std::thread::spawn(|| {
                std::thread::sleep(Duration::from_secs(2));
                tracing::warn!("executor did not stop within 2 s of shutdown_request, exiting");
                std::process::exit(0);
            });
        }
    }
}

/// Error content for a control request that failed here, shaped like stock's `wrap_exception`
/// in the nanny (empty `engine_info`: no IOPub output follows).
fn engine_error(ename: &str, evalue: &str) -> Value {
    json!({
        "status": "error",
        "ename": ename,
        "evalue": evalue,
        "traceback": [format!("{ename}: {evalue}")],
        "engine_info": {},
    })
}

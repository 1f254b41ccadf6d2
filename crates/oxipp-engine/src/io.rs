//! The engine's sockets ([`Wire`]) and the IO thread.
//!
//! The engine's connections to the controller (shell, control, IOPub) are
//! [`oxipp_zmtp::Socket`]s: ZMTP spoken by the thread that uses the socket, so no library IO
//! thread wakes up (and preempts the executor) for every message. A socket is used by one
//! thread at a time, so they live behind one mutex; whoever releases it flushes what it
//! queued ([`WireGuard`]). The executor thread uses them itself for its own work (replies,
//! publishing, reading the shell socket while it waits for a request), which keeps the hot
//! path of a request free of thread hand-offs; the IO thread serves everything that must work
//! while user code runs: control (abort, signal, shutdown and kernel_info answered here), new
//! shell requests (verified and queued for the executor), buffered stream output and the
//! Jupyter kernel sockets.

use std::collections::HashSet;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use oxipp_wire::replay::DigestHistory;
use oxipp_wire::signing::Verdict;
use oxipp_wire::sockets::{recv_frames, send_frames};
use oxipp_wire::{msg_types as mt, Frame, Message};
use oxipp_zmtp::Socket;
use serde_json::{json, Value};

use crate::kernel::KernelSockets;
use crate::queue::{Channel, Kind, Request};
use crate::runtime::Shared;
use crate::signals;

/// How often buffered stream output is published while a request runs (and the longest an
/// unpublished `status: busy` waits, see [`Wire::pending_busy`]).
pub const STREAM_FLUSH: Duration = Duration::from_millis(50);

/// Most messages read from one socket in one go, so one busy channel cannot starve another.
const DRAIN_BATCH: usize = 1000;

/// The engine's connections to the controller.
pub struct IoSockets {
    /// ROUTER (identity = uuid) connected to mux, task and one broadcast leaf.
    pub shell: Socket,
    /// ROUTER (identity = uuid) connected to the controller's control socket.
    pub control: Socket,
    /// PUB connected to the controller's IOPub SUB.
    pub iopub: Socket,
}

/// The epoll descriptors of the [`IoSockets`] (level-triggered: readable while a connection
/// has input, or output the kernel did not take yet). Polled without the lock; valid as long
/// as the [`Wire`] (it owns the sockets, which live as long as the runtime's shared state).
#[derive(Debug, Clone, Copy)]
pub struct WireFds {
    pub shell: RawFd,
    pub control: RawFd,
    pub iopub: RawFd,
}

/// The engine's sockets and the state that goes with reading them. One mutex guards it
/// (`Shared::wire`, which hands out a [`WireGuard`]).
///
/// The zmtp sockets' descriptors are level-triggered, so a thread may sleep on one whenever
/// the socket's queue of decoded messages is empty ([`Wire::shell_dirty`] says it is not,
/// after a bounded read) — with one more rule: a due timer of a socket (a reconnect, a
/// handshake expiry; [`Socket::timeout`]) is only acted on inside a read, so a sleeper also
/// wakes when it is due and reads then, even if the descriptor is not ready.
/// Holders other than the IO thread that send on a socket only the IO thread reads (control,
/// the kernel's) ring the IO thread's bell afterwards.
pub struct Wire {
    s: IoSockets,
    fds: WireFds,
    /// msg_ids an `abort_request` named that have not arrived yet.
    aborted: HashSet<String>,
    /// Signatures already seen: a replayed message is dropped, as jupyter_client's Session
    /// does in stock engines (same capacity).
    digests: DigestHistory,
    /// The Jupyter kernel sockets, once `bind_kernel()` opened them.
    kernel: Option<Box<KernelSockets>>,
    /// `status: busy` of requests handed to the executor and not published yet. Published
    /// before anything else is sent (so before the request's output, reply and idle: the
    /// engine issues busy, outputs, reply, idle in the same order as before), or by the IO
    /// thread on its next wake-up, at most [`STREAM_FLUSH`] later (as stream output). A
    /// request that finishes quickly thus writes busy, outputs and idle in one `writev` on
    /// IOPub, then its reply on shell, when the executor releases the lock ([`WireGuard`]).
    /// What is ordered is each socket's messages; between IOPub and shell the wire thus
    /// carries busy, outputs, idle, reply (libzmq's IO thread mostly did the same), and
    /// clients relate the two by parent msg_id.
    pending_busy: Vec<Vec<Frame>>,
}

/// The lock on the [`Wire`]: on release it writes what its holder queued (one
/// `write`/`writev` per connection with queued bytes; IOPub first, so a request's output
/// and status are written before its reply).
pub(crate) struct WireGuard<'a>(pub(crate) MutexGuard<'a, Wire>);

impl Deref for WireGuard<'_> {
    type Target = Wire;
    fn deref(&self) -> &Wire {
        &self.0
    }
}

impl DerefMut for WireGuard<'_> {
    fn deref_mut(&mut self) -> &mut Wire {
        &mut self.0
    }
}

impl Drop for WireGuard<'_> {
    fn drop(&mut self) {
        self.0.flush();
    }
}

/// The descriptors the IO thread sleeps on besides its bell: the zmtp sockets' epoll
/// descriptors, and the kernel sockets' `ZMQ_FD`s (readable when the socket may have input).
struct Fds {
    wire: WireFds,
    kernel: Vec<RawFd>,
    /// When a zmtp socket's timer is due (see [`Wire`]), shell's separately.
    timer: Option<Duration>,
    shell_timer: Option<Duration>,
}

/// How long [`run`] keeps writing what is still queued when it stops (libzmq's linger).
const LINGER: Duration = Duration::from_secs(1);

/// The IO thread: serves the sockets whenever its bell rings, one of them may have input, or
/// [`STREAM_FLUSH`] passed; stops when `shared.stop` is set (and the bell rung).
pub fn run(shared: Arc<Shared>) {
    let mut last_flush = Instant::now();
    loop {
        let (fds, settled, stopping) = {
            let mut w = shared.wire();
            let settled = w.serve(&shared);
            if last_flush.elapsed() >= STREAM_FLUSH {
                w.flush_streams(&shared);
                last_flush = Instant::now();
            }
            w.publish_pending_busy();
            // armed under the lock: whatever another holder leaves behind after this rings
            shared.io_bell.arm();
            let stopping = shared.stop.load(Ordering::SeqCst);
            if stopping {
                w.flush_streams(&shared);
            }
            (w.fds(), settled, stopping)
        };
        if stopping {
            linger(&shared);
            return;
        }
        // the executor watches the shell socket itself while it waits for a request and
        // reads it before taking the next one; both sleeping on it would wake both for every
        // request (see ExecState)
        let (with_shell, recheck) = match shared.exec.io_watches_shell() {
            Ok(()) => (true, None),
            Err(recheck) => (false, recheck),
        };
        let mut items = vec![
            zmq::PollItem::from_fd(shared.io_bell.fd(), zmq::POLLIN),
            zmq::PollItem::from_fd(fds.wire.control, zmq::POLLIN),
            zmq::PollItem::from_fd(fds.wire.iopub, zmq::POLLIN),
        ];
        if with_shell {
            items.push(zmq::PollItem::from_fd(fds.wire.shell, zmq::POLLIN));
        }
        for fd in &fds.kernel {
            items.push(zmq::PollItem::from_fd(*fd, zmq::POLLIN));
        }
        let timeout = if settled {
            let mut left = STREAM_FLUSH.saturating_sub(last_flush.elapsed());
            for t in [recheck, fds.timer, fds.shell_timer.filter(|_| with_shell)]
                .into_iter()
                .flatten()
            {
                left = left.min(t);
            }
            // round up: a 0 ms poll before a timer is due would spin until it is
            left.as_micros().div_ceil(1000) as i64
        } else {
            0
        };
        if let Err(e) = zmq::poll(&mut items, timeout) {
            if e != zmq::Error::EINTR {
                tracing::warn!("IO poll failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        shared.io_bell.disarm(items[0].is_readable());
    }
}

/// Stopping: keeps doing the sockets' IO until everything queued is written, at most
/// [`LINGER`] (what is still queued then is lost, as with libzmq's linger).
fn linger(shared: &Shared) {
    let deadline = Instant::now() + LINGER;
    loop {
        let fds = {
            let mut w = shared.wire();
            w.pump();
            if w.queued_bytes() == 0 {
                return;
            }
            w.fds
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            tracing::warn!("stopping with output not yet written");
            return;
        }
        let mut items = [
            zmq::PollItem::from_fd(fds.shell, zmq::POLLIN),
            zmq::PollItem::from_fd(fds.control, zmq::POLLIN),
            zmq::PollItem::from_fd(fds.iopub, zmq::POLLIN),
        ];
        let _ = zmq::poll(&mut items, left.as_millis().clamp(1, 10) as i64);
    }
}

impl Wire {
    pub fn new(s: IoSockets) -> Wire {
        let fd = |s: &Socket| s.as_fd().as_raw_fd();
        Wire {
            fds: WireFds {
                shell: fd(&s.shell),
                control: fd(&s.control),
                iopub: fd(&s.iopub),
            },
            s,
            aborted: HashSet::new(),
            digests: DigestHistory::new(65536),
            kernel: None,
            pending_busy: Vec::new(),
        }
    }

    /// The shell socket's epoll descriptor (the executor sleeps on it while it waits).
    pub fn shell_fd(&self) -> RawFd {
        self.fds.shell
    }

    /// When the shell socket's next timer is due (`None`: no timer; see [`Wire`]).
    pub fn shell_timer(&self) -> Option<Duration> {
        self.s.shell.timeout()
    }

    fn fds(&self) -> Fds {
        let fd = |s: &oxipp_wire::sockets::Socket| s.get_fd().unwrap_or(-1);
        let timer = [self.s.control.timeout(), self.s.iopub.timeout()]
            .into_iter()
            .flatten()
            .min();
        Fds {
            wire: self.fds,
            kernel: self
                .kernel
                .as_ref()
                .map(|k| vec![fd(&k.control), fd(&k.shell), fd(&k.hb), fd(&k.stdin)])
                .unwrap_or_default(),
            timer,
            shell_timer: self.s.shell.timeout(),
        }
    }

    /// Writes what was queued on the zmtp sockets (IOPub first, see [`WireGuard`]).
    pub fn flush(&mut self) {
        self.s.iopub.flush();
        self.s.shell.flush();
        self.s.control.flush();
    }

    /// Bytes queued on the zmtp sockets and not yet taken by the kernel.
    fn queued_bytes(&self) -> usize {
        self.s.shell.queued_bytes() + self.s.control.queued_bytes() + self.s.iopub.queued_bytes()
    }

    /// One IO pass on IOPub (handshakes, subscriptions, reconnects, pending writes; a PUB
    /// receives nothing else) and the peer events of every socket, which are only logged.
    fn pump_iopub(&mut self) {
        while self.s.iopub.recv().is_some() {}
        for (name, s) in [
            ("shell", &mut self.s.shell),
            ("control", &mut self.s.control),
            ("IOPub", &mut self.s.iopub),
        ] {
            while let Some(e) = s.event() {
                tracing::debug!("{name}: {e:?}");
            }
        }
    }

    /// IO passes on all three sockets without reading requests (stopping).
    fn pump(&mut self) {
        self.s.shell.handle_io();
        self.s.control.handle_io();
        self.pump_iopub();
        self.flush();
    }

    /// Serve these Jupyter kernel sockets too (`bind_kernel()`); the caller rings the IO bell.
    pub fn adopt_kernel(&mut self, k: Box<KernelSockets>) {
        self.kernel = Some(k);
    }

    /// Everything the IO thread reads on a wake-up: control first, then the kernel's sockets,
    /// then shell (last, since the others may send on it). `false` when a socket may still
    /// have input after a bounded round (then the caller must not sleep).
    fn serve(&mut self, shared: &Shared) -> bool {
        let mut settled = self.drain(Channel::Control, shared);
        self.pump_iopub();
        if self.kernel.is_some() {
            settled &= self.drain(Channel::KernelControl, shared);
            settled &= self.drain(Channel::KernelShell, shared);
            settled &= self.echo_heartbeats();
            self.drop_stdin();
        }
        settled & self.settle_shell(shared)
    }

    /// Reads the shell socket until it is empty (the invariant above) and queues what it
    /// finds; `false` if it stopped after [`DRAIN_BATCH`] messages.
    pub fn settle_shell(&mut self, shared: &Shared) -> bool {
        self.drain(Channel::Shell, shared)
    }

    /// Whether the shell socket must be read before sleeping on it: a bounded read left
    /// decoded messages in its queue, which its descriptor does not signal (see [`Wire`]).
    pub fn shell_dirty(&self) -> bool {
        self.s.shell.has_pending()
    }

    /// Publishes the `status: busy` messages held back (see [`Wire::pending_busy`]).
    pub fn publish_pending_busy(&mut self) {
        for m in std::mem::take(&mut self.pending_busy) {
            self.publish_now(m);
        }
    }

    /// Holds `status: busy` back until the next IOPub message or IO thread wake-up.
    pub fn defer_busy(&mut self, frames: Vec<Frame>) {
        self.pending_busy.push(frames);
    }

    /// The Jupyter kernel's (libzmq) socket for `ch`, once `bind_kernel()` opened them.
    fn kernel_socket(&self, ch: Channel) -> Option<&oxipp_wire::sockets::Socket> {
        let k = self.kernel.as_ref()?;
        match ch {
            Channel::KernelShell => Some(&k.shell),
            Channel::KernelControl => Some(&k.control),
            Channel::Shell | Channel::Control => None,
        }
    }

    /// The next message on `ch`, without blocking (`None`: nothing, or no such socket).
    fn recv(&mut self, ch: Channel) -> Option<Vec<Frame>> {
        match ch {
            Channel::Shell => return self.s.shell.recv(),
            Channel::Control => return self.s.control.recv(),
            Channel::KernelShell | Channel::KernelControl => {}
        }
        match recv_frames(self.kernel_socket(ch)?, true) {
            Ok(f) => Some(f),
            Err(zmq::Error::EAGAIN) => None,
            Err(e) => {
                tracing::warn!("recv on {ch:?} failed: {e}");
                None
            }
        }
    }

    /// Jupyter's heartbeat: echo every ping on the kernel's REP socket. `false` if more may
    /// be waiting.
    fn echo_heartbeats(&self) -> bool {
        let Some(k) = &self.kernel else { return true };
        for _ in 0..100 {
            match recv_frames(&k.hb, true) {
                Ok(frames) => {
                    if let Err(e) = send_frames(&k.hb, frames) {
                        tracing::warn!("kernel heartbeat echo failed: {e}");
                    }
                }
                Err(_) => return true,
            }
        }
        false
    }

    /// Nothing here asks for input (`input()` raises in engines), so stdin messages are dropped.
    fn drop_stdin(&self) {
        let Some(k) = &self.kernel else { return };
        while recv_frames(&k.stdin, true).is_ok() {}
    }

    /// Sends `frames` on channel `ch`. Callers other than the IO thread settle the shell
    /// socket afterwards and ring the IO bell for the other channels.
    pub fn send(&mut self, ch: Channel, frames: Vec<Frame>) {
        // a reply never goes out before its request's busy
        self.publish_pending_busy();
        let sock = match ch {
            Channel::Shell => &mut self.s.shell,
            Channel::Control => &mut self.s.control,
            Channel::KernelShell | Channel::KernelControl => {
                let Some(k) = self.kernel_socket(ch) else {
                    tracing::warn!("no {ch:?} socket to send on");
                    return;
                };
                if let Err(e) = send_frames(k, frames.iter()) {
                    tracing::warn!("send on {ch:?} failed: {e}");
                }
                return;
            }
        };
        // queued; written when the lock is released (WireGuard)
        if let Err(e) = sock.send(frames) {
            tracing::warn!("send on {ch:?} failed: {e}");
        }
    }

    /// Publishes on IOPub, after any `status: busy` held back.
    pub fn publish(&mut self, frames: Vec<Frame>) {
        self.publish_pending_busy();
        self.publish_now(frames);
    }

    /// IOPub goes to the controller and, after `bind_kernel()`, to the kernel's subscribers
    /// (each client keeps what has its own session as parent).
    fn publish_now(&mut self, frames: Vec<Frame>) {
        if let Some(k) = &self.kernel {
            if let Err(e) = send_frames(&k.iopub, frames.iter()) {
                tracing::warn!("kernel IOPub send failed: {e}");
            }
        }
        if let Err(e) = self.s.iopub.send(frames) {
            tracing::warn!("IOPub send failed: {e}");
        }
    }

    /// Publishes buffered stream output (after any `status: busy` held back).
    pub fn flush_streams(&mut self, shared: &Shared) {
        let msgs = shared
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(&shared.me);
        for m in msgs {
            self.publish(m);
        }
    }

    fn abort(&mut self, shared: &Shared, r: &Request) {
        tracing::info!("aborting {} {}", r.msg_type, r.msg_id);
        self.send(r.channel, shared.me.aborted(r));
    }

    /// Answers every queued shell request `aborted` (stop-on-error, `abort_request []`), after
    /// queueing what already arrived. Returns the channels replies went to.
    pub fn abort_queued(&mut self, shared: &Shared) -> Vec<Channel> {
        self.settle_shell(shared);
        let aborted = shared.queue.remove_shell(|_| true);
        for r in &aborted {
            self.abort(shared, r);
        }
        aborted.iter().map(|r| r.channel).collect()
    }

    /// Reads every message waiting on one socket, up to [`DRAIN_BATCH`]; `true` when it found
    /// the socket empty.
    fn drain(&mut self, ch: Channel, shared: &Shared) -> bool {
        for _ in 0..DRAIN_BATCH {
            let Some(frames) = self.recv(ch) else {
                return true;
            };
            if let Some((msg_type, msg_id, m)) = self.verify(shared, ch, frames) {
                match ch {
                    Channel::Shell | Channel::KernelShell => {
                        self.on_shell(shared, ch, msg_type, msg_id, m)
                    }
                    Channel::Control | Channel::KernelControl => {
                        self.on_control(shared, ch, msg_type, msg_id, m)
                    }
                }
            }
        }
        false
    }

    /// Parses and checks a message; garbage and bad signatures are logged and dropped.
    fn verify(
        &mut self,
        shared: &Shared,
        ch: Channel,
        frames: Vec<Frame>,
    ) -> Option<(String, String, Message)> {
        let m = match Message::parse(frames) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("dropping unparseable message on {ch:?}: {e}");
                return None;
            }
        };
        let (verdict, digest) = shared
            .me
            .session
            .signer()
            .check(&m.signature, m.signed_parts());
        if verdict != Verdict::Valid {
            tracing::warn!("dropping message with {verdict:?} signature on {ch:?}");
            return None;
        }
        if digest.is_some_and(|d| !self.digests.insert(d)) {
            tracing::warn!("dropping replayed message on {ch:?}");
            return None;
        }
        match m.header_fields() {
            Ok(h) => Some((h.msg_type, h.msg_id, m)),
            Err(e) => {
                tracing::warn!("dropping message with bad header on {ch:?}: {e}");
                None
            }
        }
    }

    fn on_shell(
        &mut self,
        shared: &Shared,
        ch: Channel,
        msg_type: String,
        msg_id: String,
        m: Message,
    ) {
        let req = Request::from_message(Kind::Shell, ch, msg_type, msg_id, m);
        if req.msg_type == "kernel_info_request" {
            return self.kernel_info(shared, &req);
        }
        if self.aborted.remove(&req.msg_id) {
            return self.abort(shared, &req);
        }
        shared.queue.push_back(Arc::new(req));
    }

    fn on_control(
        &mut self,
        shared: &Shared,
        ch: Channel,
        msg_type: String,
        msg_id: String,
        m: Message,
    ) {
        let req = Request::from_message(Kind::Clear, ch, msg_type, msg_id, m);
        let content: Value = serde_json::from_slice(&req.content).unwrap_or(Value::Null);
        let me = &shared.me;
        match req.msg_type.as_str() {
            mt::CLEAR_REQUEST => shared.queue.push_front(Arc::new(req)),
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
                    self.abort_queued(shared);
                } else {
                    let queued = shared.queue.remove_shell(|r| ids.contains(&r.msg_id));
                    for r in &queued {
                        self.abort(shared, r);
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
            mt::SHUTDOWN_REQUEST => self.shutdown(shared, &req, &content),
            "kernel_info_request" => self.kernel_info(shared, &req),
            other => tracing::warn!("unhandled control message type {other:?}, dropped"),
        }
    }

    fn kernel_info(&mut self, shared: &Shared, req: &Request) {
        let me = &shared.me;
        let info = shared
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
    fn shutdown(&mut self, shared: &Shared, req: &Request, content: &Value) {
        let me = &shared.me;
        let restart = content
            .get("restart")
            .cloned()
            .unwrap_or(Value::Bool(false));
        let c = json!({"status": "ok", "restart": restart});
        self.send(req.channel, me.control_reply(req, mt::SHUTDOWN_REPLY, &c));
        self.publish(me.iopub(mt::SHUTDOWN_REPLY, &c, Some(&req.header), None, vec![]));
        if shared.shutting_down.swap(true, Ordering::SeqCst) {
            return;
        }
        shared.queue.push_front(Arc::new(Request::shutdown()));
        if shared.exit_process {
            let capture = shared.capture.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(2));
                tracing::warn!("executor did not stop within 2 s of shutdown_request, exiting");
                if let Some(cap) = capture {
                    cap.stop_to_originals();
                }
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

//! [`Runtime`]: one registered engine and its threads (section 1 of docs/engine-runtime.md).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use oxipp_wire::sockets::Context;
use oxipp_wire::{dates, session, Frame, Session, Signer};
use oxipp_zmtp::{Socket, SocketType};
use serde_json::{json, Value};

use crate::bell::Bell;
use crate::conn::Endpoints;
use crate::fdcap::{FdCapture, Sink};
use crate::io::{self, IoSockets, Wire, WireGuard};
use crate::queue::{Channel, Kind, Queue, Request};
use crate::reply::{Identity, StreamBuf};
use crate::{heart, registration, EngineError};

/// How to start an engine.
#[derive(Debug, Clone)]
pub struct Options {
    /// Text of `ipcontroller-engine.json`.
    pub connection_json: String,
    pub requested_id: Option<u32>,
    /// Registration reply wait (`IPEngine.timeout`).
    pub timeout: Duration,
    /// Watchdog: give up after this many heartbeat checks without a ping.
    pub max_heartbeat_misses: u32,
    /// Exit the process when the watchdog fires or a shutdown is not honoured within 2 s.
    /// `false` in tests, where the process is the test binary: then the watchdog only queues
    /// a `shutdown` item.
    pub exit_process: bool,
    /// Session id / routing identity (random when `None`).
    pub uuid: Option<String>,
    /// Redirect file descriptors 1 and 2 into pipes whose output becomes `stream` messages
    /// (see [`crate::fdcap`]). Only for a process that is an engine: `false` by default (tests
    /// run runtimes inside the test binary).
    pub capture_fds: bool,
}

impl Options {
    pub fn new(connection_json: impl Into<String>) -> Self {
        Options {
            connection_json: connection_json.into(),
            requested_id: None,
            timeout: Duration::from_secs(5),
            max_heartbeat_misses: 50,
            exit_process: true,
            uuid: None,
            capture_fds: false,
        }
    }
}

/// State shared by the IO thread and the callers.
pub(crate) struct Shared {
    pub me: Identity,
    pub queue: Queue,
    /// The sockets; see [`Wire`] for who uses them when.
    pub wire: Mutex<Wire>,
    /// Wakes the IO thread (stop, new kernel sockets, a send on a socket only it reads).
    pub io_bell: Bell,
    /// The shell socket's (epoll) descriptor, which the executor polls while it waits.
    pub shell_fd: RawFd,
    /// Whether the executor watches the shell socket (see [`ExecState`]).
    pub exec: ExecState,
    pub streams: Mutex<StreamBuf>,
    pub kernel_info: Mutex<Value>,
    pub stop: Arc<AtomicBool>,
    pub exit_process: bool,
    pub shutting_down: AtomicBool,
    /// Descriptors 1 and 2 read into `streams` (`Options::capture_fds`).
    pub capture: Option<Arc<FdCapture>>,
    /// Header of the request running or run last: the parent of captured fd output (as the
    /// Python streams' parent, which is the same request).
    pub parent: Mutex<Option<Frame>>,
}

impl Sink for Shared {
    fn push(&self, name: &str, text: &str) {
        let parent = self
            .parent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name, parent, text);
    }

    /// Text buffered after the IO thread's last flush would never be sent.
    fn accepting(&self) -> bool {
        !self.stop.load(Ordering::SeqCst)
    }
}

/// A registered engine: heart and IO threads running, requests arriving in a queue.
pub struct Runtime {
    pub id: u32,
    pub uuid: String,
    pub hb_period: Duration,
    /// The controller does not notice this engine's death by its closed connections (a
    /// stock controller): a nanny process should report it (see `oxipp.engine.nanny`).
    pub needs_nanny: bool,
    pub connection_json: String,
    shared: Arc<Shared>,
    /// libzmq, only for the `bind_kernel()` sockets (no IO thread until they are made).
    ctx: Context,
    endpoints: Endpoints,
    closed: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    kernel_ports: Mutex<Option<crate::KernelPorts>>,
}

fn default_kernel_info() -> Value {
    json!({
        "status": "ok",
        "protocol_version": oxipp_wire::PROTOCOL_VERSION,
        "implementation": "oxipp",
        "implementation_version": env!("CARGO_PKG_VERSION"),
        "language_info": {"name": "python"},
        "banner": "",
        "help_links": [],
    })
}

impl Runtime {
    /// Registers with the controller, connects every channel and starts the threads.
    pub fn start(opts: Options) -> Result<Runtime, EngineError> {
        oxipp_wire::alloc::keep_large_buffers_on_heap();
        let ep = Endpoints::parse(&opts.connection_json)?;
        let signer =
            Signer::new(ep.key.as_bytes(), &ep.signature_scheme).map_err(EngineError::Config)?;
        let uuid = opts.uuid.clone().unwrap_or_else(session::new_id);
        let session = Session::new(uuid.clone(), signer);
        let ctx = Context::new();
        let granted = registration::register(&ep, &session, opts.requested_id, opts.timeout)?;
        let id = granted.id;

        let sock = |kind, urls: &[&String]| -> Result<Socket, EngineError> {
            let mut s = Socket::new(kind, socket_options(&uuid))
                .map_err(|e| EngineError::Io(format!("socket: {e}")))?;
            for url in urls {
                s.connect(url)
                    .map_err(|e| EngineError::Config(format!("cannot connect to {url}: {e}")))?;
            }
            Ok(s)
        };
        let shell = sock(
            SocketType::Router,
            &[
                &ep.mux,
                &ep.task,
                &ep.broadcast[id as usize % ep.broadcast.len()],
            ],
        )?;
        let control = sock(SocketType::Router, &[&ep.control])?;
        let iopub = sock(SocketType::Pub, &[&ep.iopub])?;
        let wire = Wire::new(IoSockets {
            shell,
            control,
            iopub,
        });
        let bell_err = |e: std::io::Error| EngineError::Invalid(format!("wake-up pipe: {e}"));

        let stop = Arc::new(AtomicBool::new(false));
        let capture = if opts.capture_fds {
            match FdCapture::start(&[(1, "stdout"), (2, "stderr")]) {
                Ok(c) => Some(Arc::new(c)),
                Err(e) => {
                    tracing::warn!("output written to fds 1 and 2 will not reach clients: {e}");
                    None
                }
            }
        } else {
            None
        };
        let shared = Arc::new(Shared {
            me: Identity { session, id },
            queue: Queue::new().map_err(bell_err)?,
            shell_fd: wire.shell_fd(),
            wire: Mutex::new(wire),
            io_bell: Bell::new().map_err(bell_err)?,
            exec: ExecState::new(),
            streams: Mutex::new(StreamBuf::default()),
            kernel_info: Mutex::new(default_kernel_info()),
            stop: stop.clone(),
            exit_process: opts.exit_process,
            shutting_down: AtomicBool::new(false),
            capture,
            parent: Mutex::new(None),
        });
        if let Some(cap) = &shared.capture {
            if let Err(e) = cap.spawn_reader(shared.clone()) {
                tracing::warn!("cannot start the fd reader thread, fds 1 and 2 restored: {e}");
                cap.stop(&*shared);
            }
        }
        let mut threads = Vec::new();
        let io_shared = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("oxipp-engine-io".into())
                .spawn(move || io::run(io_shared))
                .map_err(|e| EngineError::Invalid(format!("spawn IO thread: {e}")))?,
        );
        let (hep, huuid) = (ep.clone(), uuid.clone());
        let hshared = shared.clone();
        let max = opts.max_heartbeat_misses;
        let period = granted.hb_period;
        threads.push(
            std::thread::Builder::new()
                .name("oxipp-engine-heart".into())
                .spawn(move || {
                    let e2 = hep.clone();
                    heart::run(hep, huuid, period, max, stop, move || {
                        registration::unregister(&e2, &hshared.me.session, Some(hshared.me.id));
                        if hshared.exit_process {
                            if let Some(cap) = &hshared.capture {
                                cap.stop_to_originals(); // no controller to send it to
                            }
                            std::process::exit(1);
                        }
                        hshared.shutting_down.store(true, Ordering::SeqCst);
                        hshared.queue.push_front(Arc::new(Request::shutdown()));
                    })
                })
                .map_err(|e| EngineError::Invalid(format!("spawn heart thread: {e}")))?,
        );
        tracing::info!("registered as engine {id} ({uuid})");
        Ok(Runtime {
            id,
            uuid,
            hb_period: granted.hb_period,
            needs_nanny: !granted.notices_closed_connections,
            connection_json: opts.connection_json,
            shared,
            ctx,
            endpoints: ep,
            closed: AtomicBool::new(false),
            threads: Mutex::new(threads),
            kernel_ports: Mutex::new(None),
        })
    }

    /// The next request, waiting up to `timeout` (`None` = forever). Shell and clear requests
    /// are stamped `started` and announced with status `busy` as they are handed out (the
    /// busy message is held back until the next IOPub message, see `Wire::pending_busy`).
    ///
    /// While it waits, this thread reads the shell socket itself: a request arriving at an
    /// idle engine wakes only this thread, not the IO thread too.
    pub fn next_request(&self, timeout: Option<Duration>) -> Option<Arc<Request>> {
        let sh = &*self.shared;
        let deadline = timeout.map(|t| Instant::now() + t);
        // the shell socket is read when its descriptor signalled, a bounded read left decoded
        // messages behind, or one of its timers (a reconnect) is due
        let mut shell_signalled = false;
        loop {
            let shell_timer;
            {
                let mut w = sh.wire();
                // a due timer is acted on only by a read (see `Wire`)
                let due = w.shell_timer().is_some_and(|t| t.is_zero());
                let settled = !(shell_signalled || due || w.shell_dirty()) || w.settle_shell(sh);
                shell_timer = w.shell_timer();
                if let Some(r) = sh.queue.try_pop() {
                    sh.exec.active();
                    if r.kind != Kind::Shutdown {
                        let _ = r.started.set(dates::now_iso());
                        w.defer_busy(sh.me.status("busy", Some(&r.header)));
                    }
                    drop(w);
                    self.set_parent(&r);
                    return Some(r);
                }
                if !settled {
                    continue;
                }
            }
            let left = match deadline {
                None => None,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    Some(left)
                }
            };
            let wait_ms = match [left, shell_timer].into_iter().flatten().min() {
                None => -1,
                // round up: a 0 ms poll would spin until the deadline or timer
                Some(w) => w.as_micros().div_ceil(1000) as i64,
            };
            let bell = sh.queue.bell();
            sh.exec.watch();
            bell.arm();
            if !sh.queue.is_empty() {
                bell.disarm(false);
                sh.exec.active();
                continue;
            }
            let mut items = [
                zmq::PollItem::from_fd(bell.fd(), zmq::POLLIN),
                zmq::PollItem::from_fd(sh.shell_fd, zmq::POLLIN),
            ];
            // EINTR (a signal for Python) ends the wait early: the caller checks signals
            let interrupted = zmq::poll(&mut items, wait_ms).is_err();
            sh.exec.active();
            bell.disarm(items[0].is_readable());
            shell_signalled = items[1].is_readable();
            if interrupted && timeout.is_some() {
                return sh.queue.try_pop().map(|r| self.hand_out(r));
            }
        }
    }

    /// Stamps and announces a request popped outside `next_request`'s locked section.
    fn hand_out(&self, r: Arc<Request>) -> Arc<Request> {
        if r.kind != Kind::Shutdown {
            let _ = r.started.set(dates::now_iso());
            let busy = self.shared.me.status("busy", Some(&r.header));
            self.shared.wire().defer_busy(busy);
        }
        self.set_parent(&r);
        r
    }

    /// A shell request handed out becomes the parent of captured fd output.
    fn set_parent(&self, r: &Request) {
        if r.kind == Kind::Shell && self.shared.capture.is_some() {
            *self.shared.parent.lock().unwrap_or_else(|e| e.into_inner()) = Some(r.header.clone());
        }
    }

    /// Moves what the fd pipes hold now into the stream buffer (see [`crate::fdcap`]): called
    /// before every reply, publish and stream write, so output written to fds 1/2 before them
    /// goes out before them. Never with the sockets' or the streams' lock held.
    fn drain_fds(&self) {
        if let Some(cap) = &self.shared.capture {
            cap.drain(&*self.shared);
        }
    }

    /// The original descriptors 1 and 2 while they are captured (the engine's own output and
    /// logs go there), else `None`.
    pub fn original_fds(&self) -> Option<(RawFd, RawFd)> {
        let o = self.shared.capture.as_ref()?.originals();
        Some((o[0], o[1]))
    }

    /// Sends the reply to `req` (after its buffered output), then status `idle`.
    pub fn reply(
        &self,
        req: &Request,
        content_json: &str,
        buffers: Vec<Frame>,
        status: &str,
        dependencies_met: bool,
    ) -> Result<(), EngineError> {
        let content = parse_object(content_json)?;
        let me = &self.shared.me;
        let frames = match req.kind {
            Kind::Shell => me.reply(req, &content, buffers, status, dependencies_met),
            Kind::Clear => me.control_reply(req, oxipp_wire::msg_types::CLEAR_REPLY, &content),
            Kind::Shutdown => return Ok(()),
        };
        let idle = me.status("idle", Some(&req.header));
        self.drain_fds();
        let mut w = self.shared.wire();
        w.flush_streams(&self.shared);
        w.send(req.channel, frames);
        w.publish(idle);
        drop(w);
        if req.channel != Channel::Shell {
            self.shared.io_bell.ring(); // a socket only the IO thread reads was used
        }
        Ok(())
    }

    /// Publishes an IOPub message (topic from `msg_type` unless given).
    pub fn publish(
        &self,
        msg_type: &str,
        content_json: &str,
        parent: Option<&Request>,
        topic: Option<&str>,
        buffers: Vec<Frame>,
    ) -> Result<(), EngineError> {
        let content = parse_object(content_json)?;
        let frames = self.shared.me.iopub(
            msg_type,
            &content,
            parent.map(|p| &p.header),
            topic,
            buffers,
        );
        self.drain_fds();
        let mut w = self.shared.wire();
        // output printed before this message must appear before it
        w.flush_streams(&self.shared);
        w.publish(frames);
        Ok(())
    }

    /// Buffers stream text; the IO thread publishes it every 50 ms and before the reply.
    pub fn stream(&self, name: &str, text: &str, parent: Option<&Request>) {
        // what was written to fds 1/2 before this text goes before it
        self.drain_fds();
        self.shared
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name, parent.map(|p| p.header.clone()), text);
    }

    /// Answers every queued shell request `aborted`. The queue is emptied here, not in the IO
    /// thread, so the executor's next `next_request` cannot pick up a request being aborted.
    pub fn abort_queued(&self) {
        let channels = self.shared.wire().abort_queued(&self.shared);
        if channels.iter().any(|c| *c != Channel::Shell) {
            self.shared.io_bell.ring(); // a socket only the IO thread reads was used
        }
    }

    /// Sets the `kernel_info_reply` content (must be a JSON object).
    pub fn set_kernel_info(&self, json: &str) -> Result<(), EngineError> {
        let v = parse_object(json)?;
        *self
            .shared
            .kernel_info
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = v;
        Ok(())
    }

    /// Number of requests waiting for the executor.
    pub fn queued(&self) -> usize {
        self.shared.queue.len()
    }

    /// Opens Jupyter kernel sockets on `ip` and serves them from now on (`bind_kernel()`); the
    /// caller writes the connection file. Once per engine: later calls return the same ports.
    pub fn bind_kernel(&self, ip: &str) -> Result<crate::KernelPorts, EngineError> {
        let mut bound = self.kernel_ports.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ports) = *bound {
            return Ok(ports);
        }
        let (sockets, ports) = crate::kernel::bind_all(&self.ctx, ip)?;
        self.shared.wire().adopt_kernel(Box::new(sockets));
        self.shared.io_bell.ring(); // to poll them
        *bound = Some(ports);
        Ok(ports)
    }

    /// Unregisters and stops the threads (after sending what is still queued). Idempotent.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.stop_capture();
        registration::unregister(&self.endpoints, &self.shared.me.session, Some(self.id));
        self.stop_threads();
    }

    /// Restores fds 1 and 2 and queues what is left in the pipes for the IO thread's last
    /// flush (or writes it to the original descriptors if that flush already happened).
    fn stop_capture(&self) {
        if let Some(cap) = &self.shared.capture {
            cap.stop(&*self.shared);
        }
    }

    fn stop_threads(&self) {
        self.stop_capture();
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.io_bell.ring();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// What the executor thread is doing, so that one thread, not two, sleeps on the shell
/// socket: the executor while it waits for a request, the IO thread once the executor has been
/// running one for [`ExecState::TAKEOVER`] (user code may run for hours, and shell requests
/// must still be queued, aborted and answered kernel_info meanwhile). Below that, requests
/// that arrive wait in the socket until the executor asks for the next one, which it does by
/// reading the socket.
pub(crate) struct ExecState {
    epoch: Instant,
    watching: AtomicBool,
    /// When the executor last became active (ms since `epoch`).
    active_since: AtomicU64,
}

impl ExecState {
    pub const TAKEOVER: Duration = Duration::from_millis(10);

    fn new() -> ExecState {
        ExecState {
            epoch: Instant::now(),
            watching: AtomicBool::new(false),
            active_since: AtomicU64::new(0),
        }
    }

    fn watch(&self) {
        self.watching.store(true, Ordering::SeqCst);
    }

    fn active(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.active_since.store(now, Ordering::SeqCst);
        self.watching.store(false, Ordering::SeqCst);
    }

    /// For the IO thread: `Ok(())` = watch the shell socket; `Err(d)` = leave it to the
    /// executor, and look again within `d` (`None`: no need).
    pub fn io_watches_shell(&self) -> Result<(), Option<Duration>> {
        if self.watching.load(Ordering::SeqCst) {
            return Err(None);
        }
        let since = Duration::from_millis(self.active_since.load(Ordering::SeqCst));
        let busy = self.epoch.elapsed().saturating_sub(since);
        match Self::TAKEOVER.checked_sub(busy) {
            Some(left) if !left.is_zero() => Err(Some(left)),
            _ => Ok(()),
        }
    }
}

impl Shared {
    /// The sockets' lock; what the holder queued is written when it is released.
    pub(crate) fn wire(&self) -> WireGuard<'_> {
        // a panic while holding the lock leaves the sockets usable
        WireGuard(self.wire.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for Runtime {
    /// Stops the threads without unregistering (an engine that vanishes is what the Hub's
    /// heartbeat monitor is for; `close` is the polite way).
    fn drop(&mut self) {
        self.stop_threads();
    }
}

/// The controller-facing sockets' options: identity = the engine's uuid (the controller
/// routes to the engine by it), libzmq's defaults otherwise. Sends to a peer that went away
/// are dropped with a warning (`router_mandatory`).
pub(crate) fn socket_options(uuid: &str) -> oxipp_zmtp::Options {
    oxipp_zmtp::Options {
        identity: Bytes::copy_from_slice(uuid.as_bytes()),
        ..Default::default()
    }
}

fn parse_object(text: &str) -> Result<Value, EngineError> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(EngineError::Invalid("content must be a JSON object".into())),
        Err(e) => Err(EngineError::Invalid(format!("content is not JSON: {e}"))),
    }
}

/// Converts owned byte vectors to frames (for callers outside this crate).
pub fn frames(v: Vec<Vec<u8>>) -> Vec<Frame> {
    v.into_iter().map(Bytes::from).collect()
}

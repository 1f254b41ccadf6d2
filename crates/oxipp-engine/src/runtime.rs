//! [`Runtime`]: one registered engine and its threads (section 1 of docs/engine-runtime.md).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use oxipp_wire::sockets::{new_socket, Context, Socket, SocketSpec, SocketType};
use oxipp_wire::{dates, session, Frame, Session, Signer};
use serde_json::{json, Value};

use crate::conn::Endpoints;
use crate::io::{self, Cmd, IoSockets};
use crate::queue::{Kind, Queue, Request};
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
        }
    }
}

/// State shared by the IO thread and the callers.
pub(crate) struct Shared {
    pub me: Identity,
    pub queue: Queue,
    pub streams: Mutex<StreamBuf>,
    pub kernel_info: Mutex<Value>,
    pub stop: Arc<AtomicBool>,
    pub exit_process: bool,
    pub shutting_down: AtomicBool,
}

/// A registered engine: heart and IO threads running, requests arriving in a queue.
pub struct Runtime {
    pub id: u32,
    pub uuid: String,
    pub hb_period: Duration,
    pub connection_json: String,
    shared: Arc<Shared>,
    cmds: Mutex<mpsc::Sender<Cmd>>,
    wake: Mutex<Socket>,
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
        let granted = registration::register(&ctx, &ep, &session, opts.requested_id, opts.timeout)?;
        let id = granted.id;

        let ident = Some(uuid.as_bytes());
        let sock = |kind| {
            new_socket(
                &ctx,
                kind,
                &SocketSpec {
                    identity: ident,
                    subscribe_all: false,
                },
            )
        };
        let shell = sock(SocketType::ROUTER)?;
        for url in [
            &ep.mux,
            &ep.task,
            &ep.broadcast[id as usize % ep.broadcast.len()],
        ] {
            shell.connect(url)?;
        }
        let control = sock(SocketType::ROUTER)?;
        control.connect(&ep.control)?;
        let iopub = sock(SocketType::PUB)?;
        iopub.connect(&ep.iopub)?;
        let wake_addr = format!("inproc://oxipp-engine-wake-{uuid}");
        let wake_rx = ctx.socket(SocketType::PULL)?;
        wake_rx.bind(&wake_addr)?;
        let wake = ctx.socket(SocketType::PUSH)?;
        wake.set_linger(0)?;
        wake.connect(&wake_addr)?;

        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            me: Identity { session, id },
            queue: Queue::default(),
            streams: Mutex::new(StreamBuf::default()),
            kernel_info: Mutex::new(default_kernel_info()),
            stop: stop.clone(),
            exit_process: opts.exit_process,
            shutting_down: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel();
        let mut threads = Vec::new();
        let io_shared = shared.clone();
        let sockets = IoSockets {
            shell,
            control,
            iopub,
            wake: wake_rx,
        };
        threads.push(
            std::thread::Builder::new()
                .name("oxipp-engine-io".into())
                .spawn(move || io::run(io_shared, sockets, rx))
                .map_err(|e| EngineError::Invalid(format!("spawn IO thread: {e}")))?,
        );
        let (hctx, hep, huuid) = (ctx.clone(), ep.clone(), uuid.clone());
        let hshared = shared.clone();
        let max = opts.max_heartbeat_misses;
        let period = granted.hb_period;
        threads.push(
            std::thread::Builder::new()
                .name("oxipp-engine-heart".into())
                .spawn(move || {
                    let (c2, e2) = (hctx.clone(), hep.clone());
                    heart::run(hctx, hep, huuid, period, max, stop, move || {
                        registration::unregister(
                            &c2,
                            &e2,
                            &hshared.me.session,
                            Some(hshared.me.id),
                        );
                        if hshared.exit_process {
                            // let the unregistration leave (linger) before exiting
                            std::thread::sleep(Duration::from_millis(200));
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
            connection_json: opts.connection_json,
            shared,
            cmds: Mutex::new(tx),
            wake: Mutex::new(wake),
            ctx,
            endpoints: ep,
            closed: AtomicBool::new(false),
            threads: Mutex::new(threads),
            kernel_ports: Mutex::new(None),
        })
    }

    fn submit(&self, cmds: impl IntoIterator<Item = Cmd>) {
        {
            let tx = self.cmds.lock().unwrap_or_else(|e| e.into_inner());
            for c in cmds {
                let _ = tx.send(c);
            }
        }
        let _ = self
            .wake
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(&b""[..], zmq::DONTWAIT);
    }

    /// The next request, waiting up to `timeout` (`None` = forever). Shell requests are stamped
    /// `started` and announced with status `busy` as they are handed out.
    pub fn next_request(&self, timeout: Option<Duration>) -> Option<Arc<Request>> {
        let r = self.shared.queue.pop(timeout)?;
        if r.kind != Kind::Shutdown {
            let _ = r.started.set(dates::now_iso());
            self.submit([Cmd::Publish(self.shared.me.status("busy", Some(&r.header)))]);
        }
        Some(r)
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
        let mut cmds: Vec<Cmd> = self.take_streams().into_iter().map(Cmd::Publish).collect();
        let frames = match req.kind {
            Kind::Shell => me.reply(req, &content, buffers, status, dependencies_met),
            Kind::Clear => me.control_reply(req, oxipp_wire::msg_types::CLEAR_REPLY, &content),
            Kind::Shutdown => return Ok(()),
        };
        cmds.push(Cmd::Send(req.channel, frames));
        cmds.push(Cmd::Publish(me.status("idle", Some(&req.header))));
        self.submit(cmds);
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
        // output printed before this message must appear before it
        let mut cmds: Vec<Cmd> = self.take_streams().into_iter().map(Cmd::Publish).collect();
        cmds.push(Cmd::Publish(self.shared.me.iopub(
            msg_type,
            &content,
            parent.map(|p| &p.header),
            topic,
            buffers,
        )));
        self.submit(cmds);
        Ok(())
    }

    /// Buffers stream text; the IO thread publishes it every 50 ms and before the reply.
    pub fn stream(&self, name: &str, text: &str, parent: Option<&Request>) {
        self.shared
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name, parent.map(|p| p.header.clone()), text);
    }

    /// Answers every queued shell request `aborted`. The queue is emptied here, not in the IO
    /// thread, so the executor's next `next_request` cannot pick up a request being aborted.
    pub fn abort_queued(&self) {
        let me = &self.shared.me;
        let aborted = self.shared.queue.remove_shell(|_| true);
        self.submit(aborted.iter().map(|r| Cmd::Send(r.channel, me.aborted(r))));
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
        self.submit([Cmd::AdoptKernel(Box::new(sockets))]);
        *bound = Some(ports);
        Ok(ports)
    }

    /// Unregisters and stops the threads (after sending what is still queued). Idempotent.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        registration::unregister(
            &self.ctx,
            &self.endpoints,
            &self.shared.me.session,
            Some(self.id),
        );
        self.stop_threads();
    }

    fn stop_threads(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.submit([]);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }

    fn take_streams(&self) -> Vec<Vec<Frame>> {
        self.shared
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(&self.shared.me)
    }
}

impl Drop for Runtime {
    /// Stops the threads without unregistering (an engine that vanishes is what the Hub's
    /// heartbeat monitor is for; `close` is the polite way).
    fn drop(&mut self) {
        self.stop_threads();
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

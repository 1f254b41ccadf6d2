//! Fake peers for the controller's integration tests (test layer 2 of ARCHITECTURE.md):
//! a controller started with `shell::serve` in a thread on a fresh temporary profile, fake
//! engines and fake clients that open the same sockets as stock ipyparallel peers, and
//! helpers that wait with deadlines (never sleep-and-hope).
//!
//! `oxipp-bench` has simulated engines too, but it is a binary crate (no library to depend
//! on), and a test engine needs more control (stop heartbeating, hold replies back, send
//! garbage) than a benchmark engine, so these are separate and small.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use oxipp_controller::{shell, Config};
use oxipp_wire::connection::{read_json, ClientInfo, EngineInfo};
use oxipp_wire::signing::Verdict;
use oxipp_wire::sockets::{new_socket, recv_frames, send_frames, SocketSpec};
use oxipp_wire::{dates, msg_types as mt, Frame, Message, Session, Signer};
use serde_json::{json, Value};
use zmq::{Context, Socket, SocketType};

/// Heartbeat period every test controller runs with (`--ping`).
pub const PING_MS: u64 = 100;
/// How long "eventually" may take; generous because other builds share the CPUs.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// How long we watch for something that must *not* happen.
pub const QUIET: Duration = Duration::from_millis(300);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name unique within this machine's test runs.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

pub fn fr(b: &[u8]) -> Frame {
    Bytes::copy_from_slice(b)
}

pub fn json_of(raw: &[u8]) -> Value {
    serde_json::from_slice(raw).expect("JSON frame")
}

pub fn msg_type(m: &Message) -> String {
    m.header_fields().expect("header").msg_type
}

pub fn msg_id(m: &Message) -> String {
    m.header_fields().expect("header").msg_id
}

pub fn parent_id(m: &Message) -> String {
    m.parent_id()
        .ok()
        .and_then(|p| p.msg_id)
        .unwrap_or_default()
}

pub fn content(m: &Message) -> Value {
    json_of(&m.content)
}

pub fn metadata(m: &Message) -> Value {
    json_of(&m.metadata)
}

pub fn header(m: &Message) -> Value {
    json_of(&m.header)
}

/// Asserts a controller-made error of class `ename` (`engine_info: {}`, spec §3.1).
pub fn assert_error(c: &Value, ename: &str) {
    assert_eq!(c["status"], "error", "not an error: {c}");
    assert_eq!(c["ename"], ename, "wrong exception class: {c}");
    assert_eq!(
        c["engine_info"],
        json!({}),
        "controller errors need an empty engine_info: {c}"
    );
}

/// Receives one message within `timeout`.
pub fn recv_within(s: &Socket, timeout: Duration) -> Option<Vec<Frame>> {
    let deadline = Instant::now() + timeout;
    loop {
        match recv_frames(s, true) {
            Ok(f) => return Some(f),
            Err(zmq::Error::EAGAIN) => {}
            Err(e) => panic!("recv failed: {e}"),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let ms = left.as_millis().clamp(1, 1000) as i64;
        s.poll(zmq::POLLIN, ms).expect("poll");
    }
}

/// Parses and checks the signature of a message received from the controller.
pub fn parse_signed(signer: &Signer, frames: Vec<Frame>) -> Message {
    let m = Message::parse(frames).unwrap_or_else(|e| panic!("controller sent garbage: {e}"));
    assert_eq!(
        signer.verify(&m.signature, m.signed_parts()),
        Verdict::Valid,
        "controller sent a badly signed {}",
        msg_type(&m)
    );
    m
}

fn socket(ctx: &Context, kind: SocketType, identity: Option<&[u8]>, subscribe_all: bool) -> Socket {
    let s = new_socket(
        ctx,
        kind,
        &SocketSpec {
            identity,
            subscribe_all,
        },
    )
    .expect("socket");
    s.set_linger(0).expect("linger");
    s
}

/// Connects `s` and waits until the ZMTP handshake is done, so that a SUB's subscription is
/// on its way before the test triggers anything that publishes.
fn connect_and_wait(ctx: &Context, s: &Socket, url: &str) {
    let ep = format!("inproc://{}", unique("monitor"));
    s.monitor(&ep, zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32)
        .expect("monitor");
    let mon = ctx.socket(SocketType::PAIR).expect("pair");
    mon.connect(&ep).expect("monitor connect");
    s.connect(url).expect("connect");
    let frames = recv_within(&mon, DEADLINE).unwrap_or_else(|| panic!("no handshake with {url}"));
    let event = u16::from_ne_bytes([frames[0][0], frames[0][1]]);
    assert_eq!(event, zmq::SocketEvent::HANDSHAKE_SUCCEEDED as u16);
}

// ---------------------------------------------------------------------------------------
// the controller

/// A controller serving on a fresh temporary profile until dropped.
pub struct TestController {
    pub dir: PathBuf,
    pub client_info: ClientInfo,
    pub engine_info: EngineInfo,
    pub signer: Signer,
    pub ctx: Context,
    stop: Arc<AtomicBool>,
    done: mpsc::Receiver<Result<(), String>>,
    exited: Option<Result<(), String>>,
    thread: Option<JoinHandle<()>>,
}

impl TestController {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts `serve` with `--profile-dir=<fresh> --ping=100` plus `extra`, and waits for it to
    /// be ready (sockets bound, connection files written). The HMAC key is fresh.
    pub fn start_with(extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(unique("oxipp-controller-test"));
        let mut args = vec![
            format!("--profile-dir={}", dir.display()),
            format!("--ping={PING_MS}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let cfg = Config::from_args(&args).expect("controller arguments");
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("controller".into())
            .spawn(move || {
                let r = shell::serve(cfg, stop2, |info| {
                    let _ = ready_tx.send(info.clone());
                });
                let _ = done_tx.send(r.map_err(|e| format!("{e:#}")));
            })
            .expect("spawn controller");
        let client_info = match ready_rx.recv_timeout(DEADLINE) {
            Ok(info) => info,
            Err(_) => panic!("controller did not become ready: {:?}", done_rx.try_recv()),
        };
        let engine_info: EngineInfo =
            read_json(&dir.join("security/ipcontroller-engine.json")).expect("engine file");
        let signer =
            Signer::new(client_info.key.as_bytes(), &client_info.signature_scheme).expect("signer");
        TestController {
            dir,
            client_info,
            engine_info,
            signer,
            ctx: Context::new(),
            stop,
            done: done_rx,
            exited: None,
            thread: Some(thread),
        }
    }

    pub fn client_url(&self, port: u16) -> String {
        format!("{}:{port}", self.client_info.interface)
    }

    pub fn engine_url(&self, port: u16) -> String {
        format!("{}:{port}", self.engine_info.interface)
    }

    pub fn security_dir(&self) -> PathBuf {
        self.dir.join("security")
    }

    pub fn client_file(&self) -> PathBuf {
        self.security_dir().join("ipcontroller-client.json")
    }

    pub fn engine_file(&self) -> PathBuf {
        self.security_dir().join("ipcontroller-engine.json")
    }

    /// Waits up to `timeout` for `serve` to return; its result once it has.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<Result<(), String>> {
        if self.exited.is_none() {
            if let Ok(r) = self.done.recv_timeout(timeout) {
                self.exited = Some(r);
                if let Some(t) = self.thread.take() {
                    t.join().expect("controller thread panicked");
                }
            }
        }
        self.exited.clone()
    }

    /// Sets the stop flag (what SIGTERM does) and waits up to `timeout` for `serve` to return.
    pub fn stop(&mut self, timeout: Duration) -> Option<Result<(), String>> {
        self.stop.store(true, Ordering::SeqCst);
        self.wait_exit(timeout)
    }

    /// Whether `serve` is still running.
    pub fn running(&mut self) -> bool {
        self.wait_exit(Duration::ZERO).is_none()
    }
}

impl Drop for TestController {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let exited = self.wait_exit(Duration::from_secs(5)).is_some();
        if exited {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else if !std::thread::panicking() {
            panic!("serve did not return within 5 s of being stopped");
        }
    }
}

// ---------------------------------------------------------------------------------------
// engines

/// A reply such as a stock engine sends (spec §3.4), to `request` as received on a ROUTER
/// (routing frames kept so the reply retraces the route).
pub fn engine_reply(
    session: &Session,
    request: &[Frame],
    status: &str,
    buffers: Vec<Frame>,
) -> Vec<Frame> {
    let req = Message::parse(request.to_vec()).expect("request");
    let rmd = json_of(&req.metadata);
    let md = json!({
        "started": dates::now_iso(), "dependencies_met": true, "engine": session.id, "status": status,
        "is_broadcast": rmd.get("is_broadcast").cloned().unwrap_or(json!(false)),
        "is_coalescing": rmd.get("is_coalescing").cloned().unwrap_or(json!(false)),
        "original_msg_id": rmd.get("original_msg_id").cloned().unwrap_or(json!("")),
        "label": rmd.get("label").cloned().unwrap_or(Value::Null),
    });
    let reply_type = mt::reply_type(&msg_type(&req));
    session
        .build(
            req.idents.clone(),
            &reply_type,
            Some(&req.header),
            &md,
            &json!({"status": status}),
            buffers,
        )
        .into_frames()
}

/// A fake engine: registration DEALER (identity uuid), shell ROUTER (identity uuid) connected
/// to mux, task and `broadcast[id % n]`, control ROUTER, IOPub PUB and a heart (SUB echoing
/// through a DEALER with identity uuid). A thread serves the sockets; the test talks to it
/// through an inproc PAIR (commands) and channels (what arrived).
pub struct FakeEngine {
    pub uuid: String,
    pub id: u32,
    pub session: Arc<Session>,
    /// Echo heartbeats (clear it to play dead).
    pub heartbeat: Arc<AtomicBool>,
    /// Answer apply/execute requests at once with `status: ok` and one buffer, the uuid.
    pub auto_reply: Arc<AtomicBool>,
    shell_rx: mpsc::Receiver<Vec<Frame>>,
    control_rx: mpsc::Receiver<Vec<Frame>>,
    cmd: Socket,
    thread: Option<JoinHandle<()>>,
}

/// A refused registration: the reply's content.
#[derive(Debug)]
pub struct Refused(pub Value);

impl FakeEngine {
    /// Registers a new engine with a fresh uuid (it completes once the heart beats).
    pub fn start(ctl: &TestController, auto_reply: bool) -> FakeEngine {
        Self::start_as(ctl, &oxipp_wire::session::new_id(), None, auto_reply)
            .expect("registration refused")
    }

    pub fn start_as(
        ctl: &TestController,
        uuid: &str,
        requested_id: Option<u32>,
        auto_reply: bool,
    ) -> Result<FakeEngine, Refused> {
        let ctx = &ctl.ctx;
        let info = &ctl.engine_info;
        let session = Arc::new(Session::new(uuid.to_string(), ctl.signer.clone()));
        let ident = Some(uuid.as_bytes());

        let reg = socket(ctx, SocketType::DEALER, ident, false);
        reg.connect(&ctl.engine_url(info.registration))
            .expect("connect registration");
        let c = match requested_id {
            Some(id) => json!({"uuid": uuid, "id": id}),
            None => json!({"uuid": uuid}),
        };
        let req = session.build(
            vec![],
            mt::REGISTRATION_REQUEST,
            None,
            &json!({}),
            &c,
            vec![],
        );
        send_frames(&reg, req.into_frames()).expect("send registration_request");
        let frames = recv_within(&reg, DEADLINE).expect("no registration_reply");
        let reply = parse_signed(&ctl.signer, frames);
        assert_eq!(msg_type(&reply), mt::REGISTRATION_REPLY);
        let rc = content(&reply);
        if rc["status"] != "ok" {
            return Err(Refused(rc));
        }
        let id = rc["id"].as_u64().expect("id") as u32;
        assert_eq!(rc["hb_period"], PING_MS);

        let shell = socket(ctx, SocketType::ROUTER, ident, false);
        let n_leaves = info.broadcast.len() as u32;
        for port in [
            info.mux,
            info.task,
            info.broadcast[(id % n_leaves) as usize],
        ] {
            shell.connect(&ctl.engine_url(port)).expect("connect shell");
        }
        let control = socket(ctx, SocketType::ROUTER, ident, false);
        control
            .connect(&ctl.engine_url(info.control))
            .expect("connect control");
        let iopub = socket(ctx, SocketType::PUB, ident, false);
        iopub
            .connect(&ctl.engine_url(info.iopub))
            .expect("connect iopub");
        let hb_in = socket(ctx, SocketType::SUB, None, true);
        hb_in
            .connect(&ctl.engine_url(info.hb_ping))
            .expect("connect hb_ping");
        let hb_out = socket(ctx, SocketType::DEALER, ident, false);
        hb_out
            .connect(&ctl.engine_url(info.hb_pong))
            .expect("connect hb_pong");

        let ep = format!("inproc://{}", unique("engine-cmd"));
        let cmd = socket(ctx, SocketType::PAIR, None, false);
        cmd.bind(&ep).expect("bind cmd");
        let cmd_in = socket(ctx, SocketType::PAIR, None, false);
        cmd_in.connect(&ep).expect("connect cmd");

        let heartbeat = Arc::new(AtomicBool::new(true));
        let auto = Arc::new(AtomicBool::new(auto_reply));
        let (shell_tx, shell_rx) = mpsc::channel();
        let (control_tx, control_rx) = mpsc::channel();
        let socks = EngineSockets {
            reg,
            shell,
            control,
            iopub,
            hb_in,
            hb_out,
            cmd: cmd_in,
        };
        let (s2, hb2, auto2) = (
            Arc::clone(&session),
            Arc::clone(&heartbeat),
            Arc::clone(&auto),
        );
        let thread = std::thread::Builder::new()
            .name(format!("engine-{id}"))
            .spawn(move || engine_loop(socks, &s2, &hb2, &auto2, &shell_tx, &control_tx))
            .expect("spawn engine");
        Ok(FakeEngine {
            uuid: uuid.to_string(),
            id,
            session,
            heartbeat,
            auto_reply: auto,
            shell_rx,
            control_rx,
            cmd,
            thread: Some(thread),
        })
    }

    fn command(&self, tag: &[u8], frames: Vec<Frame>) {
        let mut all = vec![fr(tag)];
        all.extend(frames);
        send_frames(&self.cmd, all).expect("engine command");
    }

    /// Sends raw frames out of the shell ROUTER (first frame = the controller socket's identity).
    pub fn send_shell(&self, frames: Vec<Frame>) {
        self.command(b"shell", frames);
    }

    pub fn send_control(&self, frames: Vec<Frame>) {
        self.command(b"control", frames);
    }

    pub fn publish(&self, frames: Vec<Frame>) {
        self.command(b"iopub", frames);
    }

    /// Sends raw frames out of the heart's DEALER.
    pub fn send_heart(&self, frames: Vec<Frame>) {
        self.command(b"heart", frames);
    }

    /// Sends raw frames out of the registration DEALER.
    pub fn send_registration(&self, frames: Vec<Frame>) {
        self.command(b"registration", frames);
    }

    /// Answers `request` (as received on the shell) with `status` and `buffers`.
    pub fn reply(&self, request: &[Frame], status: &str, buffers: Vec<Frame>) {
        self.send_shell(engine_reply(&self.session, request, status, buffers));
    }

    /// The next shell message (routing frames included), if one arrives in time.
    pub fn recv_shell(&self, timeout: Duration) -> Option<Vec<Frame>> {
        self.shell_rx.recv_timeout(timeout).ok()
    }

    pub fn recv_control(&self, timeout: Duration) -> Option<Vec<Frame>> {
        self.control_rx.recv_timeout(timeout).ok()
    }

    /// Every shell message that has arrived so far.
    pub fn drain_shell(&self) -> Vec<Vec<Frame>> {
        self.shell_rx.try_iter().collect()
    }
}

impl Drop for FakeEngine {
    fn drop(&mut self) {
        self.command(b"quit", vec![]);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct EngineSockets {
    reg: Socket,
    shell: Socket,
    control: Socket,
    iopub: Socket,
    hb_in: Socket,
    hb_out: Socket,
    cmd: Socket,
}

fn drain(s: &Socket) -> Vec<Vec<Frame>> {
    let mut v = Vec::new();
    while let Ok(f) = recv_frames(s, true) {
        v.push(f);
    }
    v
}

fn engine_loop(
    s: EngineSockets,
    session: &Session,
    heartbeat: &AtomicBool,
    auto: &AtomicBool,
    shell_tx: &mpsc::Sender<Vec<Frame>>,
    control_tx: &mpsc::Sender<Vec<Frame>>,
) {
    loop {
        let mut items = [
            s.hb_in.as_poll_item(zmq::POLLIN),
            s.shell.as_poll_item(zmq::POLLIN),
            s.control.as_poll_item(zmq::POLLIN),
            s.cmd.as_poll_item(zmq::POLLIN),
        ];
        if zmq::poll(&mut items, 1000).is_err() {
            return;
        }
        let ready: Vec<bool> = items.iter().map(|i| i.is_readable()).collect();
        if ready[0] {
            for ping in drain(&s.hb_in) {
                if heartbeat.load(Ordering::SeqCst) {
                    let _ = send_frames(&s.hb_out, ping);
                }
            }
        }
        if ready[1] {
            for frames in drain(&s.shell) {
                if auto.load(Ordering::SeqCst) {
                    let t = Message::parse(frames.clone()).ok().map(|m| msg_type(&m));
                    if matches!(t.as_deref(), Some(mt::APPLY_REQUEST | mt::EXECUTE_REQUEST)) {
                        let reply =
                            engine_reply(session, &frames, "ok", vec![fr(session.id.as_bytes())]);
                        let _ = send_frames(&s.shell, reply);
                    }
                }
                let _ = shell_tx.send(frames);
            }
        }
        if ready[2] {
            for frames in drain(&s.control) {
                let _ = control_tx.send(frames);
            }
        }
        if ready[3] {
            for mut frames in drain(&s.cmd) {
                let rest = frames.split_off(1);
                let out = match &frames[0][..] {
                    b"quit" => return,
                    b"shell" => &s.shell,
                    b"control" => &s.control,
                    b"iopub" => &s.iopub,
                    b"heart" => &s.hb_out,
                    b"registration" => &s.reg,
                    other => panic!("unknown engine command {other:?}"),
                };
                send_frames(out, rest).expect("engine send");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// clients

/// A fake client: DEALERs on registration/query, mux, task, control and broadcast; SUBs on
/// notification and IOPub (connected before returning).
pub struct FakeClient {
    pub session: Session,
    pub signer: Signer,
    pub query: Socket,
    pub mux: Socket,
    pub task: Socket,
    pub control: Socket,
    pub bcast: Socket,
    pub notif: Socket,
    pub iopub: Socket,
}

impl FakeClient {
    pub fn connect(ctl: &TestController) -> FakeClient {
        let ctx = &ctl.ctx;
        let info = &ctl.client_info;
        let dealer = |port: u16| {
            let s = socket(ctx, SocketType::DEALER, None, false);
            s.connect(&ctl.client_url(port)).expect("connect");
            s
        };
        let sub = |port: u16| {
            let s = socket(ctx, SocketType::SUB, None, true);
            connect_and_wait(ctx, &s, &ctl.client_url(port));
            s
        };
        FakeClient {
            session: Session::with_random_id(ctl.signer.clone()),
            signer: ctl.signer.clone(),
            query: dealer(info.registration),
            mux: dealer(info.mux),
            task: dealer(info.task),
            control: dealer(info.control),
            bcast: dealer(info.broadcast),
            notif: sub(info.notification),
            iopub: sub(info.iopub),
        }
    }

    /// A signed message from this client.
    pub fn msg(
        &self,
        route: Vec<Frame>,
        msg_type: &str,
        md: Value,
        content: Value,
        buffers: Vec<Frame>,
    ) -> Message {
        self.session
            .build(route, msg_type, None, &md, &content, buffers)
    }

    pub fn send(&self, sock: &Socket, m: &Message) {
        send_frames(sock, m.clone().into_frames()).expect("send");
    }

    /// The next message on `sock` (signature checked), if one arrives in time.
    pub fn recv(&self, sock: &Socket, timeout: Duration) -> Option<Message> {
        recv_within(sock, timeout).map(|f| parse_signed(&self.signer, f))
    }

    /// The reply to `msg_id` on `sock`; fails on anything else arriving first.
    pub fn reply_to(&self, sock: &Socket, msg_id: &str, timeout: Duration) -> Message {
        let m = self
            .recv(sock, timeout)
            .unwrap_or_else(|| panic!("no reply to {msg_id} within {timeout:?}"));
        assert_eq!(
            parent_id(&m),
            msg_id,
            "unexpected message: {}",
            msg_type(&m)
        );
        m
    }

    /// A Hub query and its reply.
    pub fn query(&self, msg_type: &str, content: Value) -> Message {
        let m = self.msg(vec![], msg_type, json!({}), content, vec![]);
        self.send(&self.query, &m);
        self.reply_to(&self.query, &msg_id(&m), DEADLINE)
    }

    /// `connection_reply.engines` as `{"<id>": "<uuid>"}`.
    pub fn engines(&self) -> Value {
        let r = self.query(mt::CONNECTION_REQUEST, json!({}));
        assert_eq!(msg_type(&r), mt::CONNECTION_REPLY);
        assert_eq!(content(&r)["status"], "ok");
        content(&r)["engines"].clone()
    }

    /// Waits for a notification of `kind` about `uuid`; returns it and when it arrived.
    /// Other notifications are skipped.
    pub fn wait_notification(
        &self,
        kind: &str,
        uuid: &str,
        timeout: Duration,
    ) -> Option<(Message, Instant)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self.recv(&self.notif, left)?;
            let at = Instant::now();
            if msg_type(&m) == kind && content(&m)["uuid"] == uuid {
                return Some((m, at));
            }
            if left.is_zero() {
                return None;
            }
        }
    }

    /// Waits until every engine in `uuids` was announced by a `registration_notification`.
    pub fn wait_registered(&self, uuids: &[String], timeout: Duration) {
        let mut missing: BTreeSet<&str> = uuids.iter().map(String::as_str).collect();
        let deadline = Instant::now() + timeout;
        while !missing.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(m) = self.recv(&self.notif, left) else {
                panic!(
                    "{} engines never completed registration: {missing:?}",
                    missing.len()
                );
            };
            if msg_type(&m) == mt::REGISTRATION_NOTIFICATION {
                let c = content(&m);
                missing.remove(c["uuid"].as_str().unwrap_or_default());
            }
        }
    }

    /// Nothing arrives on `sock` for [`QUIET`].
    pub fn assert_quiet(&self, sock: &Socket, what: &str) {
        if let Some(m) = self.recv(sock, QUIET) {
            panic!(
                "{what}: unexpected {} (content {})",
                msg_type(&m),
                content(&m)
            );
        }
    }
}

/// Starts `n` engines and waits until the client saw all of them register.
pub fn start_engines(
    ctl: &TestController,
    client: &FakeClient,
    n: usize,
    auto_reply: bool,
) -> Vec<FakeEngine> {
    let engines: Vec<FakeEngine> = (0..n).map(|_| FakeEngine::start(ctl, auto_reply)).collect();
    let uuids: Vec<String> = engines.iter().map(|e| e.uuid.clone()).collect();
    client.wait_registered(&uuids, DEADLINE);
    engines
}

/// Metadata of a stock `LoadBalancedView` request.
pub fn lb_metadata(targets: &[&str], retries: u32) -> Value {
    json!({"after": [], "follow": [], "timeout": 0.0, "targets": targets, "retries": retries, "label": null})
}

/// Stand-ins for `pack_apply_message` buffers (never unpickled by anyone here).
pub fn apply_buffers() -> Vec<Frame> {
    vec![
        fr(b"\x80\x04\x95canned function\x00\xff"),
        fr(b"\x80\x04\x95args and kwargs\x00\x01"),
    ]
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

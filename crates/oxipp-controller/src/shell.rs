//! The socket shell: binds every controller socket, writes the connection files, and runs
//! one poll loop that feeds the core.
//!
//! One thread serves everything. Per message the work is a parse, an HMAC and a hash-map
//! lookup or two, so a single loop keeps up with far more traffic than the engines can make,
//! and needs no locks between Hub, schedulers and relays.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use oxipp_taskdb::{MemoryLimits, MemoryStore, NoDb, SqliteStore, TaskStore};
use oxipp_wire::connection::{self, ClientInfo, EngineInfo};
use oxipp_wire::sockets::{self, SocketSpec};
use oxipp_wire::{Frame, Signer};
use serde_json::json;
use zmq::SocketType;

use crate::config::{Config, DbKind};
use crate::core::{Controller, EngineConnInfo};
use crate::outbox::{Outbox, Sock};

/// Unroutable engine-facing sends are retried this long (an engine's connection may still be
/// completing its handshake) before being dropped with a warning.
const DEFERRED_SEND_LIMIT: Duration = Duration::from_secs(2);
/// Messages taken from one socket before looking at the others, for fairness.
const BATCH: usize = 512;

struct Deferred {
    sock: Sock,
    frames: Vec<Frame>,
    give_up: Instant,
}

/// Queues what the core sends; [`flush`] puts it on the wire after each batch of received
/// messages, so that libzmq's I/O thread is woken once per batch and writes several
/// messages per system call, instead of being woken for (and writing) each one on its own.
struct ZmqOutbox<'a> {
    sockets: &'a HashMap<Sock, zmq::Socket>,
    queue: &'a mut Vec<(Sock, Vec<Frame>)>,
    /// Sockets sent on: a send may process the socket's pending commands (including the
    /// "messages arrived" one that makes its descriptor readable), so the loop must look
    /// at them again instead of trusting the descriptor.
    touched: &'a mut Vec<Sock>,
}

fn engine_facing(s: Sock) -> bool {
    matches!(
        s,
        Sock::MuxEngine | Sock::TaskEngine | Sock::ControlEngine | Sock::BcastLeaf(_)
    )
}

impl Outbox for ZmqOutbox<'_> {
    fn send(&mut self, sock: Sock, frames: Vec<Frame>) -> bool {
        if !self.sockets.contains_key(&sock) {
            return false;
        }
        if !self.touched.contains(&sock) {
            self.touched.push(sock);
        }
        self.queue.push((sock, frames));
        true
    }
}

/// Sends everything queued, in order. An engine-facing ROUTER that does not know the peer
/// yet (its connection may still be completing) gets the message again later.
fn flush(
    sockets: &HashMap<Sock, zmq::Socket>,
    queue: &mut Vec<(Sock, Vec<Frame>)>,
    deferred: &mut VecDeque<Deferred>,
    now: Instant,
) {
    for (sock, frames) in queue.drain(..) {
        let Some(s) = sockets.get(&sock) else {
            continue;
        };
        match sockets::send_frames(s, frames.iter()) {
            Ok(()) => {}
            Err(zmq::Error::EHOSTUNREACH) if engine_facing(sock) => {
                deferred.push_back(Deferred {
                    sock,
                    frames,
                    give_up: now + DEFERRED_SEND_LIMIT,
                });
            }
            Err(e) => tracing::warn!("send on {sock:?} failed: {e}"),
        }
    }
}

/// Bound sockets and the ports they got.
struct Bound {
    sockets: HashMap<Sock, zmq::Socket>,
    client: ClientInfo,
    engine: EngineInfo,
}

struct PortPool {
    ports: VecDeque<u16>,
}

impl PortPool {
    fn next(&mut self) -> u16 {
        self.ports.pop_front().unwrap_or(0)
    }
}

fn interface(transport: &str, ip: &str) -> String {
    let ip = if ip.is_empty() { "127.0.0.1" } else { ip };
    format!("{transport}://{ip}")
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Subscribes to the pong socket's disconnect events: a PAIR socket (`Sock::HbMonitor`) gets
/// one message whenever a heart's connection drops, which starts a probe (heartbeat.rs) so a
/// killed engine is unregistered within a second.
fn watch_heart_connections(
    ctx: &zmq::Context,
    sockets: &mut HashMap<Sock, zmq::Socket>,
) -> anyhow::Result<()> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let Some(pong) = sockets.get(&Sock::HbPong) else {
        return Ok(());
    };
    let n = N.fetch_add(1, Ordering::Relaxed);
    let endpoint = format!("inproc://oxipp-hb-pong-monitor-{}-{n}", std::process::id());
    pong.monitor(&endpoint, zmq::SocketEvent::DISCONNECTED as i32)
        .context("monitoring the heartbeat socket")?;
    let events = ctx.socket(SocketType::PAIR)?;
    events.set_linger(0)?;
    events
        .connect(&endpoint)
        .context("connecting to the heartbeat socket monitor")?;
    sockets.insert(Sock::HbMonitor, events);
    Ok(())
}

fn bind_all(
    ctx: &zmq::Context,
    cfg: &Config,
    reuse: Option<(ClientInfo, EngineInfo)>,
    key: &str,
) -> anyhow::Result<Bound> {
    for t in [&cfg.client_transport, &cfg.engine_transport] {
        if t != "tcp" {
            bail!("transport {t:?} is not supported by the oxipp controller (use tcp)");
        }
    }
    let ciface = interface(&cfg.client_transport, &cfg.client_ip);
    let eiface = interface(&cfg.engine_transport, &cfg.engine_ip);
    let mut pool = PortPool {
        ports: cfg.ports.iter().copied().collect(),
    };
    let (rc, re) = match &reuse {
        Some((c, e)) => (Some(c), Some(e)),
        None => (None, None),
    };
    let mut sockets = HashMap::new();
    let mut mk = |sock: Sock,
                  kind: SocketType,
                  ident: Option<&[u8]>,
                  iface: &str,
                  port: u16,
                  sub: bool|
     -> anyhow::Result<u16> {
        let s = sockets::new_socket(
            ctx,
            kind,
            &SocketSpec {
                identity: ident,
                subscribe_all: sub,
            },
        )
        .with_context(|| format!("creating {sock:?} socket"))?;
        if kind == SocketType::ROUTER && engine_facing(sock) {
            s.set_router_mandatory(true)?;
        }
        let port = if port == 0 { pool.next() } else { port };
        let p = sockets::bind(&s, iface, port)
            .with_context(|| format!("binding {sock:?} on {iface}:{port}"))?;
        sockets.insert(sock, s);
        Ok(p)
    };
    let registration = mk(
        Sock::Query,
        SocketType::ROUTER,
        None,
        &ciface,
        rc.map_or(0, |c| c.registration),
        false,
    )?;
    let mux_c = mk(
        Sock::MuxClient,
        SocketType::ROUTER,
        Some(b"mux_in"),
        &ciface,
        rc.map_or(0, |c| c.mux),
        false,
    )?;
    let mux_e = mk(
        Sock::MuxEngine,
        SocketType::ROUTER,
        Some(b"mux_out"),
        &eiface,
        re.map_or(0, |e| e.mux),
        false,
    )?;
    let task_c = mk(
        Sock::TaskClient,
        SocketType::ROUTER,
        Some(b"task_in"),
        &ciface,
        rc.map_or(0, |c| c.task),
        false,
    )?;
    let task_kind = if cfg.scheme == "pure" {
        SocketType::DEALER
    } else {
        SocketType::ROUTER
    };
    let task_e = mk(
        Sock::TaskEngine,
        task_kind,
        Some(b"task_out"),
        &eiface,
        re.map_or(0, |e| e.task),
        false,
    )?;
    let ctl_c = mk(
        Sock::ControlClient,
        SocketType::ROUTER,
        Some(b"control_in"),
        &ciface,
        rc.map_or(0, |c| c.control),
        false,
    )?;
    let ctl_e = mk(
        Sock::ControlEngine,
        SocketType::ROUTER,
        Some(b"control_out"),
        &eiface,
        re.map_or(0, |e| e.control),
        false,
    )?;
    let iopub_c = mk(
        Sock::IopubOut,
        SocketType::PUB,
        None,
        &ciface,
        rc.map_or(0, |c| c.iopub),
        false,
    )?;
    let iopub_e = mk(
        Sock::IopubIn,
        SocketType::SUB,
        None,
        &eiface,
        re.map_or(0, |e| e.iopub),
        true,
    )?;
    let notification = mk(
        Sock::Notification,
        SocketType::PUB,
        None,
        &ciface,
        rc.map_or(0, |c| c.notification),
        false,
    )?;
    let hb_ping = mk(
        Sock::HbPing,
        SocketType::PUB,
        None,
        &eiface,
        re.map_or(0, |e| e.hb_ping),
        false,
    )?;
    let hb_pong = mk(
        Sock::HbPong,
        SocketType::ROUTER,
        None,
        &eiface,
        re.map_or(0, |e| e.hb_pong),
        false,
    )?;
    let bcast_c = mk(
        Sock::BcastClient,
        SocketType::ROUTER,
        Some(b"sub_scheduler_0"),
        &ciface,
        rc.map_or(0, |c| c.broadcast),
        false,
    )?;
    let n_leaves = 1usize << cfg.broadcast_depth;
    let mut leaves = Vec::with_capacity(n_leaves);
    for i in 0..n_leaves {
        let path = format!("0{:0width$b}", i, width = cfg.broadcast_depth as usize);
        let ident = format!(
            "sub_scheduler_{}",
            if cfg.broadcast_depth == 0 {
                "0".to_string()
            } else {
                path
            }
        );
        let port = re.and_then(|e| e.broadcast.get(i).copied()).unwrap_or(0);
        leaves.push(mk(
            Sock::BcastLeaf(i as u16),
            SocketType::ROUTER,
            Some(ident.as_bytes()),
            &eiface,
            port,
            false,
        )?);
    }
    if eiface != ciface {
        // Engines reach the registration port on the engine interface too.
        if let Some(q) = sockets.get(&Sock::Query) {
            q.bind(&format!("{eiface}:{registration}"))
                .context("binding registration on the engine interface")?;
        }
    }
    watch_heart_connections(ctx, &mut sockets)?;
    let location = cfg.location.clone().unwrap_or_else(hostname);
    let client = ClientInfo {
        ssh: cfg.ssh_server.clone(),
        interface: ciface,
        registration,
        control: ctl_c,
        mux: mux_c,
        task: task_c,
        task_scheme: cfg.scheme.clone(),
        iopub: iopub_c,
        notification,
        broadcast: bcast_c,
        key: key.to_string(),
        curve_serverkey: None,
        location: location.clone(),
        pack: "json".into(),
        unpack: "json".into(),
        signature_scheme: cfg.signature_scheme.clone(),
    };
    let engine = EngineInfo {
        ssh: cfg.engine_ssh_server.clone(),
        interface: eiface,
        registration,
        control: ctl_e,
        mux: mux_e,
        task: task_e,
        iopub: iopub_e,
        hb_ping,
        hb_pong,
        broadcast: leaves,
        key: key.to_string(),
        curve_serverkey: None,
        location,
        pack: "json".into(),
        unpack: "json".into(),
        signature_scheme: cfg.signature_scheme.clone(),
    };
    Ok(Bound {
        sockets,
        client,
        engine,
    })
}

fn open_db(cfg: &Config, profile_dir: &std::path::Path) -> anyhow::Result<Box<dyn TaskStore>> {
    Ok(match cfg.db {
        DbKind::Memory => Box::new(MemoryStore::new(MemoryLimits {
            record_limit: cfg.dict_record_limit,
            size_limit: cfg.dict_size_limit,
            cull_fraction: cfg.dict_cull_fraction,
        })),
        DbKind::None => Box::new(NoDb),
        DbKind::Sqlite => {
            let dir = cfg
                .sqlite_location
                .clone()
                .unwrap_or_else(|| profile_dir.to_path_buf());
            let path = dir.join(&cfg.sqlite_filename);
            Box::new(SqliteStore::open(&path, &cfg.sqlite_table).map_err(|e| {
                anyhow::anyhow!("opening SQLite task database {}: {e}", path.display())
            })?)
        }
    })
}

/// Raises the open-file limit to its hard maximum: every engine holds several connections.
fn raise_fd_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!("could not raise the open-file limit: {e}");
    }
}

/// Runs the controller until SIGTERM/SIGINT or a Hub shutdown request.
pub fn run(cfg: Config) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    serve(cfg, stop, |_| {})
}

/// Runs the controller until `stop` is set or a Hub shutdown request. `ready` is called
/// once the sockets are bound and the connection files written (tests wait on it).
pub fn serve(
    cfg: Config,
    stop: Arc<AtomicBool>,
    ready: impl FnOnce(&ClientInfo),
) -> anyhow::Result<()> {
    let profile_dir = cfg.profile_dir();
    oxipp_wire::profile::ensure(&profile_dir)
        .with_context(|| format!("creating profile directory {}", profile_dir.display()))?;
    let security = profile_dir.join("security");
    let (cdef, edef) = connection::file_names(&cfg.cluster_id);
    let client_path = security.join(cfg.client_json_file.clone().unwrap_or(cdef));
    let engine_path = security.join(cfg.engine_json_file.clone().unwrap_or(edef));
    let reuse = if cfg.reuse_files && client_path.exists() && engine_path.exists() {
        let c: ClientInfo = connection::read_json(&client_path)?;
        let e: EngineInfo = connection::read_json(&engine_path)?;
        if c.key != e.key
            || c.registration != e.registration
            || c.signature_scheme != e.signature_scheme
        {
            bail!(
                "--reuse: {} and {} disagree on key/registration/signature_scheme",
                client_path.display(),
                engine_path.display()
            );
        }
        Some((c, e))
    } else {
        None
    };
    let key = match (&cfg.key, &reuse) {
        (Some(k), _) => k.clone(),
        (None, Some((c, _))) => c.key.clone(),
        (None, None) => connection::new_key(),
    };
    let signer = Signer::new(key.as_bytes(), &cfg.signature_scheme).map_err(anyhow::Error::msg)?;
    raise_fd_limit();
    let ctx = zmq::Context::new();
    let reused = reuse.is_some();
    let bound = bind_all(&ctx, &cfg, reuse, &key)?;
    if !reused {
        connection::write_private_json(&engine_path, &bound.engine)?;
        connection::write_private_json(&client_path, &bound.client)?;
    }
    tracing::info!("client connection file: {}", client_path.display());
    tracing::info!("engine connection file: {}", engine_path.display());
    let state_path: PathBuf = profile_dir
        .join("log")
        .join(format!("engines{}.json", cfg.cluster_id));
    let e = &bound.engine;
    let engine_info = EngineConnInfo(json!({
        "interface": e.interface, "registration": e.registration, "control": e.control,
        "mux": e.mux, "task": e.task, "iopub": e.iopub, "hb_ping": e.hb_ping, "hb_pong": e.hb_pong,
        "broadcast": e.broadcast,
    }));
    let db = open_db(&cfg, &profile_dir)?;
    let n_leaves = bound.engine.broadcast.len();
    let restore = cfg.restore_engines;
    let reuse_files = cfg.reuse_files;
    let now = Instant::now();
    let mut core = Controller::new(
        cfg,
        engine_info,
        signer,
        db,
        n_leaves,
        Some(state_path.clone()),
        now,
    )
    .map_err(anyhow::Error::msg)?;
    if restore {
        match connection::read_json(&state_path) {
            Ok(state) => {
                let n = core.restore_engines(&state, now);
                tracing::info!("restored {n} engines from {}", state_path.display());
            }
            Err(e) => tracing::warn!("--restore: no engine state to restore ({e})"),
        }
    }
    core.write_state();
    ready(&bound.client);
    tracing::info!(
        "oxipp controller ready (scheme {}, heartbeat {} ms)",
        core.cfg.scheme,
        core.cfg.hb_period_ms
    );
    let result = event_loop(&mut core, &bound.sockets, &stop);
    if let Err(e) = core.flush_db() {
        tracing::error!("final task database flush failed: {e}");
    }
    if !reuse_files {
        let _ = std::fs::remove_file(&client_path);
        let _ = std::fs::remove_file(&engine_path);
    }
    let counts = &core.stats.counts;
    if !counts.is_empty() {
        tracing::info!("refused/dropped message counts: {counts:?}");
    }
    drop(bound);
    result
}

/// One socket the loop reads.
struct Input<'a> {
    sock: Sock,
    z: &'a zmq::Socket,
    /// libzmq's signalling descriptor: readable when the socket has commands to process
    /// (e.g. "messages arrived" after its queue ran dry).
    fd: std::os::fd::RawFd,
    /// Not known to be drained: the last receive did not end with EAGAIN, or something
    /// else (a send) may have consumed the descriptor's wake-up.
    active: bool,
}

/// A received frame large enough to be kept as the ZeroMQ message itself.
struct ZmqBytes(zmq::Message);

impl AsRef<[u8]> for ZmqBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Receives one multipart message without blocking. The small frames are copied into one
/// buffer shared by all of them (one allocation per message instead of one per frame);
/// frames of at least [`sockets::ZERO_COPY_MIN`] bytes keep their ZeroMQ message (no copy).
/// `parts` is scratch space reused across calls.
fn recv_message(s: &zmq::Socket, parts: &mut Vec<zmq::Message>) -> zmq::Result<Vec<Frame>> {
    let mut n = 0;
    loop {
        if parts.len() <= n {
            parts.push(zmq::Message::new());
        }
        s.recv(&mut parts[n], if n == 0 { zmq::DONTWAIT } else { 0 })?;
        let more = parts[n].get_more();
        n += 1;
        if !more {
            break;
        }
    }
    let small = |m: &zmq::Message| m.len() < sockets::ZERO_COPY_MIN;
    let total: usize = parts[..n]
        .iter()
        .filter(|m| small(m))
        .map(|m| m.len())
        .sum();
    let mut buf = bytes::BytesMut::with_capacity(total);
    for m in parts[..n].iter().filter(|m| small(m)) {
        buf.extend_from_slice(m);
    }
    let buf = buf.freeze();
    let mut frames = Vec::with_capacity(n);
    let mut off = 0;
    for m in &mut parts[..n] {
        if small(m) {
            frames.push(buf.slice(off..off + m.len()));
            off += m.len();
        } else {
            let owned = std::mem::replace(m, zmq::Message::new());
            frames.push(bytes::Bytes::from_owner(ZmqBytes(owned)));
        }
    }
    Ok(frames)
}

fn event_loop(
    core: &mut Controller,
    socks: &HashMap<Sock, zmq::Socket>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut inputs: Vec<Input> = Vec::new();
    for (s, z) in socks {
        if matches!(s, Sock::IopubOut | Sock::Notification | Sock::HbPing) {
            continue;
        }
        inputs.push(Input {
            sock: *s,
            z,
            fd: z.get_fd()?,
            active: true,
        });
    }
    let mut deferred: VecDeque<Deferred> = VecDeque::new();
    let mut touched: Vec<Sock> = Vec::new();
    let mut queue: Vec<(Sock, Vec<Frame>)> = Vec::new();
    let mut parts: Vec<zmq::Message> = Vec::new();
    let mut items: Vec<zmq::PollItem> = inputs
        .iter()
        .map(|i| zmq::PollItem::from_fd(i.fd, zmq::POLLIN))
        .collect();
    loop {
        if stop.load(Ordering::Relaxed) {
            tracing::info!("signal received; shutting down");
            return Ok(());
        }
        let now = Instant::now();
        if core.exit_at().is_some_and(|t| now >= t) {
            return Ok(());
        }
        // One poll(2) over the signalling descriptors tells which drained sockets got
        // something; sockets not known to be drained are read regardless. It blocks only
        // when every socket is drained. (Asking each socket with a non-blocking receive,
        // as before, cost a system call per socket per pass.)
        let busy = inputs.iter().any(|i| i.active);
        let timeout = if busy {
            0
        } else {
            let mut wait = core.next_deadline().saturating_duration_since(now);
            if !deferred.is_empty() {
                wait = wait.min(Duration::from_millis(5));
            }
            wait.min(Duration::from_millis(100)).as_millis() as i64
        };
        match zmq::poll(&mut items, timeout) {
            Ok(_) | Err(zmq::Error::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let mut received = 0usize;
        for (input, item) in inputs.iter_mut().zip(items.iter()) {
            if !input.active && !item.is_readable() {
                continue;
            }
            input.active = true;
            for _ in 0..BATCH {
                match recv_message(input.z, &mut parts) {
                    Ok(frames) => {
                        received += 1;
                        let now = Instant::now();
                        let mut out = ZmqOutbox {
                            sockets: socks,
                            queue: &mut queue,
                            touched: &mut touched,
                        };
                        core.handle(input.sock, frames, now, &mut out);
                    }
                    Err(zmq::Error::EAGAIN) => {
                        input.active = false;
                        break;
                    }
                    Err(zmq::Error::EINTR) => break,
                    Err(e) => {
                        tracing::error!("receive on {:?} failed: {e}", input.sock);
                        input.active = false;
                        break;
                    }
                }
            }
            if !queue.is_empty() {
                flush(socks, &mut queue, &mut deferred, Instant::now());
            }
        }
        let idle = received == 0;
        let now = Instant::now();
        if now >= core.next_deadline() || idle {
            let mut out = ZmqOutbox {
                sockets: socks,
                queue: &mut queue,
                touched: &mut touched,
            };
            core.tick(now, &mut out);
            flush(socks, &mut queue, &mut deferred, now);
        }
        if !deferred.is_empty() {
            touched.extend(deferred.iter().map(|d| d.sock));
            retry_deferred(socks, &mut deferred, now);
        }
        if !touched.is_empty() {
            for input in inputs.iter_mut() {
                if touched.contains(&input.sock) {
                    input.active = true;
                }
            }
            touched.clear();
        }
    }
}

fn retry_deferred(
    socks: &HashMap<Sock, zmq::Socket>,
    deferred: &mut VecDeque<Deferred>,
    now: Instant,
) {
    for _ in 0..deferred.len() {
        let Some(d) = deferred.pop_front() else { break };
        let Some(s) = socks.get(&d.sock) else {
            continue;
        };
        match sockets::send_frames(s, d.frames.iter()) {
            Ok(()) => {}
            Err(zmq::Error::EHOSTUNREACH) if now < d.give_up => deferred.push_back(d),
            Err(e) => {
                let peer = d
                    .frames
                    .first()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .unwrap_or_default();
                tracing::warn!(
                    "dropping a message for engine {peer:?} on {:?}: {e} for {:?}",
                    d.sock,
                    DEFERRED_SEND_LIMIT
                );
            }
        }
    }
}

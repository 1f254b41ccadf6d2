//! The socket shell: binds every controller socket, writes the connection files, and runs
//! one poll loop that feeds the core.
//!
//! One thread serves everything. Per message the work is a parse, an HMAC and a hash-map
//! lookup or two, so a single loop keeps up with far more traffic than the engines can make,
//! and needs no locks between Hub, schedulers and relays.
//!
//! The sockets are [`oxipp_zmtp::Socket`]s: this thread itself reads and writes the TCP
//! connections (no libzmq IO thread, no wake-ups handed between threads). Each socket is one
//! epoll descriptor; the loop polls them all, takes up to [`BATCH`] messages from each ready
//! socket, feeds them to the core (whose sends only queue), and then writes everything
//! queued with one `flush` per socket that has output: one `writev` per connection per
//! pass. A heart's connection dropping is the pong socket's `Disconnected` event.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use oxipp_taskdb::{MemoryLimits, MemoryStore, NoDb, SqliteStore, TaskStore};
use oxipp_wire::connection::{self, ClientInfo, EngineInfo};
use oxipp_wire::{Frame, Signer};
use oxipp_zmtp::{Event, Options, Socket, SocketType};
use rustix::event::{PollFd, PollFlags, Timespec};
use serde_json::json;

use crate::config::{Config, DbKind};
use crate::core::{Controller, EngineConnInfo};
use crate::outbox::{Outbox, Sock};

/// Unroutable engine-facing sends are retried this long (an engine's connection may still be
/// completing its handshake) before being dropped with a warning.
const DEFERRED_SEND_LIMIT: Duration = Duration::from_secs(2);
/// How long queued output may take to leave at shutdown (the linger oxipp set on libzmq).
const LINGER: Duration = Duration::from_secs(1);
/// Messages taken from one socket before looking at the others, for fairness.
const BATCH: usize = 512;

struct Deferred {
    sock: Sock,
    frames: Vec<Frame>,
    give_up: Instant,
}

fn engine_facing(s: Sock) -> bool {
    matches!(
        s,
        Sock::MuxEngine | Sock::TaskEngine | Sock::ControlEngine | Sock::BcastLeaf(_)
    )
}

/// The controller's sockets, with the index of each role for the core's sends.
struct Sockets {
    list: Vec<(Sock, Socket)>,
    index: HashMap<Sock, usize, foldhash::fast::RandomState>,
    /// Indices of sockets sent on since the last [`Sockets::flush`].
    dirty: Vec<usize>,
}

impl Sockets {
    fn new() -> Sockets {
        Sockets {
            list: Vec::new(),
            index: HashMap::default(),
            dirty: Vec::new(),
        }
    }

    fn insert(&mut self, sock: Sock, s: Socket) {
        self.index.insert(sock, self.list.len());
        self.list.push((sock, s));
    }

    fn get_mut(&mut self, sock: Sock) -> Option<&mut Socket> {
        let i = *self.index.get(&sock)?;
        Some(&mut self.list[i].1)
    }

    /// Queues one message; an engine-facing ROUTER that does not know the peer yet (its
    /// connection may still be completing its handshake) gets it again later (`deferred`).
    fn send(
        &mut self,
        sock: Sock,
        frames: Vec<Frame>,
        deferred: &mut VecDeque<Deferred>,
        give_up: Instant,
    ) -> bool {
        let Some(&i) = self.index.get(&sock) else {
            return false;
        };
        let s = &mut self.list[i].1;
        // (messages for a peer that already has some deferred wait behind them: order)
        if engine_facing(sock)
            && s.kind() == SocketType::Router
            && frames.first().is_some_and(|id| {
                !s.has_peer(id)
                    || deferred
                        .iter()
                        .any(|d| d.sock == sock && d.frames.first() == Some(id))
            })
        {
            deferred.push_back(Deferred {
                sock,
                frames,
                give_up,
            });
            return true;
        }
        match s.send(frames) {
            Ok(()) => {}
            // client-facing ROUTERs drop unroutable messages silently, like libzmq's
            Err(e) => tracing::warn!("send on {sock:?} failed: {e}"),
        }
        if !self.dirty.contains(&i) {
            self.dirty.push(i);
        }
        true
    }

    /// Writes what the sends queued: one `writev` per connection with output.
    fn flush(&mut self) {
        for i in self.dirty.drain(..) {
            self.list[i].1.flush();
        }
    }
}

/// What the core sends goes straight into the sockets' queues (no system call); the loop
/// flushes them once per pass.
struct ZmtpOutbox<'a> {
    sockets: &'a mut Sockets,
    deferred: &'a mut VecDeque<Deferred>,
    give_up: Instant,
}

impl Outbox for ZmtpOutbox<'_> {
    fn send(&mut self, sock: Sock, frames: Vec<Frame>) -> bool {
        self.sockets.send(sock, frames, self.deferred, self.give_up)
    }
}

/// Bound sockets and the ports they got.
struct Bound {
    sockets: Sockets,
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

fn bind_all(
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
    let mut sockets = Sockets::new();
    let mut mk = |sock: Sock,
                  kind: SocketType,
                  ident: Option<&[u8]>,
                  iface: &str,
                  port: u16,
                  sub: bool|
     -> anyhow::Result<u16> {
        // What oxipp set on its libzmq sockets: no high-water marks (zmtp has none), an
        // identity, handover on ROUTERs; ROUTER_MANDATORY only on the engine-facing ones
        // (the shell defers unroutable sends there), client-facing ones drop silently.
        let opts = Options {
            identity: Bytes::copy_from_slice(ident.unwrap_or_default()),
            router_mandatory: kind == SocketType::Router && engine_facing(sock),
            router_handover: true,
            ..Options::default()
        };
        let mut s = Socket::new(kind, opts).with_context(|| format!("creating {sock:?} socket"))?;
        if sub {
            s.subscribe(b"");
        }
        let port = if port == 0 { pool.next() } else { port };
        let p = s
            .bind(&format!("{iface}:{port}"))
            .with_context(|| format!("binding {sock:?} on {iface}:{port}"))?;
        sockets.insert(sock, s);
        Ok(p)
    };
    let registration = mk(
        Sock::Query,
        SocketType::Router,
        None,
        &ciface,
        rc.map_or(0, |c| c.registration),
        false,
    )?;
    let mux_c = mk(
        Sock::MuxClient,
        SocketType::Router,
        Some(b"mux_in"),
        &ciface,
        rc.map_or(0, |c| c.mux),
        false,
    )?;
    let mux_e = mk(
        Sock::MuxEngine,
        SocketType::Router,
        Some(b"mux_out"),
        &eiface,
        re.map_or(0, |e| e.mux),
        false,
    )?;
    let task_c = mk(
        Sock::TaskClient,
        SocketType::Router,
        Some(b"task_in"),
        &ciface,
        rc.map_or(0, |c| c.task),
        false,
    )?;
    let task_kind = if cfg.scheme == "pure" {
        SocketType::Dealer
    } else {
        SocketType::Router
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
        SocketType::Router,
        Some(b"control_in"),
        &ciface,
        rc.map_or(0, |c| c.control),
        false,
    )?;
    let ctl_e = mk(
        Sock::ControlEngine,
        SocketType::Router,
        Some(b"control_out"),
        &eiface,
        re.map_or(0, |e| e.control),
        false,
    )?;
    let iopub_c = mk(
        Sock::IopubOut,
        SocketType::Pub,
        None,
        &ciface,
        rc.map_or(0, |c| c.iopub),
        false,
    )?;
    let iopub_e = mk(
        Sock::IopubIn,
        SocketType::Sub,
        None,
        &eiface,
        re.map_or(0, |e| e.iopub),
        true,
    )?;
    let notification = mk(
        Sock::Notification,
        SocketType::Pub,
        None,
        &ciface,
        rc.map_or(0, |c| c.notification),
        false,
    )?;
    let hb_ping = mk(
        Sock::HbPing,
        SocketType::Pub,
        None,
        &eiface,
        re.map_or(0, |e| e.hb_ping),
        false,
    )?;
    let hb_pong = mk(
        Sock::HbPong,
        SocketType::Router,
        None,
        &eiface,
        re.map_or(0, |e| e.hb_pong),
        false,
    )?;
    let bcast_c = mk(
        Sock::BcastClient,
        SocketType::Router,
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
            SocketType::Router,
            Some(ident.as_bytes()),
            &eiface,
            port,
            false,
        )?);
    }
    if eiface != ciface {
        // Engines reach the registration port on the engine interface too.
        if let Some(q) = sockets.get_mut(Sock::Query) {
            q.bind(&format!("{eiface}:{registration}"))
                .context("binding registration on the engine interface")?;
        }
    }
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
    let reused = reuse.is_some();
    let mut bound = bind_all(&cfg, reuse, &key)?;
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
    core.write_state(now);
    ready(&bound.client);
    tracing::info!(
        "oxipp controller ready (scheme {}, heartbeat {} ms)",
        core.cfg.scheme,
        core.cfg.hb_period_ms
    );
    let result = event_loop(&mut core, &mut bound.sockets, &stop);
    if core.state_due().is_some() {
        core.write_state(Instant::now());
    }
    linger(&mut bound.sockets, LINGER);
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

/// Waits until one of `fds` is readable or `timeout` has passed; `ready[i]`: whether
/// `fds[i]` is. An interrupted wait (a signal) counts as a timeout.
fn wait(fds: &[OwnedFd], timeout: Duration, ready: &mut [bool]) -> std::io::Result<()> {
    let mut pfds: Vec<PollFd<'_>> = fds.iter().map(|f| PollFd::new(f, PollFlags::IN)).collect();
    let ts = Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    match rustix::event::poll(&mut pfds, Some(&ts)) {
        Ok(_) => {
            for (r, p) in ready.iter_mut().zip(&pfds) {
                *r = !p.revents().is_empty();
            }
            Ok(())
        }
        Err(rustix::io::Errno::INTR) => {
            ready.fill(false);
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn event_loop(core: &mut Controller, socks: &mut Sockets, stop: &AtomicBool) -> anyhow::Result<()> {
    let n = socks.list.len();
    // Every socket is polled, the PUBs too: their IO pass accepts subscribers, reads their
    // subscriptions and writes what a flush could not. Polled through duplicates of the
    // sockets' epoll descriptors (the same epoll instances), which do not borrow `socks`.
    let fds = socks.poll_fds()?;
    let mut ready = vec![false; n];
    let mut deferred: VecDeque<Deferred> = VecDeque::new();
    let mut batch: Vec<Vec<Frame>> = Vec::with_capacity(BATCH);
    loop {
        if stop.load(Ordering::Relaxed) {
            tracing::info!("signal received; shutting down");
            return Ok(());
        }
        let now = Instant::now();
        if core.exit_at().is_some_and(|t| now >= t) {
            return Ok(());
        }
        // Sleep only when every socket is drained and has nothing queued; never past the
        // core's next deadline or a socket's timer (reconnect, handshake expiry), which is
        // acted on only inside its IO pass.
        // (a socket left at the batch limit either holds decoded messages or its descriptor
        // is still readable: the poll is level-triggered)
        let pending = socks.list.iter().any(|(_, s)| s.has_pending());
        let timeout = if pending {
            Duration::ZERO
        } else {
            let mut wait = core
                .next_deadline()
                .saturating_duration_since(now)
                .min(Duration::from_millis(100));
            if !deferred.is_empty() {
                wait = wait.min(Duration::from_millis(5));
            }
            for (_, s) in &socks.list {
                if let Some(t) = s.timeout() {
                    wait = wait.min(t);
                }
            }
            wait
        };
        wait(&fds, timeout, &mut ready).context("polling the controller's sockets")?;
        let mut received = 0usize;
        for (i, &is_ready) in ready.iter().enumerate() {
            let (sock, s) = &mut socks.list[i];
            let sock = *sock;
            let due = s.timeout().is_some_and(|t| t.is_zero());
            if !(is_ready || due || s.has_pending()) {
                continue;
            }
            while batch.len() < BATCH {
                match s.recv() {
                    Some(m) => batch.push(m),
                    None => break,
                }
            }
            let now = Instant::now();
            let mut connected = false;
            while let Some(ev) = s.event() {
                match ev {
                    Event::Connected { .. } => connected = true,
                    Event::Disconnected { .. } if sock == Sock::HbPong => {
                        core.on_heart_disconnect(now);
                    }
                    Event::Disconnected { .. } => {}
                    Event::Rejected { addr, error } => {
                        tracing::warn!("{sock:?}: dropped the connection from {addr}: {error}");
                    }
                    Event::SubscriberStalled { addr, queued } => {
                        core.stats.bump("subscriber_stalled");
                        tracing::warn!(
                            "{sock:?}: subscriber {addr} is not reading ({queued} bytes queued); \
                             dropping its messages until it catches up"
                        );
                    }
                    Event::AcceptFailed { error } => {
                        core.stats.bump("accept_failed");
                        tracing::warn!(
                            "{sock:?}: cannot accept a connection ({error}); retrying in {:?}",
                            oxipp_zmtp::ACCEPT_RETRY
                        );
                    }
                }
            }
            if connected && engine_facing(sock) && !deferred.is_empty() {
                // a peer that deferred messages wait for may be this one
                socks.retry_deferred(&mut deferred, now);
            }
            received += batch.len();
            let mut out = ZmtpOutbox {
                sockets: socks,
                deferred: &mut deferred,
                give_up: now + DEFERRED_SEND_LIMIT,
            };
            for frames in batch.drain(..) {
                core.handle(sock, frames, Instant::now(), &mut out);
            }
        }
        core.save_state(Instant::now());
        socks.flush();
        let idle = received == 0;
        let now = Instant::now();
        if now >= core.next_deadline() || idle {
            let mut out = ZmtpOutbox {
                sockets: socks,
                deferred: &mut deferred,
                give_up: now + DEFERRED_SEND_LIMIT,
            };
            core.tick(now, &mut out);
        }
        if !deferred.is_empty() {
            socks.retry_deferred(&mut deferred, now);
        }
        core.save_state(now);
        socks.flush();
    }
}

/// After the loop: what is still queued (a shutdown reply, the last notifications) gets up
/// to `limit` to reach the kernel, as libzmq's linger gave it.
fn linger(socks: &mut Sockets, limit: Duration) {
    socks.flush();
    let until = Instant::now() + limit;
    let Ok(fds) = socks.poll_fds() else { return };
    let mut ready = vec![false; fds.len()];
    loop {
        if socks.list.iter().all(|(_, s)| s.queued_bytes() == 0) {
            return;
        }
        let now = Instant::now();
        if now >= until {
            tracing::warn!("shutting down with unsent output");
            return;
        }
        if wait(
            &fds,
            (until - now).min(Duration::from_millis(10)),
            &mut ready,
        )
        .is_err()
        {
            return;
        }
        for (_, s) in socks.list.iter_mut() {
            s.handle_io();
        }
    }
}

impl Sockets {
    /// Duplicates of the sockets' epoll descriptors, in `list` order.
    fn poll_fds(&self) -> std::io::Result<Vec<OwnedFd>> {
        self.list
            .iter()
            .map(|(_, s)| s.as_fd().try_clone_to_owned())
            .collect()
    }

    /// Sends the deferred messages whose peer has connected meanwhile, drops those older
    /// than [`DEFERRED_SEND_LIMIT`] with a warning, keeps the rest (in order).
    fn retry_deferred(&mut self, deferred: &mut VecDeque<Deferred>, now: Instant) {
        for _ in 0..deferred.len() {
            let Some(d) = deferred.pop_front() else { break };
            let Some(&i) = self.index.get(&d.sock) else {
                continue;
            };
            let s = &mut self.list[i].1;
            let routable = d.frames.first().is_some_and(|id| s.has_peer(id));
            if !routable {
                if now < d.give_up {
                    deferred.push_back(d);
                } else {
                    let peer = d
                        .frames
                        .first()
                        .map(|f| String::from_utf8_lossy(f).into_owned())
                        .unwrap_or_default();
                    tracing::warn!(
                        "dropping a message for engine {peer:?} on {:?}: not connected for {:?}",
                        d.sock,
                        DEFERRED_SEND_LIMIT
                    );
                }
                continue;
            }
            if let Err(e) = s.send(d.frames) {
                tracing::warn!("send on {:?} failed: {e}", d.sock);
            }
            if !self.dirty.contains(&i) {
                self.dirty.push(i);
            }
        }
    }
}

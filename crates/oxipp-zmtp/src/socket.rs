//! A ZMTP socket (ROUTER, DEALER, PUB, SUB) over non-blocking TCP, driven by its owner.
//!
//! # Driving it
//!
//! Each socket owns one epoll instance holding its listeners and connections
//! ([`Socket::as_fd`]): the owner polls that single descriptor (alone, with
//! [`crate::poll()`], or among its other descriptors, e.g. as a `zmq::PollItem::from_fd`),
//! whatever the number of peers, so a controller with thousands of engines still polls a
//! handful of descriptors. When it is readable, or [`Socket::timeout`] has passed:
//!
//! 1. call [`Socket::recv`] until it returns `None` (the first call on an empty queue does
//!    the IO: one `epoll_wait(0)`, accepts, one read per ready connection, handshakes,
//!    decoding of every whole message read, due reconnects);
//! 2. take [`Socket::event`]s (peers connected / disconnected / rejected);
//! 3. [`Socket::send`] any number of messages (queued per connection, no syscall), then
//!    [`Socket::flush`] once: one `write`/`writev` per connection with queued bytes.
//!
//! Leaving messages or events queued and polling again would wait on the kernel for
//! something already here: [`Socket::has_pending`] says whether that is the case.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustix::event::epoll;

use crate::conn::{CloseCause, Conn, Phase};
use crate::endpoint;
use crate::frame::{self, Item, ProtocolError};
pub use crate::types::{Event, Options, SendError, SocketType, Stats};

/// A `connect()`ed endpoint: reconnected whenever its connection is lost or refused.
#[derive(Debug)]
struct Target {
    addr: SocketAddr,
    /// Token of its current connection.
    conn: Option<u64>,
    retry_at: Option<Instant>,
}

/// epoll events fetched per `epoll_wait`.
const MAX_EVENTS: usize = 256;
/// How long a listener that could not accept (out of descriptors) rests before trying again.
pub const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// A ZMTP socket. See the module documentation for how to drive it.
pub struct Socket {
    kind: SocketType,
    opts: Options,
    epoll: OwnedFd,
    /// Listeners by token; tokens are never reused, so a stale epoll event finds nothing.
    listeners: HashMap<u64, TcpListener>,
    /// Listeners taken out of epoll after a failed accept, and when to try them again.
    paused: Vec<(Instant, u64)>,
    conns: HashMap<u64, Conn>,
    targets: Vec<Target>,
    next_token: u64,
    /// ROUTER: routing id -> connection.
    routes: HashMap<Bytes, u64>,
    /// Handshaken connections (DEALER round-robin, PUB fan-out, SUB subscriptions).
    active: Vec<u64>,
    rr: usize,
    /// DEALER: messages sent while no peer was connected.
    unsent: VecDeque<Vec<Bytes>>,
    inbox: VecDeque<Vec<Bytes>>,
    events: VecDeque<Event>,
    /// Connections with queued output not yet flushed.
    dirty: Vec<u64>,
    /// Handshake deadlines, oldest first (one fixed timeout, so FIFO order is deadline
    /// order); entries of connections already through are skipped when they come up.
    handshakes: VecDeque<(Instant, u64)>,
    /// SUB: our subscriptions.
    subscriptions: Vec<Bytes>,
    read_buf: Vec<u8>,
    items: Vec<Item>,
    next_routing_id: u32,
    stats: Stats,
}

impl AsFd for Socket {
    /// The epoll descriptor to poll for readability (see the module documentation).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

impl Socket {
    pub fn new(kind: SocketType, opts: Options) -> io::Result<Socket> {
        Ok(Socket {
            kind,
            opts,
            epoll: epoll::create(epoll::CreateFlags::CLOEXEC)?,
            listeners: HashMap::new(),
            conns: HashMap::new(),
            targets: Vec::new(),
            next_token: 1,
            routes: HashMap::new(),
            active: Vec::new(),
            rr: 0,
            unsent: VecDeque::new(),
            inbox: VecDeque::new(),
            events: VecDeque::new(),
            paused: Vec::new(),
            dirty: Vec::new(),
            handshakes: VecDeque::new(),
            subscriptions: Vec::new(),
            // grown on the first read (Conn::read): a process with thousands of sockets, most
            // of them quiet, should not zero 256 KiB for each
            read_buf: Vec::new(),
            items: Vec::new(),
            next_routing_id: rand::random(),
            stats: Stats::default(),
        })
    }

    pub fn kind(&self) -> SocketType {
        self.kind
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Handshaken peers.
    pub fn peer_count(&self) -> usize {
        self.active.len()
    }

    /// Whether `routing_id` is a connected peer (ROUTER).
    pub fn has_peer(&self, routing_id: &[u8]) -> bool {
        self.routes.contains_key(routing_id)
    }

    /// Listens on `tcp://host:port` (`*` or `0` port: any free one); returns the port.
    pub fn bind(&mut self, endpoint: &str) -> io::Result<u16> {
        let l = endpoint::listen(endpoint)?;
        let port = l.local_addr()?.port();
        let token = self.token();
        epoll::add(
            &self.epoll,
            &l,
            epoll::EventData::new_u64(token),
            epoll::EventFlags::IN,
        )?;
        self.listeners.insert(token, l);
        Ok(port)
    }

    /// Connects to `tcp://host:port` now and again whenever the connection is lost or
    /// refused, after [`Options::reconnect_ivl`] (like libzmq). A refused connection is not
    /// an error here: it is retried.
    pub fn connect(&mut self, endpoint: &str) -> io::Result<()> {
        let addr = endpoint::resolve(endpoint)?;
        self.targets.push(Target {
            addr,
            conn: None,
            retry_at: None,
        });
        self.start_connect(self.targets.len() - 1);
        Ok(())
    }

    /// Subscribes a SUB socket to messages whose first frame starts with `prefix` (empty:
    /// everything). Sent to connected publishers at the next [`Socket::flush`] and to
    /// every publisher that connects later.
    pub fn subscribe(&mut self, prefix: &[u8]) {
        let prefix = Bytes::copy_from_slice(prefix);
        self.send_subscription(1, &prefix);
        self.subscriptions.push(prefix);
    }

    /// Drops one subscription made with [`Socket::subscribe`].
    pub fn unsubscribe(&mut self, prefix: &[u8]) {
        if let Some(i) = self.subscriptions.iter().position(|s| s[..] == *prefix) {
            let s = self.subscriptions.swap_remove(i);
            self.send_subscription(0, &s);
        }
    }

    /// Subscriptions go out in ZMTP 3.0's form (a message: 0x01/0x00 then the prefix),
    /// which every libzmq 4.x publisher understands whatever version it speaks.
    fn send_subscription(&mut self, op: u8, prefix: &Bytes) {
        let mut m = Vec::with_capacity(prefix.len() + 1);
        m.push(op);
        m.extend_from_slice(prefix);
        let m = Bytes::from(m);
        for &t in &self.active {
            if let Some(c) = self.conns.get_mut(&t) {
                c.out.push_message(std::slice::from_ref(&m));
                mark_dirty(&mut self.dirty, c, t);
            }
        }
    }

    /// The next whole message, without blocking. For a ROUTER the first frame is the
    /// sender's routing id. On an empty queue this does the pending IO first (see the
    /// module documentation).
    pub fn recv(&mut self) -> Option<Vec<Bytes>> {
        if self.inbox.is_empty() {
            self.handle_io();
        }
        self.inbox.pop_front()
    }

    /// The next peer event (connections made, lost or rejected).
    pub fn event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether messages or events are queued already (poll would not report them).
    pub fn has_pending(&self) -> bool {
        !self.inbox.is_empty() || !self.events.is_empty()
    }

    /// How long the owner may wait in poll before calling [`Socket::recv`] anyway: the next
    /// reconnect attempt is due then. `None`: no timer.
    pub fn timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        self.targets
            .iter()
            .filter_map(|t| t.retry_at)
            .chain(self.handshakes.front().map(|h| h.0))
            .chain(self.paused.iter().map(|p| p.0))
            .min()
            .map(|at| at.saturating_duration_since(now))
    }

    /// Queues one message (no syscall; see [`Socket::flush`]).
    ///
    /// * ROUTER: `frames[0]` is the peer's routing id, the rest is sent to it.
    /// * DEALER: round-robin over connected peers; held until one connects if none is.
    /// * PUB: to every peer subscribed to a prefix of `frames[0]`.
    pub fn send(&mut self, mut frames: Vec<Bytes>) -> Result<(), SendError> {
        match self.kind {
            SocketType::Router => {
                if frames.len() < 2 {
                    return Err(SendError::Empty);
                }
                let Some(&t) = self.routes.get(&frames[0]) else {
                    return if self.opts.router_mandatory {
                        Err(SendError::HostUnreachable(frames.swap_remove(0)))
                    } else {
                        Ok(())
                    };
                };
                self.queue(t, &frames[1..]);
            }
            SocketType::Dealer => {
                if frames.is_empty() {
                    return Err(SendError::Empty);
                }
                if self.active.is_empty() {
                    self.unsent.push_back(frames);
                } else {
                    let t = self.active[self.rr % self.active.len()];
                    self.rr = self.rr.wrapping_add(1);
                    self.queue(t, &frames);
                }
            }
            SocketType::Pub => {
                if frames.is_empty() {
                    return Err(SendError::Empty);
                }
                let topic = &frames[0];
                let hwm = self.opts.pub_hwm_bytes.unwrap_or(usize::MAX);
                for &t in &self.active {
                    let Some(c) = self.conns.get_mut(&t) else {
                        continue;
                    };
                    if !c.subs.iter().any(|s| topic.starts_with(s)) {
                        continue;
                    }
                    let queued = c.out.len();
                    if queued >= hwm || (c.stalled && queued > hwm / 2) {
                        self.stats.pub_dropped += 1;
                        if !c.stalled {
                            c.stalled = true;
                            self.events.push_back(Event::SubscriberStalled {
                                addr: c.addr,
                                queued,
                            });
                        }
                        continue;
                    }
                    c.stalled = false;
                    c.out.push_message(&frames);
                    mark_dirty(&mut self.dirty, c, t);
                }
            }
            SocketType::Sub => return Err(SendError::NotSupported),
        }
        Ok(())
    }

    fn queue(&mut self, t: u64, frames: &[Bytes]) {
        if let Some(c) = self.conns.get_mut(&t) {
            c.out.push_message(frames);
            mark_dirty(&mut self.dirty, c, t);
        }
    }

    /// Writes queued messages: one `write`/`writev` per connection with queued bytes. What
    /// the kernel does not take stays queued; the connection is then polled for
    /// writability and the rest goes out from [`Socket::recv`]'s IO pass (or the next
    /// flush). A connection whose write fails is closed (a `Disconnected` event follows).
    pub fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for t in dirty.drain(..) {
            self.write_conn(t);
        }
        if self.dirty.is_empty() {
            self.dirty = dirty; // keep the allocation
        }
    }

    /// Bytes queued for writing, over all connections.
    pub fn queued_bytes(&self) -> usize {
        self.conns.values().map(|c| c.out.len()).sum()
    }

    fn write_conn(&mut self, t: u64) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        c.dirty = false;
        if c.phase == Phase::Connecting || c.out.is_empty() {
            return;
        }
        match c.write() {
            Ok(drained) => {
                if drained == c.want_write {
                    let flags = if drained {
                        epoll::EventFlags::IN
                    } else {
                        epoll::EventFlags::IN | epoll::EventFlags::OUT
                    };
                    c.want_write = !drained;
                    let r =
                        epoll::modify(&self.epoll, &c.stream, epoll::EventData::new_u64(t), flags);
                    if let Err(e) = r {
                        self.close(t, CloseCause::Io(e.into()));
                    }
                }
            }
            Err(e) => self.close(t, CloseCause::Io(e)),
        }
    }

    /// One IO pass: due reconnects and handshake timeouts, then everything epoll reports
    /// ready right now.
    pub fn handle_io(&mut self) {
        if !self.paused.is_empty() {
            self.resume_listeners(Instant::now());
        }
        if let Some(&(at, _)) = self.handshakes.front() {
            let now = Instant::now();
            if at <= now {
                self.expire_handshakes(now);
            }
        }
        if !self.targets.is_empty() {
            let now = Instant::now();
            for i in 0..self.targets.len() {
                if self.targets[i].retry_at.is_some_and(|at| at <= now) {
                    self.stats.reconnects += 1;
                    self.start_connect(i);
                }
            }
        }
        // a local buffer, not a field: rustix's `Event` holds a pointer union, which would
        // make the socket `!Send` (clients share theirs between threads behind a mutex)
        let mut buf = [MaybeUninit::<epoll::Event>::uninit(); MAX_EVENTS];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let evs: &[epoll::Event] = match epoll::wait(&self.epoll, &mut buf[..], Some(&zero)) {
            Ok((evs, _)) => evs,
            Err(_) => &[], // EINTR: nothing reported this pass
        };
        for ev in evs {
            let t = ev.data.u64();
            let flags = ev.flags;
            if self.listeners.contains_key(&t) {
                self.accept_all(t);
                continue;
            }
            let out = epoll::EventFlags::OUT | epoll::EventFlags::ERR | epoll::EventFlags::HUP;
            if flags.intersects(out) {
                self.on_writable(t);
            }
            let inp = epoll::EventFlags::IN | epoll::EventFlags::ERR | epoll::EventFlags::HUP;
            if flags.intersects(inp) {
                self.on_readable(t);
            }
        }
    }

    fn expire_handshakes(&mut self, now: Instant) {
        while let Some(&(at, t)) = self.handshakes.front() {
            if at > now {
                break;
            }
            self.handshakes.pop_front();
            if self.conns.get(&t).is_some_and(|c| c.phase != Phase::Active) {
                self.close(t, CloseCause::Protocol(ProtocolError::HandshakeTimeout));
            }
        }
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn start_connect(&mut self, i: usize) {
        let addr = self.targets[i].addr;
        self.targets[i].retry_at = None;
        let stream = match endpoint::start_connect(addr) {
            Ok(s) => s,
            Err(_) => {
                self.targets[i].retry_at = Some(Instant::now() + self.opts.reconnect_ivl);
                return;
            }
        };
        let t = self.token();
        let flags = epoll::EventFlags::IN | epoll::EventFlags::OUT;
        if epoll::add(&self.epoll, &stream, epoll::EventData::new_u64(t), flags).is_err() {
            self.targets[i].retry_at = Some(Instant::now() + self.opts.reconnect_ivl);
            return;
        }
        let mut c = Conn::new(
            stream,
            addr,
            Phase::Connecting,
            self.opts.max_msg_size,
            Some(i),
        );
        c.want_write = true;
        self.conns.insert(t, c);
        self.targets[i].conn = Some(t);
    }

    fn accept_all(&mut self, lt: u64) {
        loop {
            let Some(l) = self.listeners.get(&lt) else {
                return;
            };
            let (stream, addr) = match l.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // the peer gave up while queued, or a signal: the next one may be fine
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => return self.pause_listener(lt, e),
            };
            self.stats.accepted += 1;
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let t = self.token();
            if epoll::add(
                &self.epoll,
                &stream,
                epoll::EventData::new_u64(t),
                epoll::EventFlags::IN,
            )
            .is_err()
            {
                continue;
            }
            let c = Conn::new(stream, addr, Phase::Greeting, self.opts.max_msg_size, None);
            self.conns.insert(t, c);
            self.begin_handshake(t);
        }
    }

    /// EMFILE & co: the pending connection stays queued and the listener stays readable, so
    /// a level-triggered poll would report it ready, and this fail, in a busy loop. Take it
    /// out of epoll for [`ACCEPT_RETRY`] and tell the owner.
    fn pause_listener(&mut self, lt: u64, e: io::Error) {
        self.stats.accept_failed += 1;
        self.events.push_back(Event::AcceptFailed {
            error: e.to_string(),
        });
        if let Some(l) = self.listeners.get(&lt) {
            let _ = epoll::modify(
                &self.epoll,
                l,
                epoll::EventData::new_u64(lt),
                epoll::EventFlags::empty(),
            );
        }
        self.paused.push((Instant::now() + ACCEPT_RETRY, lt));
    }

    fn resume_listeners(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .paused
            .iter()
            .filter(|p| p.0 <= now)
            .map(|p| p.1)
            .collect();
        self.paused.retain(|p| p.0 > now);
        for lt in due {
            if let Some(l) = self.listeners.get(&lt) {
                let _ = epoll::modify(
                    &self.epoll,
                    l,
                    epoll::EventData::new_u64(lt),
                    epoll::EventFlags::IN,
                );
            }
            self.accept_all(lt);
        }
    }

    /// TCP is up: queue greeting + READY and send them.
    fn begin_handshake(&mut self, t: u64) {
        let (kind, id) = (self.kind.name(), self.opts.identity.clone());
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        let _ = c.stream.set_nodelay(true); // like libzmq: messages are latency-bound
        c.phase = Phase::Greeting;
        c.queue_handshake(kind, &id);
        let deadline = Instant::now() + self.opts.handshake_timeout;
        self.handshakes.push_back((deadline, t));
        self.write_conn(t);
    }

    fn on_writable(&mut self, t: u64) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        if c.phase == Phase::Connecting {
            let failed = match c.stream.take_error() {
                Ok(Some(e)) => Some(e),
                Ok(None) => c.stream.peer_addr().err(),
                Err(e) => Some(e),
            };
            if let Some(e) = failed {
                self.close(t, CloseCause::Io(e));
                return;
            }
            self.begin_handshake(t);
        } else {
            self.write_conn(t);
        }
    }

    fn on_readable(&mut self, t: u64) {
        let mut buf = std::mem::take(&mut self.read_buf);
        let mut items = std::mem::take(&mut self.items);
        let res = match self.conns.get_mut(&t) {
            Some(c) if c.phase != Phase::Connecting => c.read(&mut buf, &mut items),
            _ => Ok(false),
        };
        self.read_buf = buf;
        // Items decoded before an error are still delivered (they were well-formed).
        let mut res = res.map(|_| ());
        for item in items.drain(..) {
            if let Err(e) = self.on_item(t, item) {
                res = Err(e);
                break;
            }
        }
        items.clear();
        self.items = items;
        if let Err(cause) = res {
            self.close(t, cause);
        }
    }

    fn on_item(&mut self, t: u64, item: Item) -> Result<(), CloseCause> {
        let Some(c) = self.conns.get_mut(&t) else {
            return Ok(());
        };
        match (c.phase, item) {
            (Phase::AwaitReady, Item::Command(body)) => {
                let (name, data) = frame::split_command(&body)?;
                if name != b"READY" {
                    return Err(ProtocolError::ExpectedReady.into());
                }
                let props = frame::parse_properties(&data)?;
                let find = |n: &str| {
                    props
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(n))
                        .map(|(_, v)| v.clone())
                };
                let peer_type = find("Socket-Type").unwrap_or_default();
                if !self.kind.accepts_peer(&peer_type) {
                    let t = String::from_utf8_lossy(&peer_type).into_owned();
                    return Err(ProtocolError::IncompatibleSocketType(t).into());
                }
                c.peer_identity = find("Identity").unwrap_or_default();
                self.activate(t)
            }
            (Phase::AwaitReady, Item::Frame { .. }) => Err(ProtocolError::ExpectedReady.into()),
            (Phase::Active, Item::Command(body)) => self.on_command(t, &body),
            (Phase::Active, Item::Frame { more, data }) => {
                c.parts.push(data);
                if !more {
                    let msg = std::mem::take(&mut c.parts);
                    self.on_message(t, msg);
                }
                Ok(())
            }
            // Nothing is decoded before the greeting is through.
            (Phase::Connecting | Phase::Greeting, _) => Ok(()),
        }
    }

    /// READY received: the peer joins the routing table / round-robin / fan-out.
    fn activate(&mut self, t: u64) -> Result<(), CloseCause> {
        let routing_id = match self.kind {
            SocketType::Router => {
                let ident = self.conns[&t].peer_identity.clone();
                let id = if ident.is_empty() {
                    // libzmq's generated ids: a zero byte then a 32-bit counter.
                    self.next_routing_id = self.next_routing_id.wrapping_add(1);
                    let mut id = vec![0u8];
                    id.extend_from_slice(&self.next_routing_id.to_be_bytes());
                    Bytes::from(id)
                } else {
                    ident
                };
                if let Some(&old) = self.routes.get(&id) {
                    if !self.opts.router_handover {
                        // libzmq refuses the newcomer; not a protocol error.
                        self.close(t, CloseCause::HandedOver);
                        return Ok(());
                    }
                    self.close(old, CloseCause::HandedOver);
                }
                self.routes.insert(id.clone(), t);
                id
            }
            _ => self.conns[&t].peer_identity.clone(),
        };
        let c = self
            .conns
            .get_mut(&t)
            .expect("activating a live connection");
        c.phase = Phase::Active;
        c.routing_id = routing_id.clone();
        let addr = c.addr;
        match self.kind {
            SocketType::Dealer => {
                for m in std::mem::take(&mut self.unsent) {
                    c.out.push_message(&m);
                }
            }
            SocketType::Sub => {
                for s in &self.subscriptions {
                    let mut m = Vec::with_capacity(s.len() + 1);
                    m.push(1);
                    m.extend_from_slice(s);
                    c.out.push_message(&[Bytes::from(m)]);
                }
            }
            _ => {}
        }
        self.active.push(t);
        self.stats.connected += 1;
        self.events.push_back(Event::Connected { routing_id, addr });
        self.write_conn(t);
        Ok(())
    }

    fn on_command(&mut self, t: u64, body: &Bytes) -> Result<(), CloseCause> {
        let (name, data) = frame::split_command(body)?;
        let c = self
            .conns
            .get_mut(&t)
            .expect("command from a live connection");
        match name {
            b"PING" => {
                // PING: TTL (2 bytes) then a context echoed in PONG (libzmq heartbeats).
                let ctx = data.get(2..).unwrap_or_default();
                let mut b = bytes::BytesMut::new();
                frame::put_command(&mut b, b"PONG", ctx);
                c.out.push_raw(&b);
                self.write_conn(t); // owners that only receive never flush
            }
            b"ERROR" => {
                let n = data.first().copied().unwrap_or(0) as usize;
                let reason = data.get(1..1 + n).unwrap_or_default();
                let reason = String::from_utf8_lossy(reason).into_owned();
                return Err(ProtocolError::PeerError(reason).into());
            }
            b"SUBSCRIBE" if self.kind == SocketType::Pub => c.subs.push(data),
            b"CANCEL" if self.kind == SocketType::Pub => remove_one(&mut c.subs, &data),
            _ => {} // PONG, and commands we do not use
        }
        Ok(())
    }

    fn on_message(&mut self, t: u64, mut msg: Vec<Bytes>) {
        match self.kind {
            SocketType::Router => {
                let id = self.conns[&t].routing_id.clone();
                msg.insert(0, id);
                self.inbox.push_back(msg);
            }
            SocketType::Dealer => self.inbox.push_back(msg),
            SocketType::Sub => {
                let topic = &msg[0];
                if self.subscriptions.iter().any(|s| topic.starts_with(s)) {
                    self.inbox.push_back(msg);
                }
            }
            SocketType::Pub => {
                // ZMTP 3.0 subscriptions: a one-frame message 0x01/0x00 + prefix.
                let c = self
                    .conns
                    .get_mut(&t)
                    .expect("message from a live connection");
                if let [m] = &msg[..] {
                    match m.first() {
                        Some(1) => c.subs.push(m.slice(1..)),
                        Some(0) => remove_one(&mut c.subs, &m[1..]),
                        _ => {}
                    }
                }
            }
        }
    }

    /// Closes a connection, updates the tables, reports it, schedules its reconnect.
    fn close(&mut self, t: u64, cause: CloseCause) {
        let Some(c) = self.conns.remove(&t) else {
            return;
        };
        let _ = epoll::delete(&self.epoll, &c.stream);
        if c.phase == Phase::Active {
            if self.kind == SocketType::Router && self.routes.get(&c.routing_id) == Some(&t) {
                self.routes.remove(&c.routing_id);
            }
            self.active.retain(|&a| a != t);
            self.stats.disconnected += 1;
            self.events.push_back(Event::Disconnected {
                routing_id: c.routing_id.clone(),
                addr: c.addr,
            });
        }
        if let CloseCause::Protocol(error) = cause {
            self.stats.protocol_errors += 1;
            self.events.push_back(Event::Rejected {
                addr: c.addr,
                error,
            });
        }
        if let Some(i) = c.endpoint {
            if self.targets[i].conn == Some(t) {
                self.targets[i].conn = None;
                self.targets[i].retry_at = Some(Instant::now() + self.opts.reconnect_ivl);
            }
        }
    }
}

/// Lists a connection for the next [`Socket::flush`] (once).
fn mark_dirty(dirty: &mut Vec<u64>, c: &mut Conn, t: u64) {
    if !c.dirty {
        c.dirty = true;
        dirty.push(t);
    }
}

fn remove_one(subs: &mut Vec<Bytes>, prefix: &[u8]) {
    if let Some(i) = subs.iter().position(|s| s[..] == *prefix) {
        subs.swap_remove(i);
    }
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("kind", &self.kind)
            .field("listeners", &self.listeners.len())
            .field("connections", &self.conns.len())
            .field("peers", &self.active.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// Clients keep their sockets behind a mutex shared by threads: a socket must stay `Send`.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Socket>();
};

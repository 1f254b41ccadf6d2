//! What a socket's owner configures and gets back: socket types, options, events,
//! counters, send errors. Kept apart from the IO in [`crate::socket`].

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::frame::ProtocolError;

/// The socket types oxipp uses, with libzmq's semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocketType {
    /// Receive prepends the peer's routing id; send routes by the first frame.
    Router,
    /// Fair-queued receive, round-robin send; queues while no peer is connected.
    Dealer,
    /// Sends each message to the peers subscribed to a prefix of its first frame.
    Pub,
    /// Receives what its subscriptions match.
    Sub,
}

impl SocketType {
    /// The `Socket-Type` metadata value.
    pub fn name(self) -> &'static str {
        match self {
            SocketType::Router => "ROUTER",
            SocketType::Dealer => "DEALER",
            SocketType::Pub => "PUB",
            SocketType::Sub => "SUB",
        }
    }

    /// RFC 23's compatibility table (libzmq closes the connection otherwise).
    pub(crate) fn accepts_peer(self, peer: &[u8]) -> bool {
        let ok: &[&[u8]] = match self {
            SocketType::Router => &[b"DEALER", b"REQ", b"ROUTER"],
            SocketType::Dealer => &[b"REP", b"DEALER", b"ROUTER"],
            SocketType::Pub => &[b"SUB", b"XSUB"],
            SocketType::Sub => &[b"PUB", b"XPUB"],
        };
        ok.contains(&peer)
    }
}

/// Socket options. The defaults are what oxipp sets on its libzmq sockets.
#[derive(Debug, Clone)]
pub struct Options {
    /// Our `Identity` (ROUTER and DEALER announce it; a peer ROUTER routes by it).
    pub identity: Bytes,
    /// Frames declaring more bytes close the connection (libzmq's `ZMQ_MAXMSGSIZE`, which
    /// it also checks per frame). `None`: unlimited.
    pub max_msg_size: Option<u64>,
    /// Delay before reconnecting a `connect()`ed endpoint (libzmq's `reconnect_ivl`).
    pub reconnect_ivl: Duration,
    /// ROUTER: sending to an unknown routing id is an error ([`SendError::HostUnreachable`],
    /// `ZMQ_ROUTER_MANDATORY`) rather than a silent drop.
    pub router_mandatory: bool,
    /// ROUTER: a new peer announcing a routing id already in use takes it over (the old
    /// connection is closed, `ZMQ_ROUTER_HANDOVER`); otherwise the newcomer is refused.
    pub router_handover: bool,
    /// A connection that has not completed greeting + READY by then is closed and counted
    /// as a protocol error (libzmq's `ZMQ_HANDSHAKE_IVL`, 30 s): a peer that connects and
    /// stays silent does not hold a descriptor forever.
    pub handshake_timeout: Duration,
    /// PUB: a subscriber with this many bytes queued (not yet taken by the kernel) gets no
    /// more messages until its queue drains below half of it; each message skipped counts in
    /// [`Stats::pub_dropped`] and a [`Event::SubscriberStalled`] starts each such episode.
    /// libzmq's PUB drops the same way at its send high-water mark (1,000 messages); this
    /// bounds the memory one stalled subscriber (a suspended client) can pin. `None`:
    /// unlimited.
    pub pub_hwm_bytes: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            identity: Bytes::new(),
            max_msg_size: None,
            reconnect_ivl: Duration::from_millis(100),
            router_mandatory: true,
            router_handover: true,
            handshake_timeout: Duration::from_secs(30),
            pub_hwm_bytes: Some(1 << 30),
        }
    }
}

/// Something the owner should know about a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Handshake done. `routing_id`: for a ROUTER the id its messages carry; for other
    /// types the peer's `Identity` (usually empty).
    Connected { routing_id: Bytes, addr: SocketAddr },
    /// A connection that had completed its handshake is gone (EOF, reset, ERROR, or taken
    /// over by a newer peer with the same routing id — then `Connected` follows).
    Disconnected { routing_id: Bytes, addr: SocketAddr },
    /// A connection was dropped for bad input (counted in [`Stats::protocol_errors`]).
    Rejected {
        addr: SocketAddr,
        error: ProtocolError,
    },
    /// A listener could not accept a connection for lack of resources (usually EMFILE: the
    /// process is out of file descriptors). The connection stays in the kernel's accept
    /// queue; the listener pauses for [`ACCEPT_RETRY`](crate::ACCEPT_RETRY) and tries again,
    /// instead of being reported ready (and failing) on every poll.
    AcceptFailed { error: String },
    /// PUB: this subscriber reached [`Options::pub_hwm_bytes`]; messages for it are dropped
    /// until it catches up.
    SubscriberStalled { addr: SocketAddr, queued: usize },
}

/// Counters, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub accepted: u64,
    /// Handshakes completed.
    pub connected: u64,
    pub disconnected: u64,
    /// Connections closed for bad input (garbage greeting, other mechanism, oversize
    /// frame, incompatible socket type, malformed command, peer ERROR).
    pub protocol_errors: u64,
    /// Reconnect attempts started after a lost or refused connection.
    pub reconnects: u64,
    /// `accept` failures for lack of resources (see [`Event::AcceptFailed`]).
    pub accept_failed: u64,
    /// PUB: messages not queued for a stalled subscriber (see [`Options::pub_hwm_bytes`]).
    pub pub_dropped: u64,
}

/// Why [`Socket::send`](crate::Socket::send) refused a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// ROUTER (`router_mandatory`): no connected peer has this routing id (EHOSTUNREACH).
    HostUnreachable(Bytes),
    /// No frames to send (a ROUTER needs the routing id and at least one frame).
    Empty,
    /// SUB sockets send subscriptions only ([`Socket::subscribe`](crate::Socket::subscribe)).
    NotSupported,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::HostUnreachable(id) => write!(f, "no peer with routing id {id:?}"),
            SendError::Empty => write!(f, "empty message"),
            SendError::NotSupported => write!(f, "this socket type cannot send"),
        }
    }
}

impl std::error::Error for SendError {}

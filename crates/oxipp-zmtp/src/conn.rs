//! One TCP connection: handshake progress, undecoded leftovers, the write queue.
//!
//! A connection knows nothing of socket semantics (routing, subscriptions): it turns bytes
//! into [`Item`]s and queues bytes to write. The [`crate::Socket`] decides what the items
//! mean.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};

use bytes::{Bytes, BytesMut};

use crate::frame::{self, Decoder, Item, ProtocolError, GREETING_LEN};
use crate::writeq::WriteQueue;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Non-blocking connect in progress (waiting for writability).
    Connecting,
    /// Waiting for the peer's 64-byte greeting (ours is queued already).
    Greeting,
    /// Greeting checked; the next frame must be the peer's READY.
    AwaitReady,
    /// READY exchanged: messages flow.
    Active,
}

/// Why a connection is being closed.
#[derive(Debug)]
pub enum CloseCause {
    /// The peer closed its end (read returned 0).
    Eof,
    /// A read or write failed (reset, broken pipe, refused connect). Kept for `Debug`.
    Io(#[allow(dead_code)] io::Error),
    Protocol(ProtocolError),
    /// Another connection took over this one's routing id (ROUTER handover).
    HandedOver,
}

impl From<ProtocolError> for CloseCause {
    fn from(e: ProtocolError) -> Self {
        CloseCause::Protocol(e)
    }
}

/// One peer connection.
#[derive(Debug)]
pub struct Conn {
    pub stream: TcpStream,
    pub addr: SocketAddr,
    pub phase: Phase,
    /// Bytes read but not yet decodable (a partial header or small frame), kept here so the
    /// socket can use one shared read buffer for all its connections.
    pending_in: Vec<u8>,
    decoder: Decoder,
    pub out: WriteQueue,
    /// Whether the connection is registered for EPOLLOUT (its queue did not drain).
    pub want_write: bool,
    /// Whether the connection is listed in the socket's to-flush list.
    pub dirty: bool,
    /// The peer's `Identity` property (empty if none).
    pub peer_identity: Bytes,
    /// For a ROUTER: the routing id receive prepends and send routes by.
    pub routing_id: Bytes,
    /// Frames of the message being received (until a frame without MORE).
    pub parts: Vec<Bytes>,
    /// Index of the `connect()` endpoint this connection serves (reconnected when it drops).
    pub endpoint: Option<usize>,
    /// PUB side: the peer's subscriptions (a multiset, like libzmq's refcounted trie).
    pub subs: Vec<Bytes>,
    /// PUB side: dropping messages for this subscriber (its queue reached the high-water mark).
    pub stalled: bool,
    pub peer_minor: u8,
    /// This connection's `SO_RCVLOWAT` as last set (see [`Conn::update_lowat`]).
    lowat: usize,
}

impl Conn {
    pub fn new(
        stream: TcpStream,
        addr: SocketAddr,
        phase: Phase,
        max_frame: Option<u64>,
        endpoint: Option<usize>,
    ) -> Self {
        Conn {
            stream,
            addr,
            phase,
            pending_in: Vec::new(),
            decoder: Decoder::new(max_frame),
            out: WriteQueue::default(),
            want_write: false,
            dirty: false,
            peer_identity: Bytes::new(),
            routing_id: Bytes::new(),
            parts: Vec::new(),
            endpoint,
            subs: Vec::new(),
            stalled: false,
            peer_minor: 0,
            lowat: 1,
        }
    }

    /// Queues our greeting and READY (NULL security: no need to wait for the peer's).
    pub fn queue_handshake(&mut self, socket_type: &str, identity: &[u8]) {
        self.out.push_raw(&frame::greeting());
        let mut ready = BytesMut::new();
        let mut props: Vec<(&str, &[u8])> = vec![("Socket-Type", socket_type.as_bytes())];
        if matches!(socket_type, "ROUTER" | "DEALER") {
            props.push(("Identity", identity));
        }
        frame::put_ready(&mut ready, &props);
        self.out.push_raw(&ready);
    }

    /// Reads once (level-triggered epoll reports the connection again if more is waiting)
    /// and decodes what arrived into `items`. `buf` is the socket's shared read buffer.
    ///
    /// Returns `Ok(false)` if nothing could be read (`WouldBlock`).
    pub fn read(&mut self, buf: &mut Vec<u8>, items: &mut Vec<Item>) -> Result<bool, CloseCause> {
        // A big frame in progress with nothing left over: read straight into its buffer.
        if self.pending_in.is_empty() {
            if let Some(spare) = self.decoder.big_spare() {
                let n = match read_some(&mut self.stream, spare)? {
                    None => return Ok(false),
                    Some(n) => n,
                };
                items.extend(self.decoder.big_filled(n));
                self.update_lowat();
                return Ok(true);
            }
        }
        let k = self.pending_in.len();
        let want = k + crate::READ_BUF;
        if buf.len() < want {
            buf.resize(want, 0);
        }
        buf[..k].copy_from_slice(&self.pending_in);
        let n = match read_some(&mut self.stream, &mut buf[k..])? {
            None => return Ok(false),
            Some(n) => n,
        };
        let data = &buf[..k + n];
        let mut used = 0;
        if self.phase == Phase::Greeting {
            check_greeting_prefix(data)?;
            if data.len() < GREETING_LEN {
                self.keep(data);
                return Ok(true);
            }
            self.peer_minor = frame::parse_greeting(&data[..GREETING_LEN])?.minor;
            self.phase = Phase::AwaitReady;
            used = GREETING_LEN;
        }
        used += self.decoder.decode(&data[used..], items)?;
        self.keep(&data[used..]);
        self.update_lowat();
        Ok(true)
    }

    /// While a big frame arrives, wake the reader for big parts of it only (see
    /// [`crate::lowat`]).
    fn update_lowat(&mut self) {
        let want = crate::lowat::wanted(self.decoder.big_remaining());
        if want != self.lowat {
            self.lowat = if crate::lowat::set(&self.stream, want) {
                want
            } else {
                1
            };
        }
    }

    fn keep(&mut self, rest: &[u8]) {
        self.pending_in.clear();
        self.pending_in.extend_from_slice(rest);
    }

    /// Writes what the kernel takes; `Ok(true)` when the queue is empty.
    pub fn write(&mut self) -> io::Result<bool> {
        self.out.write_to(&mut self.stream)
    }
}

/// One `read(2)`: `Ok(None)` for WouldBlock, EOF as [`CloseCause::Eof`].
fn read_some(s: &mut TcpStream, into: &mut [u8]) -> Result<Option<usize>, CloseCause> {
    loop {
        return match s.read(into) {
            Ok(0) if !into.is_empty() => Err(CloseCause::Eof),
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(CloseCause::Io(e)),
        };
    }
}

/// Refuses a stream as soon as its first bytes cannot be a ZMTP 3 greeting, without
/// waiting for all 64 (garbage is dropped at once, whatever its length).
fn check_greeting_prefix(d: &[u8]) -> Result<(), ProtocolError> {
    if d.first().is_some_and(|&b| b != 0xFF) {
        return Err(ProtocolError::BadGreeting("bad signature"));
    }
    if d.get(9).is_some_and(|&b| b & 1 == 0) {
        return Err(ProtocolError::BadGreeting("bad signature"));
    }
    if d.get(10).is_some_and(|&b| b < 3) {
        return Err(ProtocolError::BadGreeting("ZMTP version < 3"));
    }
    Ok(())
}

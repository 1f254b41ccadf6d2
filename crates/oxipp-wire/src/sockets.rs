//! The one place that creates ZeroMQ sockets.
//!
//! Every socket option oxipp relies on is set here (unlimited high-water marks like stock
//! relays, short linger, fixed routing identities), so that changing how libzmq is built or
//! secured (CURVE later) touches one module.

use bytes::Bytes;

use crate::frames::Frame;

pub use zmq::{Context, Socket, SocketType};

/// Options for a new socket.
#[derive(Debug, Clone, Default)]
pub struct SocketSpec<'a> {
    /// Routing identity announced to peers (engine-facing ROUTERs use fixed ones).
    pub identity: Option<&'a [u8]>,
    /// Subscribe to everything (SUB sockets).
    pub subscribe_all: bool,
}

pub fn new_socket(ctx: &Context, kind: SocketType, spec: &SocketSpec) -> zmq::Result<Socket> {
    let s = ctx.socket(kind)?;
    s.set_sndhwm(0)?;
    s.set_rcvhwm(0)?;
    s.set_linger(1000)?;
    if let Some(id) = spec.identity {
        s.set_identity(id)?;
    }
    if kind == SocketType::ROUTER {
        // Large relays: keep the peer table even when a peer reconnects with the same id.
        s.set_router_handover(true)?;
    }
    if spec.subscribe_all {
        s.set_subscribe(b"")?;
    }
    Ok(s)
}

/// Binds `interface` (`tcp://127.0.0.1`, `tcp://*`, …) on `port` (0 = random) and returns the
/// port actually bound.
pub fn bind(s: &Socket, interface: &str, port: u16) -> zmq::Result<u16> {
    let addr = if port == 0 {
        format!("{interface}:*")
    } else {
        format!("{interface}:{port}")
    };
    s.bind(&addr)?;
    let ep = s.get_last_endpoint()?.map_err(|_| zmq::Error::EINVAL)?;
    ep.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or(zmq::Error::EINVAL)
}

/// Frames at least this large are not copied on receive or send: the frame keeps the ZeroMQ
/// message (or hands its Vec to ZeroMQ). Below it, one copy is cheaper than the bookkeeping.
pub const ZERO_COPY_MIN: usize = 64 * 1024;

/// Receives all frames of one message (non-blocking if `dontwait`).
pub fn recv_frames(s: &Socket, dontwait: bool) -> zmq::Result<Vec<Frame>> {
    let flags = if dontwait { zmq::DONTWAIT } else { 0 };
    let mut out = Vec::with_capacity(8);
    loop {
        let mut m = zmq::Message::new();
        s.recv(&mut m, if out.is_empty() { flags } else { 0 })?;
        let more = m.get_more();
        if m.len() >= ZERO_COPY_MIN {
            out.push(Bytes::from_owner(ZmqBytes(m)));
        } else {
            out.push(Bytes::from(m.to_vec()));
        }
        if !more {
            return Ok(out);
        }
    }
}

/// A received ZeroMQ message as the owner of a [`Bytes`] frame.
struct ZmqBytes(zmq::Message);

impl AsRef<[u8]> for ZmqBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Sends frames as one multipart message, handing large frames to ZeroMQ without a copy when
/// this is their only owner (a frame shared elsewhere, or received, is copied once).
pub fn send_owned_frames(s: &Socket, frames: Vec<Frame>) -> zmq::Result<()> {
    let n = frames.len();
    for (i, f) in frames.into_iter().enumerate() {
        let flags = if i + 1 < n { zmq::SNDMORE } else { 0 };
        if f.len() >= ZERO_COPY_MIN {
            s.send(zmq::Message::from(Vec::<u8>::from(f)), flags)?;
        } else {
            s.send(f.as_ref(), flags)?;
        }
    }
    Ok(())
}

/// Sends frames as one multipart message.
pub fn send_frames<I, F>(s: &Socket, frames: I) -> zmq::Result<()>
where
    I: IntoIterator<Item = F>,
    F: AsRef<[u8]>,
{
    let mut it = frames.into_iter().peekable();
    while let Some(f) = it.next() {
        let flags = if it.peek().is_some() { zmq::SNDMORE } else { 0 };
        s.send(f.as_ref(), flags)?;
    }
    Ok(())
}

//! Small helpers for driving [`oxipp_zmtp`] sockets from the simulator's threads.
//!
//! An `oxipp_zmtp` socket has no IO thread: it connects, handshakes, reads and writes only
//! inside its owner's calls (`handle_io`, `recv` on an empty queue, `flush`). `send` only
//! queues; `flush` writes everything queued with one `write`/`writev` per connection.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use oxipp_wire::Frame;
use oxipp_zmtp::Socket;

/// Queues one message (written by the next `flush`).
pub fn send(sock: &mut Socket, frames: Vec<Frame>) -> Result<()> {
    sock.send(frames).context("queueing a message")
}

/// Waits up to `timeout` until `sock` has something to do (returns at once if messages are
/// queued already; never waits past its reconnect timer); the caller then reads it. Peer
/// events are dropped first: nothing here needs them, and queued ones would make every poll
/// return at once.
pub fn wait(sock: &mut Socket, timeout: Duration) -> Result<()> {
    while sock.event().is_some() {}
    oxipp_zmtp::poll(&[sock], Some(timeout)).context("polling a socket")?;
    Ok(())
}

/// A message already read and decoded, without any IO (`recv` on an empty queue does a read
/// pass first, so draining with `recv` costs one more `epoll_wait` per drain). Call
/// `handle_io` once, then this until `None`. Peer events are dropped.
pub fn take(sock: &mut Socket) -> Option<Vec<Frame>> {
    while sock.event().is_some() {}
    if sock.has_pending() {
        sock.recv()
    } else {
        None
    }
}

/// Drives `sock` for `d`, dropping whatever arrives (lets a SUB's connection complete and
/// its subscription reach the publisher before anything is published).
pub fn settle(sock: &mut Socket, d: Duration) -> Result<()> {
    let until = Instant::now() + d;
    loop {
        while sock.recv().is_some() {}
        sock.flush();
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        wait(sock, left.min(Duration::from_millis(20)))?;
    }
}

/// Drives `sock` until everything queued on it has been written to a connected peer, or
/// `limit` has passed (what libzmq's linger did on close). Returns whether it all went out.
pub fn linger(sock: &mut Socket, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    loop {
        sock.flush();
        while sock.recv().is_some() {}
        // a DEALER holds messages until a peer is connected; then they are in its queue
        if sock.peer_count() > 0 && sock.queued_bytes() == 0 {
            return true;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || wait(sock, left.min(Duration::from_millis(10))).is_err() {
            return false;
        }
    }
}

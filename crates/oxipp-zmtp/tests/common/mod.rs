//! Helpers shared by the interop tests: driving our sockets with poll(2) under a deadline,
//! and libzmq peers (the `zmq` crate) configured like oxipp's.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use oxipp_zmtp::{poll, Event, Options, Socket, SocketType};

/// Every wait in these tests gives up (and fails the test) after this long.
pub const T: Duration = Duration::from_secs(20);

pub fn b(x: &[u8]) -> Bytes {
    Bytes::copy_from_slice(x)
}

pub fn ours(kind: SocketType, identity: &[u8]) -> Socket {
    Socket::new(
        kind,
        Options {
            identity: b(identity),
            ..Options::default()
        },
    )
    .expect("socket")
}

/// Drives `s` (recv IO, flush) until a message arrives or `d` passes.
pub fn recv_within(s: &mut Socket, d: Duration) -> Option<Vec<Bytes>> {
    let end = Instant::now() + d;
    loop {
        s.flush();
        if let Some(m) = s.recv() {
            return Some(m);
        }
        let now = Instant::now();
        if now >= end {
            return None;
        }
        poll(&[s], Some((end - now).min(Duration::from_millis(50)))).expect("poll");
    }
}

pub fn recv(s: &mut Socket) -> Vec<Bytes> {
    recv_within(s, T).expect("no message within the deadline")
}

/// Drives `s` until an event arrives (messages received meanwhile stay queued).
pub fn event_within(s: &mut Socket, d: Duration) -> Option<Event> {
    let end = Instant::now() + d;
    loop {
        s.flush();
        if let Some(e) = s.event() {
            return Some(e);
        }
        s.handle_io();
        if let Some(e) = s.event() {
            return Some(e);
        }
        let now = Instant::now();
        if now >= end {
            return None;
        }
        poll(&[s], Some((end - now).min(Duration::from_millis(50)))).expect("poll");
    }
}

pub fn event(s: &mut Socket) -> Event {
    event_within(s, T).expect("no event within the deadline")
}

/// Waits for a `Connected` event, returns its routing id.
pub fn connected(s: &mut Socket) -> Bytes {
    match event(s) {
        Event::Connected { routing_id, .. } => routing_id,
        e => panic!("expected Connected, got {e:?}"),
    }
}

/// Flushes until everything queued is written (driving IO for writability meanwhile).
pub fn flush_all(s: &mut Socket) {
    let end = Instant::now() + T * 3;
    loop {
        s.flush();
        if s.queued_bytes() == 0 {
            return;
        }
        assert!(Instant::now() < end, "could not flush within the deadline");
        poll(&[s], Some(Duration::from_millis(20))).expect("poll");
        s.handle_io();
    }
}

pub fn zmq_sock(ctx: &zmq::Context, kind: zmq::SocketType, identity: &[u8]) -> zmq::Socket {
    let z = ctx.socket(kind).expect("zmq socket");
    z.set_linger(0).unwrap();
    z.set_sndhwm(0).unwrap();
    z.set_rcvhwm(0).unwrap();
    z.set_rcvtimeo(T.as_millis() as i32).unwrap();
    if !identity.is_empty() {
        z.set_identity(identity).unwrap();
    }
    z
}

pub fn zrecv(z: &zmq::Socket) -> Vec<Vec<u8>> {
    z.recv_multipart(0).expect("libzmq recv (timeout?)")
}

pub fn zsend(z: &zmq::Socket, frames: &[&[u8]]) {
    z.send_multipart(frames.iter(), 0).expect("libzmq send");
}

pub fn port_of(z: &zmq::Socket) -> u16 {
    let ep = z.get_last_endpoint().unwrap().unwrap();
    ep.rsplit(':').next().unwrap().parse().unwrap()
}

pub fn as_vecs(m: &[Bytes]) -> Vec<Vec<u8>> {
    m.iter().map(|f| f.to_vec()).collect()
}

/// Drives two of our sockets in turn (they share this thread, so neither may wait on the
/// other alone) until `done` says so; panics after the deadline.
pub fn pump2(
    a: &mut Socket,
    b: &mut Socket,
    mut done: impl FnMut(&mut Socket, &mut Socket) -> bool,
) {
    let end = Instant::now() + T;
    while !done(a, b) {
        assert!(
            Instant::now() < end,
            "pump2: condition not reached within the deadline"
        );
        a.flush();
        b.flush();
        a.handle_io();
        b.handle_io();
        if !(a.has_pending() || b.has_pending()) {
            poll(&[a, b], Some(Duration::from_millis(5))).expect("poll");
        }
    }
}

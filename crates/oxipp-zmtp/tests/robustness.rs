//! Bad input closes the offending connection, is counted, and never disturbs other peers.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::*;
use oxipp_zmtp::frame;
use oxipp_zmtp::{Event, Options, ProtocolError, Socket, SocketType};

/// A ROUTER with a healthy libzmq DEALER attached; `bad` then misbehaves; the DEALER must
/// still be served afterwards.
fn survives(
    max: Option<u64>,
    bad: impl FnOnce(u16) -> TcpStream,
    expect: fn(&ProtocolError) -> bool,
) {
    let mut r = Socket::new(
        SocketType::Router,
        Options {
            max_msg_size: max,
            ..Options::default()
        },
    )
    .unwrap();
    let port = r.bind("tcp://127.0.0.1:0").unwrap();
    let ctx = zmq::Context::new();
    let good = zmq_sock(&ctx, zmq::DEALER, b"good");
    good.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
    assert_eq!(connected(&mut r), b(b"good"));

    let _st = bad(port);
    let err = loop {
        match event(&mut r) {
            Event::Rejected { error, .. } => break error,
            Event::Connected { .. }
            | Event::Disconnected { .. }
            | Event::AcceptFailed { .. }
            | Event::SubscriberStalled { .. } => {}
        }
    };
    assert!(expect(&err), "unexpected rejection reason {err:?}");
    assert_eq!(r.stats().protocol_errors, 1);

    zsend(&good, &[b"still", b"here"]);
    assert_eq!(
        as_vecs(&recv(&mut r)),
        vec![b"good".to_vec(), b"still".to_vec(), b"here".to_vec()]
    );
    r.send(vec![b(b"good"), b(b"yes")]).unwrap();
    r.flush();
    assert_eq!(zrecv(&good), vec![b"yes".to_vec()]);
}

fn raw(port: u16, bytes: &[u8]) -> TcpStream {
    let mut st = TcpStream::connect(("127.0.0.1", port)).unwrap();
    st.write_all(bytes).unwrap();
    st
}

fn handshake(socket_type: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    out.extend_from_slice(&frame::greeting());
    frame::put_ready(&mut out, &[("Socket-Type", socket_type), ("Identity", b"")]);
    out
}

#[test]
fn garbage_instead_of_a_greeting() {
    survives(
        None,
        |port| raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        |e| matches!(e, ProtocolError::BadGreeting(_)),
    );
}

#[test]
fn another_security_mechanism() {
    survives(
        None,
        |port| {
            let mut g = frame::greeting();
            g[12..17].copy_from_slice(b"PLAIN");
            raw(port, &g)
        },
        |e| *e == ProtocolError::BadMechanism,
    );
}

#[test]
fn oversize_frame_declared() {
    survives(
        Some(1 << 20),
        |port| {
            let mut out = handshake(b"DEALER");
            out.extend_from_slice(&[frame::FLAG_LONG]);
            out.extend_from_slice(&(1u64 << 40).to_be_bytes());
            out.extend_from_slice(&[0u8; 100]);
            raw(port, &out)
        },
        |e| matches!(e, ProtocolError::FrameTooLarge(n) if *n == 1 << 40),
    );
}

#[test]
fn incompatible_socket_type() {
    survives(
        None,
        |port| raw(port, &handshake(b"PUB")),
        |e| matches!(e, ProtocolError::IncompatibleSocketType(t) if t == "PUB"),
    );
}

#[test]
fn message_before_ready() {
    survives(
        None,
        |port| {
            let mut out = BytesMut::from(&frame::greeting()[..]);
            frame::put_header(&mut out, 0, 3);
            out.extend_from_slice(b"abc");
            raw(port, &out)
        },
        |e| *e == ProtocolError::ExpectedReady,
    );
}

#[test]
fn malformed_ready_properties() {
    survives(
        None,
        |port| {
            let mut out = BytesMut::from(&frame::greeting()[..]);
            let mut body = vec![11u8];
            body.extend_from_slice(b"Socket-Type");
            body.extend_from_slice(&1000u32.to_be_bytes()); // longer than what follows
            body.extend_from_slice(b"DEALER");
            frame::put_command(&mut out, b"READY", &body);
            raw(port, &out)
        },
        |e| matches!(e, ProtocolError::BadCommand(_)),
    );
}

#[test]
fn random_garbage_streams_never_break_the_socket() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut r = Socket::new(SocketType::Router, Options::default()).unwrap();
    let port = r.bind("tcp://127.0.0.1:0").unwrap();
    let mut streams = Vec::new();
    for i in 0..50 {
        // Half start with a valid handshake, then garbage.
        let mut bytes = if i % 2 == 0 {
            handshake(b"DEALER").to_vec()
        } else {
            Vec::new()
        };
        let n = rng.gen_range(1..2000);
        bytes.extend((0..n).map(|_| rng.gen::<u8>()));
        streams.push(raw(port, &bytes));
    }
    let end = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < end {
        r.handle_io();
        while r.recv().is_some() {}
        while r.event().is_some() {}
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(streams);
    let ctx = zmq::Context::new();
    let good = zmq_sock(&ctx, zmq::DEALER, b"good");
    good.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
    zsend(&good, &[b"ok"]);
    let m = loop {
        let m = recv(&mut r);
        if m[0] == b(b"good") {
            break m;
        }
    };
    assert_eq!(as_vecs(&m), vec![b"good".to_vec(), b"ok".to_vec()]);
    assert!(r.stats().protocol_errors >= 25, "{:?}", r.stats());
}

#[test]
fn silent_peer_times_out_in_the_handshake() {
    let mut r = Socket::new(
        SocketType::Router,
        Options {
            handshake_timeout: Duration::from_millis(200),
            ..Options::default()
        },
    )
    .unwrap();
    let port = r.bind("tcp://127.0.0.1:0").unwrap();
    let t0 = std::time::Instant::now();
    let _silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    match event(&mut r) {
        Event::Rejected { error, .. } => assert_eq!(error, ProtocolError::HandshakeTimeout),
        e => panic!("expected Rejected, got {e:?}"),
    }
    assert!(t0.elapsed() >= Duration::from_millis(200));
    assert_eq!(r.stats().protocol_errors, 1);
}

/// One frame's bytes on the wire (header + body).
fn wire_frame(body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame::put_header(&mut out, 0, body.len());
    out.extend_from_slice(body);
    out.to_vec()
}

/// A big frame that trickles in (64 KiB pieces, then its last 10 bytes after a pause) and a
/// small message right behind it: the reader of a big frame is woken only once a large part
/// of it is queued (src/lowat.rs), which must never hold back the frame's last bytes nor
/// the message after it.
#[test]
fn a_big_frame_trickling_in_and_the_small_message_after_it_both_arrive() {
    let mut r = ours(SocketType::Router, b"");
    let port = r.bind("tcp://127.0.0.1:0").unwrap();
    let body = |n: usize| -> Vec<u8> { (0..n).map(|i| (i % 251) as u8).collect() };
    let size = 3 * 1024 * 1024 + 123;
    let writer = std::thread::spawn(move || {
        let mut st = raw(port, &handshake(b"DEALER"));
        let msg = wire_frame(&body(size));
        let (head, tail) = msg.split_at(msg.len() - 10);
        for piece in head.chunks(64 * 1024) {
            st.write_all(piece).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(200));
        st.write_all(tail).unwrap();
        st.write_all(&wire_frame(b"after")).unwrap();
        st // kept open until the reader is done
    });
    let m = recv(&mut r);
    assert_eq!(m.len(), 2, "routing id + the big frame");
    assert_eq!(m[1].len(), size);
    assert!(m[1][..] == body(size)[..], "the big frame's bytes");
    let m = recv_within(&mut r, Duration::from_secs(2)).expect("the small message after it");
    assert_eq!(&m[1][..], b"after");
    drop(writer.join().unwrap());
}

/// Thousands of engines connect at once: the listener's accept queue must hold them while
/// its owner is busy. With std's backlog of 128 (libzmq: 100) the kernel drops the SYNs of
/// the rest, and each of those connects stalls for TCP's 1 s SYN retransmission.
#[test]
fn a_burst_of_connections_waits_in_the_accept_queue() {
    let mut router = ours(SocketType::Router, b"r");
    let port = router.bind("tcp://127.0.0.1:0").unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096);
    let burst = 1000.min(somaxconn.saturating_sub(10));
    // Nobody accepts meanwhile. A dropped SYN is retried after 1 s, so a connect that has to
    // wait for it runs into this limit instead of completing.
    let limit = Duration::from_millis(900);
    let mut streams = Vec::with_capacity(burst);
    for i in 0..burst {
        match std::net::TcpStream::connect_timeout(&addr, limit) {
            Ok(s) => streams.push(s),
            Err(e) => panic!("connection {i} of {burst} was not queued: {e}"),
        }
    }
    // and the listener then takes them all
    let end = Instant::now() + T;
    while router.stats().accepted < burst as u64 {
        assert!(
            Instant::now() < end,
            "accepted only {}",
            router.stats().accepted
        );
        router.handle_io();
    }
}

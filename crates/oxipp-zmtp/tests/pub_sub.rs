//! PUB and SUB against libzmq, both directions and both sides binding, plus a hand-written
//! ZMTP subscriber proving our PUB filters before sending (libzmq's SUB would hide it).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::*;
use oxipp_zmtp::frame::{self, Decoder, Item};
use oxipp_zmtp::SocketType;

/// Publishes `["a-ready"]` until the libzmq SUB (subscribed to "a") gets it: subscriptions
/// travel asynchronously, like with libzmq ("slow joiner").
fn until_subscribed(p: &mut oxipp_zmtp::Socket, s: &zmq::Socket) {
    s.set_rcvtimeo(20).unwrap();
    let end = Instant::now() + T;
    loop {
        p.send(vec![b(b"a-ready")]).unwrap();
        p.flush();
        p.handle_io();
        if let Ok(m) = s.recv_multipart(0) {
            assert_eq!(m, vec![b"a-ready".to_vec()]);
            break;
        }
        assert!(Instant::now() < end, "subscription never arrived");
    }
    // Drain duplicates still in flight.
    while s.recv_multipart(0).is_ok() {}
    s.set_rcvtimeo(T.as_millis() as i32).unwrap();
}

fn our_pub_to_libzmq_sub(pub_binds: bool) {
    let ctx = zmq::Context::new();
    let s = zmq_sock(&ctx, zmq::SUB, b"");
    s.set_subscribe(b"a").unwrap();
    let mut p = ours(SocketType::Pub, b"");
    if pub_binds {
        let port = p.bind("tcp://127.0.0.1:0").unwrap();
        s.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
    } else {
        s.bind("tcp://127.0.0.1:*").unwrap();
        p.connect(&format!("tcp://127.0.0.1:{}", port_of(&s)))
            .unwrap();
    }
    connected(&mut p);
    until_subscribed(&mut p, &s);
    for i in 0..100u8 {
        p.send(vec![b(b"b-skip"), b(&[i])]).unwrap();
        p.send(vec![b(b"a-topic"), b(&[i])]).unwrap();
    }
    p.flush();
    for i in 0..100u8 {
        assert_eq!(zrecv(&s), vec![b"a-topic".to_vec(), vec![i]]);
    }
    s.set_rcvtimeo(200).unwrap();
    assert!(s.recv_multipart(0).is_err(), "nothing else (no b-skip)");
}

#[test]
fn our_pub_binds_libzmq_sub_connects() {
    our_pub_to_libzmq_sub(true);
}

#[test]
fn our_pub_connects_libzmq_sub_binds() {
    // oxipp engines' iopub: PUB connected to the controller's SUB.
    our_pub_to_libzmq_sub(false);
}

fn libzmq_pub_to_our_sub(pub_binds: bool) {
    let ctx = zmq::Context::new();
    let p = zmq_sock(&ctx, zmq::PUB, b"");
    let mut s = ours(SocketType::Sub, b"");
    s.subscribe(b"x");
    if pub_binds {
        p.bind("tcp://127.0.0.1:*").unwrap();
        s.connect(&format!("tcp://127.0.0.1:{}", port_of(&p)))
            .unwrap();
    } else {
        let port = s.bind("tcp://127.0.0.1:0").unwrap();
        p.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
    }
    connected(&mut s);
    let end = Instant::now() + T;
    loop {
        zsend(&p, &[b"x-ready"]);
        if let Some(m) = recv_within(&mut s, Duration::from_millis(20)) {
            assert_eq!(as_vecs(&m), vec![b"x-ready".to_vec()]);
            break;
        }
        assert!(Instant::now() < end, "subscription never arrived");
    }
    while recv_within(&mut s, Duration::from_millis(50)).is_some() {}
    for i in 0..100u8 {
        zsend(&p, &[b"y", &[i]]);
        zsend(&p, &[b"xx", &[i]]);
    }
    for i in 0..100u8 {
        assert_eq!(as_vecs(&recv(&mut s)), vec![b"xx".to_vec(), vec![i]]);
    }
    assert!(recv_within(&mut s, Duration::from_millis(200)).is_none());

    // A second subscription added while connected is sent to the live publisher.
    s.subscribe(b"y");
    s.flush();
    let end = Instant::now() + T;
    loop {
        zsend(&p, &[b"y-now"]);
        if let Some(m) = recv_within(&mut s, Duration::from_millis(20)) {
            assert_eq!(as_vecs(&m), vec![b"y-now".to_vec()]);
            break;
        }
        assert!(Instant::now() < end, "second subscription never arrived");
    }
}

#[test]
fn libzmq_pub_binds_our_sub_connects() {
    libzmq_pub_to_our_sub(true);
}

#[test]
fn libzmq_pub_connects_our_sub_binds() {
    // The controller's iopub SUB binds; engines' PUBs connect.
    libzmq_pub_to_our_sub(false);
}

/// A minimal ZMTP SUB written by hand: greeting, READY, then one subscription in the
/// given form; returns the frames it receives until a read times out.
fn raw_subscriber(
    port: u16,
    command_form: bool,
    topic: &[u8],
    pubr: &mut oxipp_zmtp::Socket,
) -> Vec<Vec<u8>> {
    let mut st = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut out = BytesMut::new();
    out.extend_from_slice(&frame::greeting());
    frame::put_ready(&mut out, &[("Socket-Type", b"SUB")]);
    if command_form {
        frame::put_command(&mut out, b"SUBSCRIBE", topic);
    } else {
        let mut m = vec![1u8];
        m.extend_from_slice(topic);
        frame::put_header(&mut out, 0, m.len());
        out.extend_from_slice(&m);
    }
    st.write_all(&out).unwrap();
    connected(pubr);
    // The subscription is read by the publisher's IO pass.
    let end = Instant::now() + Duration::from_millis(300);
    while Instant::now() < end {
        pubr.handle_io();
        std::thread::sleep(Duration::from_millis(5));
    }
    pubr.send(vec![b(b"other"), b(b"1")]).unwrap();
    pubr.send(vec![b(topic), b(b"2")]).unwrap();
    pubr.send(vec![b(b"zz"), b(b"3")]).unwrap();
    pubr.flush();
    st.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = st.read(&mut buf) {
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
    }
    assert!(bytes.len() >= 64, "no greeting from the publisher");
    frame::parse_greeting(&bytes[..64]).unwrap();
    let mut items = Vec::new();
    Decoder::new(None).decode(&bytes[64..], &mut items).unwrap();
    items
        .into_iter()
        .filter_map(|i| match i {
            Item::Frame { data, .. } => Some(data.to_vec()),
            Item::Command(_) => None, // READY
        })
        .collect()
}

#[test]
fn our_pub_filters_on_the_sending_side_for_both_subscription_forms() {
    for command_form in [false, true] {
        let mut p = ours(SocketType::Pub, b"");
        let port = p.bind("tcp://127.0.0.1:0").unwrap();
        let got = raw_subscriber(port, command_form, b"top", &mut p);
        assert_eq!(
            got,
            vec![b"top".to_vec(), b"2".to_vec()],
            "command form: {command_form}"
        );
    }
}

#[test]
fn our_sub_resubscribes_after_libzmq_pub_restarts() {
    let ctx = zmq::Context::new();
    let p = zmq_sock(&ctx, zmq::PUB, b"");
    p.bind("tcp://127.0.0.1:*").unwrap();
    let port = port_of(&p);
    let mut s = ours(SocketType::Sub, b"");
    s.subscribe(b"t");
    s.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
    connected(&mut s);
    let publish_until_received = |p: &zmq::Socket, s: &mut oxipp_zmtp::Socket| {
        let end = Instant::now() + T;
        loop {
            zsend(p, &[b"u-never"]);
            zsend(p, &[b"t-1"]);
            if let Some(m) = recv_within(s, Duration::from_millis(20)) {
                assert_eq!(as_vecs(&m), vec![b"t-1".to_vec()]);
                return;
            }
            assert!(Instant::now() < end, "nothing received");
        }
    };
    publish_until_received(&p, &mut s);
    drop(p);
    assert!(matches!(
        event(&mut s),
        oxipp_zmtp::Event::Disconnected { .. }
    ));
    let p = zmq_sock(&ctx, zmq::PUB, b"");
    p.bind(&format!("tcp://127.0.0.1:{port}")).unwrap();
    connected(&mut s);
    publish_until_received(&p, &mut s);
}

#[test]
fn ours_on_both_ends() {
    let mut p = ours(SocketType::Pub, b"");
    let port = p.bind("tcp://127.0.0.1:0").unwrap();
    let mut s = ours(SocketType::Sub, b"");
    s.subscribe(b"k");
    s.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
    pump2(&mut p, &mut s, |p, s| {
        p.peer_count() == 1 && s.peer_count() == 1
    });
    let mut got = None;
    pump2(&mut p, &mut s, |p, s| {
        p.send(vec![b(b"j"), b(b"no")]).unwrap();
        p.send(vec![b(b"k"), b(b"yes")]).unwrap();
        got = s.recv();
        got.is_some()
    });
    assert_eq!(as_vecs(&got.unwrap()), vec![b"k".to_vec(), b"yes".to_vec()]);
}

/// A subscriber that stops reading (a suspended client) must not make the PUB queue without
/// bound: past `pub_hwm_bytes` its messages are dropped (counted, one event), while a
/// subscriber that keeps up still gets every message.
#[test]
fn a_stalled_subscriber_is_cut_off_at_the_high_water_mark_and_the_others_get_everything() {
    let hwm = 1 << 20;
    let mut p = oxipp_zmtp::Socket::new(
        SocketType::Pub,
        oxipp_zmtp::Options {
            pub_hwm_bytes: Some(hwm),
            ..oxipp_zmtp::Options::default()
        },
    )
    .unwrap();
    let port = p.bind("tcp://127.0.0.1:0").unwrap();
    let ep = format!("tcp://127.0.0.1:{port}");
    let ctx = zmq::Context::new();
    let fast = zmq_sock(&ctx, zmq::SUB, b"");
    fast.set_subscribe(b"a").unwrap();
    fast.connect(&ep).unwrap();
    until_subscribed(&mut p, &fast);
    let mut slow = ours(SocketType::Sub, b"");
    slow.subscribe(b"a");
    slow.connect(&ep).unwrap();
    let end = Instant::now() + T;
    loop {
        p.send(vec![b(b"a-ready")]).unwrap();
        p.flush();
        p.handle_io();
        if recv_within(&mut slow, Duration::from_millis(20)).is_some() {
            break;
        }
        assert!(Instant::now() < end, "the slow subscriber never subscribed");
    }
    fast.set_rcvtimeo(50).unwrap();
    while fast.recv_multipart(0).is_ok() {}
    fast.set_rcvtimeo(T.as_millis() as i32).unwrap();

    // `slow` is never driven again: the kernel's buffers fill, then our queue for it
    let body = vec![7u8; 16 * 1024];
    let n = 2000; // 32 MiB, far more than loopback socket buffers hold
    for i in 0..n {
        p.send(vec![b(b"a"), Bytes::copy_from_slice(&body)])
            .unwrap();
        p.flush();
        p.handle_io();
        let m = fast
            .recv_multipart(0)
            .expect("the reading subscriber gets every message");
        assert_eq!(m[1].len(), body.len(), "message {i}");
    }
    assert!(
        p.stats().pub_dropped > 0,
        "nothing was dropped for the stalled subscriber"
    );
    assert!(
        p.queued_bytes() <= hwm + body.len() + 64,
        "{} bytes queued, high-water mark {hwm}",
        p.queued_bytes()
    );
    let mut stalled = 0;
    while let Some(e) = p.event() {
        if matches!(e, oxipp_zmtp::Event::SubscriberStalled { .. }) {
            stalled += 1;
        }
    }
    assert_eq!(stalled, 1, "one event per stall");
    drop(slow);
}

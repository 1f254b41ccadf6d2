//! ROUTER and DEALER against libzmq peers, both directions, the way oxipp wires them:
//! clients and engines talk to the controller's identity-routed ROUTERs, engines connect
//! ROUTERs to the controller's ROUTERs.

mod common;

use std::thread;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use oxipp_zmtp::{Event, SendError, SocketType};

#[test]
fn our_router_libzmq_dealer_identities_multipart_and_errors() {
    let mut r = ours(SocketType::Router, b"mux_out");
    let port = r.bind("tcp://127.0.0.1:0").unwrap();
    let ctx = zmq::Context::new();
    let d = zmq_sock(&ctx, zmq::DEALER, b"engine-1");
    d.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
    assert_eq!(connected(&mut r), b(b"engine-1"));
    assert!(r.has_peer(b"engine-1"));

    zsend(&d, &[b"hello", b"", b"world"]);
    let m = recv(&mut r);
    assert_eq!(
        as_vecs(&m),
        vec![
            b"engine-1".to_vec(),
            b"hello".to_vec(),
            vec![],
            b"world".to_vec()
        ]
    );

    r.send(vec![b(b"engine-1"), b(b"a"), b(b"bc")]).unwrap();
    r.flush();
    assert_eq!(zrecv(&d), vec![b"a".to_vec(), b"bc".to_vec()]);

    // Unknown peer: an error the caller sees (ZMQ_ROUTER_MANDATORY).
    assert_eq!(
        r.send(vec![b(b"nobody"), b(b"x")]),
        Err(SendError::HostUnreachable(b(b"nobody")))
    );

    // A DEALER without identity gets libzmq's generated id: 0 then a 32-bit counter.
    let anon = zmq_sock(&ctx, zmq::DEALER, b"");
    anon.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
    let id = connected(&mut r);
    assert_eq!(id.len(), 5);
    assert_eq!(id[0], 0);
    zsend(&anon, &[b"anon"]);
    let m = recv(&mut r);
    assert_eq!(m[0], id);
    r.send(vec![id.clone(), b(b"back")]).unwrap();
    r.flush();
    assert_eq!(zrecv(&anon), vec![b"back".to_vec()]);

    // Peer goes away: Disconnected with its routing id, and it is no longer routable.
    drop(d);
    match event(&mut r) {
        Event::Disconnected { routing_id, .. } => assert_eq!(routing_id, b(b"engine-1")),
        e => panic!("expected Disconnected, got {e:?}"),
    }
    assert!(!r.has_peer(b"engine-1"));
    assert!(matches!(
        r.send(vec![b(b"engine-1"), b(b"x")]),
        Err(SendError::HostUnreachable(_))
    ));
    assert_eq!(r.stats().protocol_errors, 0);
}

#[test]
fn libzmq_router_our_dealer_queues_until_connected() {
    let ctx = zmq::Context::new();
    let zr = zmq_sock(&ctx, zmq::ROUTER, b"task_out");
    zr.set_router_mandatory(true).unwrap();
    zr.bind("tcp://127.0.0.1:*").unwrap();
    let port = port_of(&zr);

    let mut d = ours(SocketType::Dealer, b"eng-7");
    // Sent before the connection exists: queued, delivered once the handshake is done.
    d.send(vec![b(b"early"), b(b"1")]).unwrap();
    d.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
    d.send(vec![b(b"early"), b(b"2")]).unwrap();
    assert_eq!(connected(&mut d), b(b"task_out"));
    d.flush();
    assert_eq!(
        zrecv(&zr),
        vec![b"eng-7".to_vec(), b"early".to_vec(), b"1".to_vec()]
    );
    assert_eq!(
        zrecv(&zr),
        vec![b"eng-7".to_vec(), b"early".to_vec(), b"2".to_vec()]
    );

    zsend(&zr, &[b"eng-7", b"reply", b""]);
    assert_eq!(as_vecs(&recv(&mut d)), vec![b"reply".to_vec(), vec![]]);
}

#[test]
fn dealer_round_robin_and_fair_queue_over_two_libzmq_routers() {
    let ctx = zmq::Context::new();
    let z1 = zmq_sock(&ctx, zmq::ROUTER, b"");
    let z2 = zmq_sock(&ctx, zmq::ROUTER, b"");
    z1.bind("tcp://127.0.0.1:*").unwrap();
    z2.bind("tcp://127.0.0.1:*").unwrap();
    let mut d = ours(SocketType::Dealer, b"rr");
    d.connect(&format!("tcp://127.0.0.1:{}", port_of(&z1)))
        .unwrap();
    d.connect(&format!("tcp://127.0.0.1:{}", port_of(&z2)))
        .unwrap();
    connected(&mut d);
    connected(&mut d);
    for i in 0..4u8 {
        d.send(vec![b(&[i])]).unwrap();
    }
    d.flush();
    let a: Vec<u8> = (0..2).map(|_| zrecv(&z1)[1][0]).collect();
    let c: Vec<u8> = (0..2).map(|_| zrecv(&z2)[1][0]).collect();
    let mut all = [a.clone(), c.clone()].concat();
    all.sort();
    assert_eq!(
        all,
        vec![0, 1, 2, 3],
        "each message once, alternating: {a:?} {c:?}"
    );
    assert_ne!(a[0] % 2, c[0] % 2);

    zsend(&z1, &[b"rr", b"from-1"]);
    zsend(&z2, &[b"rr", b"from-2"]);
    let mut got = vec![recv(&mut d)[0].to_vec(), recv(&mut d)[0].to_vec()];
    got.sort();
    assert_eq!(got, vec![b"from-1".to_vec(), b"from-2".to_vec()]);
}

#[test]
fn our_router_connects_to_libzmq_router_like_an_engine() {
    // The engine's shell socket: a ROUTER with the engine's uuid as identity, connected to
    // the controller's ROUTER whose identity is "mux_out".
    let ctx = zmq::Context::new();
    let ctl = zmq_sock(&ctx, zmq::ROUTER, b"mux_out");
    ctl.set_router_mandatory(true).unwrap();
    ctl.set_router_handover(true).unwrap();
    ctl.bind("tcp://127.0.0.1:*").unwrap();
    let mut eng = ours(SocketType::Router, b"uuid-1234");
    eng.connect(&format!("tcp://127.0.0.1:{}", port_of(&ctl)))
        .unwrap();
    assert_eq!(connected(&mut eng), b(b"mux_out"));

    // libzmq's ROUTER can route to us once it has our READY: retry while EHOSTUNREACH.
    let mut tries = 0;
    while let Err(e) = ctl.send_multipart([&b"uuid-1234"[..], b"request"], zmq::DONTWAIT) {
        assert_eq!(e, zmq::Error::EHOSTUNREACH);
        tries += 1;
        assert!(tries < 2000, "libzmq never saw our identity");
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        as_vecs(&recv(&mut eng)),
        vec![b"mux_out".to_vec(), b"request".to_vec()]
    );
    eng.send(vec![b(b"mux_out"), b(b"reply")]).unwrap();
    eng.flush();
    assert_eq!(zrecv(&ctl), vec![b"uuid-1234".to_vec(), b"reply".to_vec()]);
}

#[test]
fn libzmq_router_connects_to_our_router_like_an_engine() {
    // The controller side: our identity-routed ROUTER binds, a libzmq engine ROUTER connects.
    let mut ctl = ours(SocketType::Router, b"mux_out");
    let port = ctl.bind("tcp://127.0.0.1:0").unwrap();
    let ctx = zmq::Context::new();
    let eng = zmq_sock(&ctx, zmq::ROUTER, b"uuid-5678");
    eng.set_router_mandatory(true).unwrap();
    eng.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
    assert_eq!(connected(&mut ctl), b(b"uuid-5678"));
    ctl.send(vec![b(b"uuid-5678"), b(b"apply"), b(b"")])
        .unwrap();
    ctl.flush();
    assert_eq!(
        zrecv(&eng),
        vec![b"mux_out".to_vec(), b"apply".to_vec(), vec![]]
    );
    let mut tries = 0;
    while eng
        .send_multipart([&b"mux_out"[..], b"result"], zmq::DONTWAIT)
        .is_err()
    {
        tries += 1;
        assert!(tries < 2000);
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        as_vecs(&recv(&mut ctl)),
        vec![b"uuid-5678".to_vec(), b"result".to_vec()]
    );
}

/// Echo peer: a libzmq DEALER in its own thread sends back every message it gets, until
/// it gets `["stop"]`.
fn libzmq_echo(port: u16, identity: &'static [u8]) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let ctx = zmq::Context::new();
        let d = zmq_sock(&ctx, zmq::DEALER, identity);
        d.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
        loop {
            let m = zrecv(&d);
            if m == vec![b"stop".to_vec()] {
                return;
            }
            d.send_multipart(m, 0).unwrap();
        }
    })
}

#[test]
fn frame_sizes_both_ways_including_100_mb() {
    let mut r = ours(SocketType::Router, b"");
    let port = r.bind("tcp://127.0.0.1:0").unwrap();
    let echo = libzmq_echo(port, b"echo");
    assert_eq!(connected(&mut r), b(b"echo"));
    for size in [0usize, 1, 255, 256, 65_535, 65_536, 1 << 20, 100 << 20] {
        let body: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
        let body = Bytes::from(body);
        r.send(vec![b(b"echo"), b(b"head"), body.clone(), b(b"tail")])
            .unwrap();
        flush_all(&mut r);
        let m = recv(&mut r);
        assert_eq!(m.len(), 4, "size {size}");
        assert_eq!(m[1], b(b"head"));
        assert!(m[2] == body, "size {size}: body differs");
        assert_eq!(m[3], b(b"tail"));
    }
    r.send(vec![b(b"echo"), b(b"stop")]).unwrap();
    flush_all(&mut r);
    echo.join().unwrap();
}

#[test]
fn ten_thousand_pipelined_both_ways_in_order() {
    const N: u32 = 10_000;
    let mut r = ours(SocketType::Router, b"ctl");
    let port = r.bind("tcp://127.0.0.1:0").unwrap();
    let peer = thread::spawn(move || {
        let ctx = zmq::Context::new();
        let d = zmq_sock(&ctx, zmq::DEALER, b"peer");
        d.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
        for i in 0..N {
            d.send_multipart([&b"up"[..], &i.to_be_bytes()], 0).unwrap();
        }
        for i in 0..N {
            let m = zrecv(&d);
            assert_eq!(m, vec![b"down".to_vec(), i.to_be_bytes().to_vec()]);
        }
    });
    assert_eq!(connected(&mut r), b(b"peer"));
    for i in 0..N {
        r.send(vec![b(b"peer"), b(b"down"), b(&i.to_be_bytes())])
            .unwrap();
    }
    r.flush();
    for i in 0..N {
        let m = recv(&mut r);
        assert_eq!(
            as_vecs(&m),
            vec![b"peer".to_vec(), b"up".to_vec(), i.to_be_bytes().to_vec()]
        );
    }
    flush_all(&mut r);
    peer.join().unwrap();
}

#[test]
fn our_dealer_reconnects_after_libzmq_router_restarts() {
    let ctx = zmq::Context::new();
    let zr = zmq_sock(&ctx, zmq::ROUTER, b"hub");
    zr.bind("tcp://127.0.0.1:*").unwrap();
    let port = port_of(&zr);
    let mut d = ours(SocketType::Dealer, b"eng");
    d.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
    connected(&mut d);
    d.send(vec![b(b"one")]).unwrap();
    d.flush();
    assert_eq!(zrecv(&zr), vec![b"eng".to_vec(), b"one".to_vec()]);

    drop(zr);
    assert!(matches!(event(&mut d), Event::Disconnected { .. }));
    // Refused attempts while nobody listens, then the peer comes back on the same port.
    thread::sleep(Duration::from_millis(300));
    let zr = zmq_sock(&ctx, zmq::ROUTER, b"hub");
    zr.bind(&format!("tcp://127.0.0.1:{port}")).unwrap();
    assert_eq!(connected(&mut d), b(b"hub"));
    assert!(d.stats().reconnects >= 1);
    d.send(vec![b(b"two")]).unwrap();
    d.flush();
    assert_eq!(zrecv(&zr), vec![b"eng".to_vec(), b"two".to_vec()]);
}

#[test]
fn our_router_sees_libzmq_dealer_restart_and_handover() {
    let mut r = ours(SocketType::Router, b"");
    let port = r.bind("tcp://127.0.0.1:0").unwrap();
    let ctx = zmq::Context::new();
    let d1 = zmq_sock(&ctx, zmq::DEALER, b"same");
    d1.set_reconnect_ivl(-1).unwrap(); // or it would take the id back once handed over
    d1.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
    assert_eq!(connected(&mut r), b(b"same"));
    // A second peer with the same identity takes it over (the first is closed).
    let d2 = zmq_sock(&ctx, zmq::DEALER, b"same");
    d2.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
    assert!(
        matches!(event(&mut r), Event::Disconnected { routing_id, .. } if routing_id == b(b"same"))
    );
    assert_eq!(connected(&mut r), b(b"same"));
    r.send(vec![b(b"same"), b(b"to-new")]).unwrap();
    r.flush();
    assert_eq!(zrecv(&d2), vec![b"to-new".to_vec()]);
    drop(d1);
    drop(d2);
    assert!(matches!(event(&mut r), Event::Disconnected { .. }));
    assert!(!r.has_peer(b"same"));
    let d3 = zmq_sock(&ctx, zmq::DEALER, b"same");
    d3.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
    assert_eq!(connected(&mut r), b(b"same"));
    zsend(&d3, &[b"back"]);
    assert_eq!(
        as_vecs(&recv(&mut r)),
        vec![b"same".to_vec(), b"back".to_vec()]
    );
}

#[test]
fn libzmq_heartbeats_are_answered() {
    // A libzmq peer with heartbeats PINGs us and drops the connection if no PONG comes back
    // within the timeout: the connection must survive several timeouts.
    let mut r = ours(SocketType::Router, b"");
    let port = r.bind("tcp://127.0.0.1:0").unwrap();
    let ctx = zmq::Context::new();
    let d = zmq_sock(&ctx, zmq::DEALER, b"hb");
    d.set_heartbeat_ivl(20).unwrap();
    d.set_heartbeat_timeout(100).unwrap();
    d.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
    assert_eq!(connected(&mut r), b(b"hb"));
    if let Some(e) = event_within(&mut r, Duration::from_millis(800)) {
        panic!("connection did not survive libzmq heartbeats: {e:?}");
    }
    zsend(&d, &[b"alive"]);
    assert_eq!(
        as_vecs(&recv(&mut r)),
        vec![b"hb".to_vec(), b"alive".to_vec()]
    );
    assert_eq!(r.stats().connected, 1);
}

#[test]
fn ours_on_both_ends() {
    let mut r = ours(SocketType::Router, b"ctl");
    let port = r.bind("tcp://127.0.0.1:0").unwrap();
    let mut d = ours(SocketType::Dealer, b"");
    d.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
    // Queued before the handshake, big enough to need several writes.
    d.send(vec![b(b"hi"), Bytes::from(vec![3u8; 5 << 20])])
        .unwrap();
    let mut got = None;
    pump2(&mut r, &mut d, |r, _| {
        got = r.recv();
        got.is_some()
    });
    let m = got.unwrap();
    let id = m[0].clone();
    assert_eq!((id.len(), id[0]), (5, 0), "generated routing id");
    assert_eq!((&m[1][..], m[2].len()), (&b"hi"[..], 5 << 20));
    assert!(
        matches!(d.event(), Some(Event::Connected { routing_id, .. }) if routing_id == b(b"ctl"))
    );
    assert!(matches!(r.event(), Some(Event::Connected { routing_id, .. }) if routing_id == id));
    r.send(vec![id, b(b"ho")]).unwrap();
    let mut got = None;
    pump2(&mut r, &mut d, |_, d| {
        got = d.recv();
        got.is_some()
    });
    assert_eq!(as_vecs(&got.unwrap()), vec![b"ho".to_vec()]);
    drop(d);
    pump2(&mut r, &mut ours(SocketType::Dealer, b""), |r, _| {
        r.peer_count() == 0
    });
    assert!(matches!(r.event(), Some(Event::Disconnected { .. })));
}

//! Direct (mux) and load-balanced execution, IOPub relay and engine death over real sockets.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use oxipp_wire::{msg_types as mt, Message};
use serde_json::json;

#[test]
fn mux_apply_round_trip_swaps_routing_and_passes_buffers_byte_exact() {
    let ctl = TestController::start();
    let alice = FakeClient::connect(&ctl);
    let bob = FakeClient::connect(&ctl);
    let engines = start_engines(&ctl, &alice, 1, false);
    let e = &engines[0];

    let reqs: Vec<(&FakeClient, Message)> = [&alice, &bob]
        .into_iter()
        .map(|c| {
            let m = c.msg(
                vec![fr(e.uuid.as_bytes())],
                mt::APPLY_REQUEST,
                json!({"label": null}),
                json!({}),
                apply_buffers(),
            );
            c.send(&c.mux, &m);
            (c, m)
        })
        .collect();
    let mut received = Vec::new();
    for (_, req) in &reqs {
        let frames = e
            .recv_shell(DEADLINE)
            .expect("request never reached the engine");
        let got = Message::parse(frames.clone()).expect("engine got garbage");
        assert_eq!(got.idents.len(), 2, "[mux_out, client] at the engine");
        assert_eq!(
            &got.idents[0][..],
            b"mux_out",
            "the mux's engine-facing identity"
        );
        assert_eq!(
            got.header, req.header,
            "requests arrive in order, unchanged"
        );
        assert_eq!(got.signature, req.signature, "relayed, not re-signed");
        assert_eq!(
            (&got.parent, &got.metadata, &got.content),
            (&req.parent, &req.metadata, &req.content)
        );
        assert_eq!(got.buffers, apply_buffers(), "buffers byte-exact");
        received.push(frames);
    }
    assert_ne!(
        Message::parse(received[0].clone()).expect("parse").idents[1],
        Message::parse(received[1].clone()).expect("parse").idents[1],
        "two clients, two routing ids"
    );
    // Answer in reverse order: each reply must find its own client.
    for frames in received.iter().rev() {
        e.reply(frames, "ok", vec![fr(b"\x80\x04result\x00")]);
    }
    for (client, req) in &reqs {
        let r = client.reply_to(&client.mux, &msg_id(req), DEADLINE);
        assert_eq!(
            r.idents,
            vec![fr(e.uuid.as_bytes())],
            "the client sees [engine, <IDS|MSG>, ...]"
        );
        assert_eq!(msg_type(&r), mt::APPLY_REPLY);
        assert_eq!(content(&r)["status"], "ok");
        assert_eq!(r.buffers, vec![fr(b"\x80\x04result\x00")]);
        client.assert_quiet(&client.mux, "one reply per request");
    }
    let qs = content(&alice.query(
        mt::QUEUE_REQUEST,
        json!({"targets": [e.id], "verbose": false}),
    ));
    assert_eq!(
        qs[e.id.to_string()],
        json!({"queue": 0, "completed": 2, "tasks": 0})
    );
}

#[test]
fn load_balanced_tasks_are_spread_over_both_engines() {
    let ctl = TestController::start();
    let client = FakeClient::connect(&ctl);
    let engines = start_engines(&ctl, &client, 2, true);
    let n = 20;
    let mut sent = BTreeSet::new();
    for _ in 0..n {
        let m = client.msg(
            vec![],
            mt::APPLY_REQUEST,
            lb_metadata(&[], 0),
            json!({}),
            apply_buffers(),
        );
        client.send(&client.task, &m);
        sent.insert(msg_id(&m));
    }
    let mut by_engine: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for _ in 0..n {
        let r = client
            .recv(&client.task, DEADLINE)
            .expect("missing task replies");
        assert_eq!(r.idents.len(), 1, "[engine, <IDS|MSG>, ...]");
        let uuid = String::from_utf8(r.idents[0].to_vec()).expect("uuid");
        assert_eq!(
            r.buffers,
            vec![fr(uuid.as_bytes())],
            "the reply came from the engine named in its frame"
        );
        assert_eq!(content(&r)["status"], "ok");
        assert!(
            by_engine.entry(uuid).or_default().insert(parent_id(&r)),
            "duplicate reply"
        );
    }
    client.assert_quiet(&client.task, "one reply per task");
    let replied: BTreeSet<String> = by_engine.values().flatten().cloned().collect();
    assert_eq!(replied, sent);
    for e in &engines {
        let seen: BTreeSet<String> = e
            .drain_shell()
            .into_iter()
            .map(|f| {
                let m = Message::parse(f).expect("parse");
                assert_eq!(
                    &m.idents[0][..],
                    b"task_out",
                    "the task scheduler's engine-facing identity"
                );
                msg_id(&m)
            })
            .collect();
        assert!(!seen.is_empty(), "engine {} got no work", e.id);
        assert_eq!(
            Some(&seen),
            by_engine.get(&e.uuid),
            "engine {} ran exactly what it answered",
            e.id
        );
    }
}

#[test]
fn silent_engine_is_unregistered_in_time_and_its_task_fails_with_engine_error() {
    let ctl = TestController::start();
    let client = FakeClient::connect(&ctl);
    let victim = FakeEngine::start(&ctl, false);
    let survivor = FakeEngine::start(&ctl, true);
    client.wait_registered(&[victim.uuid.clone(), survivor.uuid.clone()], DEADLINE);

    let req = client.msg(
        vec![],
        mt::APPLY_REQUEST,
        lb_metadata(&[&victim.uuid], 0),
        json!({}),
        apply_buffers(),
    );
    client.send(&client.task, &req);
    let got =
        Message::parse(victim.recv_shell(DEADLINE).expect("task never arrived")).expect("parse");
    assert_eq!(msg_id(&got), msg_id(&req));

    victim
        .heartbeat
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let stopped = Instant::now();
    let (n, at) = client
        .wait_notification(mt::UNREGISTRATION_NOTIFICATION, &victim.uuid, DEADLINE)
        .expect("a silent engine was never unregistered");
    assert_eq!(content(&n), json!({"id": victim.id, "uuid": victim.uuid}));
    let took = at - stopped;
    let period = Duration::from_millis(PING_MS);
    let misses = 10; // HeartMonitor.max_heartmonitor_misses default
    assert!(
        took <= period * (misses + 1) + Duration::from_millis(1500),
        "detection took {took:?}"
    );
    assert!(
        took >= period * (misses - 1),
        "declared dead after only {took:?} of silence"
    );

    let r = client.reply_to(&client.task, &msg_id(&req), DEADLINE);
    assert_eq!(
        r.idents,
        vec![fr(victim.uuid.as_bytes())],
        "stock relays it with the dead engine's uuid"
    );
    assert_eq!(msg_type(&r), mt::APPLY_REPLY);
    assert_error(&content(&r), "EngineError");
    assert_eq!(metadata(&r)["engine"], victim.uuid);
    assert_eq!(
        client.engines(),
        json!({survivor.id.to_string(): survivor.uuid})
    );

    // The survivor keeps working.
    let next = client.msg(
        vec![],
        mt::APPLY_REQUEST,
        lb_metadata(&[], 0),
        json!({}),
        apply_buffers(),
    );
    client.send(&client.task, &next);
    let r = client.reply_to(&client.task, &msg_id(&next), DEADLINE);
    assert_eq!(r.idents, vec![fr(survivor.uuid.as_bytes())]);
    assert_eq!(content(&r)["status"], "ok");
}

#[test]
fn request_to_an_unknown_engine_fails_at_once() {
    let ctl = TestController::start();
    let client = FakeClient::connect(&ctl);
    let req = client.msg(
        vec![fr(b"no-such-engine")],
        mt::EXECUTE_REQUEST,
        json!({}),
        json!({"code": "1"}),
        vec![],
    );
    let sent = Instant::now();
    client.send(&client.mux, &req);
    let r = client.reply_to(&client.mux, &msg_id(&req), DEADLINE);
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "not 'at once': {:?}",
        sent.elapsed()
    );
    assert_eq!(r.idents, vec![fr(b"no-such-engine")]);
    assert_eq!(msg_type(&r), mt::EXECUTE_REPLY);
    assert_error(&content(&r), "EngineError");
}

#[test]
fn iopub_is_relayed_to_clients_unchanged() {
    let ctl = TestController::start();
    let client = FakeClient::connect(&ctl);
    let engines = start_engines(&ctl, &client, 1, false);
    let e = &engines[0];
    // PUB→SUB drops messages until subscriptions propagate, so publish until one gets through.
    let topic = format!("engine.{}.stdout", e.id);
    let mut published = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    let got = loop {
        assert!(Instant::now() < deadline, "IOPub never reached the client");
        let m = e.session.build(
            vec![fr(topic.as_bytes())],
            mt::STREAM,
            None,
            &json!({}),
            &json!({"name": "stdout", "text": format!("line {}\n", published.len())}),
            vec![],
        );
        e.publish(m.clone().into_frames());
        published.push(m);
        if let Some(frames) = recv_within(&client.iopub, Duration::from_millis(50)) {
            break frames;
        }
    };
    let got = Message::parse(got).expect("parse");
    assert!(
        published.contains(&got),
        "relayed byte-exact, topic included"
    );
}

#[test]
fn task_submitted_before_any_engine_runs_once_one_registers() {
    let ctl = TestController::start();
    let client = FakeClient::connect(&ctl);
    let req = client.msg(
        vec![],
        mt::APPLY_REQUEST,
        lb_metadata(&[], 0),
        json!({}),
        apply_buffers(),
    );
    client.send(&client.task, &req);
    // the task and query sockets are separate connections: the controller may read the query
    // first, so ask until the task shows up (or the deadline says it never will)
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let qs =
            content(&client.query(mt::QUEUE_REQUEST, json!({"targets": null, "verbose": true})));
        if qs["unassigned"] == json!([msg_id(&req)]) {
            break;
        }
        assert_eq!(
            qs["unassigned"],
            json!([]),
            "only our task can be waiting: {qs}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "task never queued: {qs}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let engines = start_engines(&ctl, &client, 1, true);
    let r = client.reply_to(&client.task, &msg_id(&req), DEADLINE);
    assert_eq!(r.idents, vec![fr(engines[0].uuid.as_bytes())]);
    assert_eq!(content(&r)["status"], "ok");
}

#[test]
fn control_round_trip_swaps_routing() {
    let ctl = TestController::start();
    let client = FakeClient::connect(&ctl);
    let engines = start_engines(&ctl, &client, 1, false);
    let e = &engines[0];
    let req = client.msg(
        vec![fr(e.uuid.as_bytes())],
        mt::CLEAR_REQUEST,
        json!({}),
        json!({}),
        vec![],
    );
    client.send(&client.control, &req);
    let frames = e
        .recv_control(DEADLINE)
        .expect("control request never arrived");
    let got = Message::parse(frames.clone()).expect("parse");
    assert_eq!(
        &got.idents[0][..],
        b"control_out",
        "the control relay's engine-facing identity"
    );
    assert_eq!(got.header, req.header);
    assert_eq!(got.signature, req.signature);
    let reply = engine_reply(&e.session, &frames, "ok", vec![]);
    e.send_control(reply);
    let r = client.reply_to(&client.control, &msg_id(&req), DEADLINE);
    assert_eq!(r.idents, vec![fr(e.uuid.as_bytes())]);
    assert_eq!(msg_type(&r), mt::CLEAR_REPLY);
}

/// A request for an engine whose shell connection is not there yet (registered, but its mux
/// socket still connecting) is held and delivered once the connection is made, not dropped
/// (ROUTER_MANDATORY's unroutable error defers the send for up to 2 s).
#[test]
fn request_for_an_engine_whose_shell_connects_late_is_delivered() {
    use oxipp_wire::sockets::{recv_frames, send_frames};
    use oxipp_wire::Session;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let ctl = TestController::start();
    let client = FakeClient::connect(&ctl);
    let info = &ctl.engine_info;
    let uuid = oxipp_wire::session::new_id();
    let session = Session::new(uuid.clone(), ctl.signer.clone());
    let sock = |kind: zmq::SocketType| {
        let s = ctl.ctx.socket(kind).expect("socket");
        s.set_linger(0).expect("linger");
        s.set_identity(uuid.as_bytes()).expect("identity");
        s
    };
    // Registration and a heart that beats (on its own thread), but no shell yet.
    let reg = sock(zmq::SocketType::DEALER);
    reg.connect(&ctl.engine_url(info.registration))
        .expect("connect");
    let req = session.build(
        vec![],
        mt::REGISTRATION_REQUEST,
        None,
        &json!({}),
        &json!({"uuid": uuid}),
        vec![],
    );
    send_frames(&reg, req.into_frames()).expect("send");
    let reply = parse_signed(&ctl.signer, recv_within(&reg, DEADLINE).expect("reply"));
    assert_eq!(content(&reply)["status"], "ok");
    let hb_in = ctl.ctx.socket(zmq::SocketType::SUB).expect("sub");
    hb_in.set_linger(0).expect("linger");
    hb_in.set_subscribe(b"").expect("subscribe");
    hb_in
        .connect(&ctl.engine_url(info.hb_ping))
        .expect("connect");
    let hb_out = sock(zmq::SocketType::DEALER);
    hb_out
        .connect(&ctl.engine_url(info.hb_pong))
        .expect("connect");
    let beating = Arc::new(AtomicBool::new(true));
    let b2 = Arc::clone(&beating);
    let heart = std::thread::spawn(move || {
        while b2.load(Ordering::SeqCst) {
            if hb_in.poll(zmq::POLLIN, 50).expect("poll") > 0 {
                while let Ok(ping) = recv_frames(&hb_in, true) {
                    let _ = send_frames(&hb_out, ping);
                }
            }
        }
    });
    client.wait_registered(std::slice::from_ref(&uuid), DEADLINE);

    let m = client.msg(
        vec![fr(uuid.as_bytes())],
        mt::APPLY_REQUEST,
        json!({}),
        json!({}),
        apply_buffers(),
    );
    client.send(&client.mux, &m);
    std::thread::sleep(Duration::from_millis(500));
    let shell = sock(zmq::SocketType::ROUTER);
    shell.connect(&ctl.engine_url(info.mux)).expect("connect");
    let frames = recv_within(&shell, DEADLINE).expect("the held request was never delivered");
    let got = Message::parse(frames).expect("engine got garbage");
    assert_eq!(got.header, m.header);
    beating.store(false, Ordering::SeqCst);
    heart.join().expect("heart thread");
}

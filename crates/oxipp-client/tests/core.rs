//! The client core against our real controller (in-process, real sockets) and fake engines.

#[path = "../../oxipp-controller/tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use oxipp_client::{Channel, Core, Event, Source};
use oxipp_wire::Session;
use serde_json::{json, Value};

fn connect(ctl: &TestController) -> Core {
    let text = std::fs::read_to_string(ctl.client_file()).expect("client file");
    Core::connect(&text).expect("connect")
}

/// Sends `msg_type` and returns its msg_id.
fn send(core: &Core, ch: Channel, ident: Option<&[u8]>, msg_type: &str, content: Value) -> String {
    let (id, header) = core.new_header(msg_type);
    core.send(
        ch,
        ident,
        header,
        None,
        b"{}".to_vec(),
        serde_json::to_vec(&content).unwrap(),
        vec![bytes::Bytes::from_static(b"buf")],
        true,
    )
    .expect("send");
    id
}

/// Waits for the first event matching `pred`.
fn wait_event(core: &Core, timeout: Duration, pred: impl Fn(&Event) -> bool) -> Option<Event> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let batch = core.next_events(Some(Duration::from_millis(50)), 64)?;
        if let Some(e) = batch.into_iter().find(|e| pred(e)) {
            return Some(e);
        }
    }
    None
}

fn connection_engines(core: &Core) -> Value {
    let id = send(core, Channel::Query, None, "connection_request", json!({}));
    let ev = wait_event(core, Duration::from_secs(5), |e| {
        e.parent_id.as_deref() == Some(&id)
    })
    .expect("connection_reply");
    assert_eq!(ev.source, Source::Query);
    assert_eq!(ev.msg_type, "connection_reply");
    json_of(&ev.content)["engines"].clone()
}

/// The controller's engines once at least one registered (waits up to 5 s).
fn registered_engines(core: &Core) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut engines = connection_engines(core);
    while engines.as_object().is_none_or(|m| m.is_empty()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        engines = connection_engines(core);
    }
    engines
}

#[test]
fn connects_and_routes_replies_by_parent() {
    let ctl = TestController::start();
    let engine = FakeEngine::start(&ctl, true);
    let core = connect(&ctl);
    let engines = registered_engines(&core);
    assert_eq!(engines["0"], engine.uuid.as_str());

    let id = send(
        &core,
        Channel::Mux,
        Some(engine.uuid.as_bytes()),
        "apply_request",
        json!({}),
    );
    let ev = wait_event(&core, Duration::from_secs(5), |e| {
        e.msg_type == "apply_reply"
    })
    .expect("apply_reply");
    assert_eq!(ev.source, Source::Mux);
    assert_eq!(ev.parent_id.as_deref(), Some(id.as_str()));
    assert_eq!(ev.idents[0].as_ref(), engine.uuid.as_bytes());
    assert_eq!(json_of(&ev.content)["status"], "ok");

    let id = send(&core, Channel::Task, None, "apply_request", json!({}));
    let ev = wait_event(&core, Duration::from_secs(5), |e| {
        e.msg_type == "apply_reply"
    })
    .expect("task reply");
    assert_eq!(ev.source, Source::Task);
    assert_eq!(ev.parent_id.as_deref(), Some(id.as_str()));
}

/// A batch sent without flushing (a map's tasks) goes out on `flush`, every message of it.
#[test]
fn unflushed_sends_go_out_on_flush() {
    let ctl = TestController::start();
    let _engine = FakeEngine::start(&ctl, true);
    let core = connect(&ctl);
    let engines = registered_engines(&core);
    assert!(
        engines.as_object().is_some_and(|m| !m.is_empty()),
        "no engine registered"
    );
    let mut ids = Vec::new();
    for _ in 0..200 {
        let (id, header) = core.new_header("apply_request");
        core.send(
            Channel::Task,
            None,
            header,
            None,
            b"{}".to_vec(),
            b"{}".to_vec(),
            vec![],
            false,
        )
        .expect("queue");
        ids.push(id);
    }
    core.flush();
    let mut replied = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while replied.len() < ids.len() && Instant::now() < deadline {
        for e in core
            .next_events(Some(Duration::from_millis(50)), 256)
            .unwrap()
        {
            if e.msg_type == "apply_reply" {
                replied.push(e.parent_id.clone().expect("parent"));
            }
        }
    }
    replied.sort();
    ids.sort();
    assert_eq!(replied, ids);
}

#[test]
fn iopub_keeps_only_our_requests_and_idle_status() {
    let ctl = TestController::start();
    let engine = FakeEngine::start(&ctl, false);
    let core = connect(&ctl);
    connection_engines(&core);
    // SUB sockets join asynchronously: publish until something of ours gets through
    let (mine, _) = core.new_header("execute_request");
    let mine_parent = format!(r#"{{"msg_id":"{mine}","session":"{}"}}"#, core.session.id);
    let other = r#"{"msg_id":"someone-else","session":"other-session"}"#;
    let publish = |msg_type: &str, parent: &str, content: Value| {
        let m = engine.session.build(
            vec![fr(b"engine.0.x")],
            msg_type,
            Some(&bytes::Bytes::from(parent.to_string())),
            &json!({}),
            &content,
            vec![],
        );
        engine.publish(m.into_frames());
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while Instant::now() < deadline && !got.iter().any(|e: &Event| e.msg_type == "stream") {
        publish("status", other, json!({"execution_state": "idle"}));
        publish(
            "stream",
            other,
            json!({"name": "stdout", "text": "not mine"}),
        );
        publish("status", &mine_parent, json!({"execution_state": "busy"}));
        publish("status", &mine_parent, json!({"execution_state": "idle"}));
        publish(
            "stream",
            &mine_parent,
            json!({"name": "stdout", "text": "mine"}),
        );
        std::thread::sleep(Duration::from_millis(50));
        let batch = core
            .next_events(Some(Duration::from_millis(10)), 1000)
            .unwrap();
        // engine registration notifications arrive too; only IOPub is under test
        got.extend(
            batch
                .into_iter()
                .filter(|e| e.source != Source::Notification),
        );
    }
    assert!(!got.is_empty(), "no IOPub arrived");
    for e in &got {
        assert_eq!(e.source, Source::IOPub);
        let parent: Value = serde_json::from_slice(&e.parent).unwrap();
        assert_eq!(
            parent["session"],
            core.session.id.as_str(),
            "{}",
            e.msg_type
        );
        if e.msg_type == "status" {
            assert_eq!(json_of(&e.content)["execution_state"], "idle");
        }
    }
    assert!(got.iter().any(|e| e.msg_type == "status"));
}

#[test]
fn forged_messages_are_dropped() {
    let ctl = TestController::start();
    let engine = FakeEngine::start(&ctl, false);
    let core = connect(&ctl);
    connection_engines(&core);
    let forger =
        Session::with_random_id(oxipp_wire::Signer::new(b"wrong key", "hmac-sha256").unwrap());
    let parent = format!(r#"{{"msg_id":"m","session":"{}"}}"#, core.session.id);
    let good = engine.session.build(
        vec![fr(b"engine.0.stream")],
        "stream",
        Some(&bytes::Bytes::from(parent.clone())),
        &json!({}),
        &json!({"name": "stdout", "text": "good"}),
        vec![],
    );
    let bad = forger.build(
        vec![fr(b"engine.0.stream")],
        "stream",
        Some(&bytes::Bytes::from(parent)),
        &json!({}),
        &json!({"name": "stdout", "text": "forged"}),
        vec![],
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut texts = Vec::new();
    while Instant::now() < deadline && !texts.contains(&"good".to_string()) {
        engine.publish(bad.clone().into_frames());
        engine.publish(vec![fr(b"garbage"), fr(b"frames")]);
        engine.publish(good.clone().into_frames());
        std::thread::sleep(Duration::from_millis(50));
        for e in core
            .next_events(Some(Duration::from_millis(10)), 1000)
            .unwrap()
        {
            if e.source != Source::IOPub {
                continue;
            }
            texts.push(
                json_of(&e.content)["text"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            );
        }
    }
    assert!(texts.contains(&"good".to_string()));
    assert!(!texts.contains(&"forged".to_string()));
}

#[test]
fn close_ends_waiters_and_refuses_sends() {
    let ctl = TestController::start();
    let core = std::sync::Arc::new(connect(&ctl));
    let c2 = core.clone();
    let waiter = std::thread::spawn(move || c2.next_events(None, 10));
    std::thread::sleep(Duration::from_millis(100));
    core.close();
    assert!(waiter.join().unwrap().is_none());
    let (_, h) = core.new_header("x");
    assert!(core
        .send(Channel::Query, None, h, None, vec![], vec![], vec![], true)
        .is_err());
}

/// A controller that is not listening yet: the client's connection is refused and retried
/// by the receiving thread's timers, and what was sent meanwhile goes out once it is up (a
/// due retry must be acted on even while no descriptor is ready).
#[test]
fn requests_sent_before_the_controller_listens_go_out_when_it_does() {
    let ctl = TestController::start();
    let text = std::fs::read_to_string(ctl.client_file()).expect("client file");
    let mut info: Value = serde_json::from_str(&text).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    info["registration"] = json!(port);
    let core = Core::connect(&info.to_string()).expect("connect");
    let id = send(&core, Channel::Query, None, "connection_request", json!({}));
    std::thread::sleep(Duration::from_millis(400)); // several refused attempts
    let ctx = zmq::Context::new();
    let router = ctx.socket(zmq::ROUTER).unwrap();
    router.set_rcvtimeo(5000).unwrap();
    router.bind(&format!("tcp://127.0.0.1:{port}")).unwrap();
    let frames = router
        .recv_multipart(0)
        .expect("the held request arrives once the controller listens");
    let header = frames
        .iter()
        .skip_while(|f| f.as_slice() != b"<IDS|MSG>")
        .nth(2)
        .expect("header frame");
    assert_eq!(json_of(header)["msg_id"], id.as_str());
}

#[test]
fn bad_connection_info_is_an_error() {
    for bad in ["", "{}", r#"{"interface": "tcp://127.0.0.1"}"#] {
        assert!(Core::connect(bad).is_err(), "{bad}");
    }
}

/// Threads blocked on results receive for themselves, one at a time (the receiving turn):
/// every reply reaches one of them, whoever holds the turn, with the IO thread handing it
/// over and taking it back in between.
#[test]
fn foreground_waiters_share_the_receiving_turn_and_lose_nothing() {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};
    let ctl = TestController::start();
    let core = Arc::new(connect(&ctl));
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (core, seen) = (core.clone(), seen.clone());
            std::thread::spawn(move || {
                for i in 0..150 {
                    let id = send(&core, Channel::Query, None, "connection_request", json!({}));
                    let deadline = Instant::now() + Duration::from_secs(10);
                    loop {
                        let generation = core.generation();
                        for ev in core.take_events(64).unwrap_or_default() {
                            if let Some(p) = ev.parent_id {
                                seen.lock().unwrap().insert(p);
                            }
                            core.kick(); // like the Python layer: others re-check
                        }
                        if seen.lock().unwrap().contains(&id) {
                            break;
                        }
                        assert!(Instant::now() < deadline, "thread {t}: reply {i} lost");
                        core.wait_foreground(Some(Duration::from_millis(500)), Some(generation));
                    }
                    if i % 50 == 0 {
                        // let the linger pass: the IO thread takes the turn back meanwhile
                        std::thread::sleep(oxipp_client::LINGER * 2);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(seen.lock().unwrap().len(), 600);
}

/// A waiter asleep on the sockets (it has the receiving turn) learns of close() at once.
#[test]
fn close_wakes_a_waiter_that_is_receiving() {
    let ctl = TestController::start();
    let core = std::sync::Arc::new(connect(&ctl));
    let c2 = core.clone();
    let waiter = std::thread::spawn(move || {
        let t0 = Instant::now();
        (c2.wait_foreground(None, None), t0.elapsed())
    });
    std::thread::sleep(Duration::from_millis(100));
    core.close();
    let (wake, waited) = waiter.join().unwrap();
    assert_eq!(wake, oxipp_client::Wake::Closed);
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

//! Engine registration, unregistration, connection files and Hub shutdown over real sockets.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use oxipp_wire::msg_types as mt;
use serde_json::{json, Value};

#[test]
fn fifty_engines_register_and_connection_reply_lists_them() {
    let ctl = TestController::start();
    let client = FakeClient::connect(&ctl);
    assert_eq!(client.engines(), json!({}));
    let engines = start_engines(&ctl, &client, 50, false);

    let ids: BTreeSet<u32> = engines.iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        (0..50).collect(),
        "a fresh controller hands out ids 0..n"
    );
    let listed = client.engines();
    let expected: serde_json::Map<String, Value> = engines
        .iter()
        .map(|e| (e.id.to_string(), Value::String(e.uuid.clone())))
        .collect();
    assert_eq!(listed, Value::Object(expected));

    let qs = content(&client.query(
        mt::QUEUE_REQUEST,
        json!({"targets": null, "verbose": false}),
    ));
    assert_eq!(
        qs.as_object().map(|m| m.len()),
        Some(52),
        "50 engines + status + unassigned: {qs}"
    );
    assert_eq!(qs["49"], json!({"queue": 0, "completed": 0, "tasks": 0}));
}

#[test]
fn duplicate_uuid_is_refused_and_requested_ids_are_honoured() {
    let ctl = TestController::start();
    let client = FakeClient::connect(&ctl);
    let a = FakeEngine::start_as(&ctl, "aaaaaaaa-000000000000000000000001", Some(7), false)
        .expect("registered");
    assert_eq!(a.id, 7, "a free requested id is granted");
    let refused = match FakeEngine::start_as(&ctl, &a.uuid, None, false) {
        Ok(e) => panic!("same uuid registered twice, as engine {}", e.id),
        Err(Refused(c)) => c,
    };
    assert_error(&refused, "KeyError");
    assert_eq!(refused["evalue"], format!("\"uuid '{}' in use\"", a.uuid));
    let b = FakeEngine::start(&ctl, false);
    assert_eq!(b.id, 8, "ids continue after the highest granted");
    client.wait_registered(&[a.uuid.clone(), b.uuid.clone()], DEADLINE);
    assert_eq!(client.engines(), json!({"7": a.uuid, "8": b.uuid}));
}

#[test]
fn nanny_unregistration_request_unregisters_at_once() {
    let ctl = TestController::start();
    let client = FakeClient::connect(&ctl);
    let engines = start_engines(&ctl, &client, 2, false);
    let (victim, survivor) = (&engines[0], &engines[1]);

    // The nanny's socket: an identity-less DEALER on the registration port.
    let nanny = ctl.ctx.socket(zmq::SocketType::DEALER).expect("dealer");
    nanny.set_linger(0).expect("linger");
    nanny
        .connect(&ctl.engine_url(ctl.engine_info.registration))
        .expect("connect");
    let nanny_session = oxipp_wire::Session::with_random_id(ctl.signer.clone());
    let m = nanny_session.build(
        vec![],
        mt::UNREGISTRATION_REQUEST,
        None,
        &json!({}),
        &json!({"id": victim.id}),
        vec![],
    );
    let sent = Instant::now();
    oxipp_wire::sockets::send_frames(&nanny, m.into_frames()).expect("send");

    // Far sooner than heart failure ((10 + 1) · 100 ms) could explain.
    let (n, at) = client
        .wait_notification(mt::UNREGISTRATION_NOTIFICATION, &victim.uuid, DEADLINE)
        .expect("no unregistration_notification");
    assert!(
        at - sent < Duration::from_millis(800),
        "took {:?}",
        at - sent
    );
    assert_eq!(content(&n), json!({"id": victim.id, "uuid": victim.uuid}));
    assert!(
        recv_within(&nanny, QUIET).is_none(),
        "unregistration_request gets no reply"
    );
    assert_eq!(
        client.engines(),
        json!({survivor.id.to_string(): survivor.uuid})
    );
}

/// The death probe: an engine whose heart connection drops (its process killed: the kernel
/// closes its sockets) is unregistered within a second, long before heart failure (100 missed
/// beats of 100 ms here) could explain it, and a live engine survives the probe. The shell sees the
/// drop as the pong socket's `Disconnected` event.
#[test]
fn engine_whose_heart_connection_drops_is_unregistered_within_a_second() {
    let ctl = TestController::start_with(&["--HeartMonitor.max_heartmonitor_misses=100"]);
    let client = FakeClient::connect(&ctl);
    let mut engines = start_engines(&ctl, &client, 2, false);
    let victim = engines.remove(0);
    let survivor = &engines[0];
    let uuid = victim.uuid.clone();
    let id = victim.id;
    let dropped = Instant::now();
    drop(victim); // closes every socket of the fake engine, its heart's too
    let (n, at) = client
        .wait_notification(mt::UNREGISTRATION_NOTIFICATION, &uuid, DEADLINE)
        .expect("no unregistration_notification");
    assert!(
        at - dropped < Duration::from_millis(1000),
        "took {:?}",
        at - dropped
    );
    assert_eq!(content(&n), json!({"id": id, "uuid": uuid}));
    std::thread::sleep(QUIET);
    assert_eq!(
        client.engines(),
        json!({survivor.id.to_string(): survivor.uuid}),
        "the live engine answered the probe"
    );
}

#[test]
fn connection_files_are_private_and_have_every_key() {
    use std::os::unix::fs::PermissionsExt;
    let ctl = TestController::start();
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&ctl.security_dir()), 0o700);
    let read = |p: &std::path::Path| -> serde_json::Map<String, Value> {
        let text = std::fs::read_to_string(p).expect("read");
        serde_json::from_str(&text).expect("connection files are JSON objects")
    };
    let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<BTreeSet<String>>();
    let set = |v: &[&str]| {
        v.iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<String>>()
    };

    let cf = ctl.client_file();
    assert_eq!(mode(&cf), 0o600, "the client file holds the key");
    let c = read(&cf);
    assert_eq!(
        keys(&c),
        set(&[
            "ssh",
            "interface",
            "registration",
            "control",
            "mux",
            "task",
            "task_scheme",
            "iopub",
            "notification",
            "broadcast",
            "key",
            "curve_serverkey",
            "location",
            "pack",
            "unpack",
            "signature_scheme",
        ]),
        "spec §1.4 client file keys"
    );
    let ef = ctl.engine_file();
    assert_eq!(mode(&ef), 0o600, "the engine file holds the key");
    let e = read(&ef);
    assert_eq!(
        keys(&e),
        set(&[
            "ssh",
            "interface",
            "registration",
            "control",
            "mux",
            "task",
            "iopub",
            "hb_ping",
            "hb_pong",
            "broadcast",
            "key",
            "curve_serverkey",
            "location",
            "pack",
            "unpack",
            "signature_scheme",
        ]),
        "spec §1.4 engine file keys"
    );

    let key = c["key"].as_str().expect("key is a str");
    let parts: Vec<&str> = key.split('-').collect();
    assert!(
        parts.len() == 2
            && parts[0].len() == 8
            && parts[1].len() == 24
            && key.chars().all(|ch| ch == '-' || ch.is_ascii_hexdigit()),
        "fresh key in the stock 8hex-24hex format: {key}"
    );
    assert_eq!(e["key"], c["key"]);
    assert_eq!(
        e["registration"], c["registration"],
        "one registration port in both files"
    );
    for f in [&c, &e] {
        assert_eq!(f["pack"], "json");
        assert_eq!(f["unpack"], "json");
        assert_eq!(f["signature_scheme"], "hmac-sha256");
        assert_eq!(f["interface"], "tcp://127.0.0.1");
        assert_eq!(f["curve_serverkey"], Value::Null);
        assert_eq!(f["ssh"], "");
    }
    assert_eq!(c["task_scheme"], "leastload");
    assert!(c["broadcast"].is_u64(), "client: one broadcast port");
    let leaves = e["broadcast"]
        .as_array()
        .expect("engine: list of broadcast ports");
    assert_eq!(leaves.len(), 2, "depth 1 -> two leaves");
    let mut ports: Vec<u64> = Vec::new();
    for k in [
        "registration",
        "control",
        "mux",
        "task",
        "iopub",
        "notification",
        "broadcast",
    ] {
        ports.push(c[k].as_u64().expect("port"));
    }
    for k in ["control", "mux", "task", "iopub", "hb_ping", "hb_pong"] {
        ports.push(e[k].as_u64().expect("port"));
    }
    ports.extend(leaves.iter().filter_map(Value::as_u64));
    let distinct: BTreeSet<u64> = ports.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        ports.len(),
        "every channel has its own port: {ports:?}"
    );
    assert_eq!(
        serde_json::to_value(&ctl.client_info).expect("client info"),
        Value::Object(c),
        "the file says what serve reported"
    );
}

#[test]
fn shutdown_request_stops_serve_and_removes_the_connection_files() {
    let mut ctl = TestController::start();
    let client = FakeClient::connect(&ctl);
    assert!(ctl.client_file().exists() && ctl.engine_file().exists());
    let req = client.msg(vec![], mt::SHUTDOWN_REQUEST, json!({}), json!({}), vec![]);
    let sent = Instant::now();
    client.send(&client.query, &req);
    let r = client.reply_to(&client.query, &msg_id(&req), DEADLINE);
    assert_eq!(msg_type(&r), mt::SHUTDOWN_REPLY);
    assert_eq!(content(&r), json!({"status": "ok"}));
    let n = client
        .recv(&client.notif, DEADLINE)
        .expect("no shutdown_notification");
    assert_eq!(msg_type(&n), mt::SHUTDOWN_NOTIFICATION);
    assert_eq!(content(&n), json!({"status": "ok"}));
    assert_eq!(parent_id(&n), msg_id(&req));

    let left = Duration::from_secs(1).saturating_sub(sent.elapsed());
    let result = ctl
        .wait_exit(left)
        .expect("serve still running 1 s after shutdown_request");
    assert_eq!(result, Ok(()));
    assert!(
        !ctl.client_file().exists(),
        "client connection file left behind"
    );
    assert!(
        !ctl.engine_file().exists(),
        "engine connection file left behind"
    );
}

#[test]
fn stop_flag_ends_serve_and_removes_the_connection_files() {
    let mut ctl = TestController::start();
    let client = FakeClient::connect(&ctl);
    let _engines = start_engines(&ctl, &client, 1, false);
    assert!(ctl.running());
    let result = ctl
        .stop(Duration::from_secs(1))
        .expect("serve still running 1 s after the stop flag");
    assert_eq!(result, Ok(()));
    assert!(ctl.security_dir().exists());
    assert!(
        !ctl.client_file().exists(),
        "client connection file left behind"
    );
    assert!(
        !ctl.engine_file().exists(),
        "engine connection file left behind"
    );
}

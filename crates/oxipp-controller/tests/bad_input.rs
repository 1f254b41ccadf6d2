//! Bad input over real sockets: garbage, forgeries, replays and an oversized query get a
//! `hub_error` where the protocol has one, are dropped elsewhere, and never stop the
//! controller from serving.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use oxipp_wire::frames::DELIMITER;
use oxipp_wire::sockets::send_frames;
use oxipp_wire::{msg_types as mt, Message, Signer};
use serde_json::json;

/// The next message on the query socket must be a `hub_error`; returns its evalue.
fn expect_hub_error(client: &FakeClient, what: &str) -> String {
    let r = client
        .recv(&client.query, DEADLINE)
        .unwrap_or_else(|| panic!("{what}: no hub_error"));
    assert_eq!(msg_type(&r), mt::HUB_ERROR, "{what}");
    let c = content(&r);
    assert_error(&c, "ValueError");
    c["evalue"].as_str().unwrap_or_default().to_string()
}

/// A full mux round trip to an auto-replying engine works.
fn mux_works(client: &FakeClient, e: &FakeEngine) {
    let req = client.msg(
        vec![fr(e.uuid.as_bytes())],
        mt::APPLY_REQUEST,
        json!({}),
        json!({}),
        apply_buffers(),
    );
    client.send(&client.mux, &req);
    let r = client.reply_to(&client.mux, &msg_id(&req), DEADLINE);
    assert_eq!(content(&r)["status"], "ok");
}

#[test]
fn bad_query_messages_get_hub_error_and_the_hub_keeps_serving() {
    let ctl = TestController::start();
    let client = FakeClient::connect(&ctl);
    let engines = start_engines(&ctl, &client, 1, true);
    let listed = json!({engines[0].id.to_string(): engines[0].uuid});

    let raw_cases: Vec<(&str, Vec<Bytes>)> = vec![
        ("one garbage frame", vec![fr(b"garbage")]),
        (
            "no delimiter",
            vec![fr(b"a"), fr(b"b"), fr(b"c"), fr(b"d"), fr(b"e"), fr(b"f")],
        ),
        ("too few frames", vec![fr(DELIMITER), fr(b""), fr(b"{}")]),
        (
            "binary junk",
            vec![Bytes::from((0..=255u8).collect::<Vec<u8>>())],
        ),
    ];
    for (what, frames) in raw_cases {
        send_frames(&client.query, frames).expect("send");
        expect_hub_error(&client, what);
        assert_eq!(client.engines(), listed, "after {what}");
    }

    let mut wrong_key = client.msg(vec![], mt::CONNECTION_REQUEST, json!({}), json!({}), vec![]);
    wrong_key.signature = Bytes::from(
        Signer::new(b"not-the-key", "hmac-sha256")
            .expect("signer")
            .sign(wrong_key.signed_parts()),
    );
    let mut unsigned = client.msg(vec![], mt::CONNECTION_REQUEST, json!({}), json!({}), vec![]);
    unsigned.signature = Bytes::new();
    let mut tampered = client.msg(vec![], mt::CONNECTION_REQUEST, json!({}), json!({}), vec![]);
    tampered.content = fr(br#"{"sneaky": true}"#);
    for (what, m) in [
        ("wrong key", wrong_key),
        ("unsigned", unsigned),
        ("tampered", tampered),
    ] {
        client.send(&client.query, &m);
        let evalue = expect_hub_error(&client, what);
        assert!(evalue.contains("sign"), "{what}: {evalue}");
        assert_eq!(client.engines(), listed, "after {what}");
    }

    // Signed, but the content is not JSON.
    let mut bad_json = client.msg(vec![], mt::CONNECTION_REQUEST, json!({}), json!({}), vec![]);
    bad_json.content = fr(b"{\"unterminated");
    client.session.sign(&mut bad_json);
    client.send(&client.query, &bad_json);
    let r = client.reply_to(&client.query, &msg_id(&bad_json), DEADLINE);
    assert_eq!(msg_type(&r), mt::HUB_ERROR);
    assert_error(&content(&r), "ValueError");

    // Replay of a captured valid message.
    let m = client.msg(vec![], mt::CONNECTION_REQUEST, json!({}), json!({}), vec![]);
    client.send(&client.query, &m);
    assert_eq!(
        msg_type(&client.reply_to(&client.query, &msg_id(&m), DEADLINE)),
        mt::CONNECTION_REPLY
    );
    client.send(&client.query, &m);
    let evalue = expect_hub_error(&client, "replay");
    assert!(evalue.contains("replay"), "{evalue}");

    // Unknown message type.
    let r = client.query("bogus_request", json!({}));
    assert_eq!(msg_type(&r), mt::HUB_ERROR);
    assert_eq!(content(&r)["ename"], "KeyError");

    assert_eq!(client.engines(), listed);
    mux_works(&client, &engines[0]);
}

#[test]
fn hundred_megabyte_query_gets_hub_error_and_the_controller_keeps_serving() {
    let mut ctl = TestController::start();
    let client = FakeClient::connect(&ctl);
    let big = client.msg(
        vec![],
        mt::CONNECTION_REQUEST,
        json!({}),
        json!({}),
        vec![Bytes::from(vec![0x5au8; 100 << 20])],
    );
    client.send(&client.query, &big);
    drop(big);
    let evalue = expect_hub_error(&client, "100 MB query");
    assert!(evalue.contains("exceeds"), "{evalue}");
    assert!(ctl.running());
    assert_eq!(client.engines(), json!({}));
    let engines = start_engines(&ctl, &client, 1, true);
    mux_works(&client, &engines[0]);
}

#[test]
fn garbage_forgeries_and_replays_on_every_socket_leave_the_controller_serving() {
    let ctl = TestController::start();
    let client = FakeClient::connect(&ctl);
    let engines = start_engines(&ctl, &client, 1, true);
    let e = &engines[0];
    let garbage = || vec![fr(b"garbage"), fr(b"\x00\xff"), fr(DELIMITER), fr(b"sig")];

    for sock in [&client.mux, &client.task, &client.control, &client.bcast] {
        send_frames(sock, garbage()).expect("send");
        send_frames(sock, vec![fr(b"x")]).expect("send");
    }
    let leaf = format!("sub_scheduler_0{}", e.id % 2);
    for peer in [&b"mux_out"[..], b"task_out", leaf.as_bytes()] {
        let mut frames = vec![fr(peer)];
        frames.extend(garbage());
        e.send_shell(frames);
    }
    let mut frames = vec![fr(b"control_out")];
    frames.extend(garbage());
    e.send_control(frames);
    e.publish(garbage());
    e.send_heart(vec![fr(b"one"), fr(b"too"), fr(b"many")]);
    e.send_heart(vec![fr(b"not-a-ping-we-sent")]);

    // A forged request (wrong key) is not relayed; a replayed one is relayed once.
    let mut forged = client.msg(
        vec![fr(e.uuid.as_bytes())],
        mt::APPLY_REQUEST,
        json!({}),
        json!({}),
        apply_buffers(),
    );
    forged.signature = Bytes::from(
        Signer::new(b"not-the-key", "hmac-sha256")
            .expect("signer")
            .sign(forged.signed_parts()),
    );
    client.send(&client.mux, &forged);
    let valid = client.msg(
        vec![fr(e.uuid.as_bytes())],
        mt::APPLY_REQUEST,
        json!({}),
        json!({}),
        apply_buffers(),
    );
    client.send(&client.mux, &valid);
    client.send(&client.mux, &valid);
    let r = client.reply_to(&client.mux, &msg_id(&valid), DEADLINE);
    assert_eq!(content(&r)["status"], "ok");
    client.assert_quiet(&client.mux, "the replay must not run again");
    let seen: Vec<String> = e
        .drain_shell()
        .into_iter()
        .map(|f| msg_id(&Message::parse(f).expect("parse")))
        .collect();
    assert_eq!(
        seen,
        vec![msg_id(&valid)],
        "the engine saw only the one valid request"
    );

    // Still serving everything, and the engine was not unregistered by any of it.
    assert_eq!(client.engines(), json!({e.id.to_string(): e.uuid}));
    mux_works(&client, e);
    let task = client.msg(
        vec![],
        mt::APPLY_REQUEST,
        lb_metadata(&[], 0),
        json!({}),
        apply_buffers(),
    );
    client.send(&client.task, &task);
    assert_eq!(
        content(&client.reply_to(&client.task, &msg_id(&task), DEADLINE))["status"],
        "ok"
    );
    assert!(
        client
            .recv(&client.notif, Duration::from_millis(10))
            .is_none(),
        "no (un)registration happened"
    );
}

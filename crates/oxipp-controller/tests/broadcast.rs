//! The broadcast scheduler over real sockets: fan-out with per-engine msg_ids, and replies
//! relayed one by one or coalesced.

mod common;

use std::collections::BTreeMap;

use common::*;
use oxipp_wire::{msg_types as mt, Frame, Message};
use serde_json::{json, Value};

/// Sends one broadcast apply to all `engines` and checks what each engine receives.
/// Returns the request and the targets list.
fn broadcast(
    ctl: &TestController,
    client: &FakeClient,
    engines: &[FakeEngine],
    coalescing: bool,
) -> (Message, Value) {
    let targets = Value::Array(engines.iter().map(|e| json!([e.uuid, e.id])).collect());
    let req = client.msg(
        vec![],
        mt::APPLY_REQUEST,
        json!({"targets": targets, "is_broadcast": true, "is_coalescing": coalescing}),
        json!({}),
        apply_buffers(),
    );
    client.send(&client.bcast, &req);
    let orig = msg_id(&req);
    let mut client_idents: Vec<Frame> = Vec::new();
    for e in engines {
        let frames = e
            .recv_shell(DEADLINE)
            .unwrap_or_else(|| panic!("engine {} got no broadcast", e.id));
        let got = Message::parse(frames).expect("parse");
        let n_leaves = ctl.engine_info.broadcast.len() as u32;
        assert_eq!(n_leaves, 2);
        let leaf = format!("sub_scheduler_0{}", e.id % n_leaves);
        assert_eq!(got.idents.len(), 2, "[leaf, client] at the engine");
        assert_eq!(
            got.idents[0],
            fr(leaf.as_bytes()),
            "engine {} is served by leaf {leaf}",
            e.id
        );
        client_idents.push(got.idents[1].clone());
        let (gh, rh) = (header(&got), header(&req));
        assert_eq!(
            gh["msg_id"],
            format!("{orig}_{}", e.uuid),
            "per-engine msg_id <orig>_<uuid>"
        );
        assert_eq!(gh["msg_type"], rh["msg_type"]);
        assert_eq!(gh["session"], rh["session"]);
        let md = metadata(&got);
        assert_eq!(md["original_msg_id"], orig);
        assert_eq!(md["targets"], targets);
        assert_eq!(md["is_broadcast"], true);
        assert_eq!(md["is_coalescing"], coalescing);
        assert_eq!(got.content, req.content);
        assert_eq!(got.buffers, apply_buffers());
        assert_eq!(
            ctl.signer.verify(&got.signature, got.signed_parts()),
            oxipp_wire::signing::Verdict::Valid,
            "rewritten messages are freshly signed"
        );
        assert!(
            e.recv_shell(QUIET).is_none(),
            "engine {} got the broadcast twice",
            e.id
        );
    }
    assert!(
        client_idents.windows(2).all(|w| w[0] == w[1]),
        "all on behalf of the one client"
    );
    (req, targets)
}

#[test]
fn non_coalescing_broadcast_to_three_engines_relays_every_reply() {
    let ctl = TestController::start();
    let client = FakeClient::connect(&ctl);
    let engines = start_engines(&ctl, &client, 3, true);
    let (req, _) = broadcast(&ctl, &client, &engines, false);
    let orig = msg_id(&req);
    let mut replies: BTreeMap<String, Message> = BTreeMap::new();
    for _ in &engines {
        let r = client
            .recv(&client.bcast, DEADLINE)
            .expect("missing broadcast replies");
        assert!(
            r.idents.is_empty(),
            "broadcast replies carry no engine frame"
        );
        assert_eq!(msg_type(&r), mt::APPLY_REPLY);
        assert_eq!(metadata(&r)["original_msg_id"], orig);
        assert!(
            replies.insert(parent_id(&r), r).is_none(),
            "duplicate reply"
        );
    }
    client.assert_quiet(&client.bcast, "one reply per engine");
    for e in &engines {
        let r = replies
            .get(&format!("{orig}_{}", e.uuid))
            .unwrap_or_else(|| panic!("no reply from engine {}", e.id));
        assert_eq!(r.buffers, vec![fr(e.uuid.as_bytes())]);
        assert_eq!(metadata(r)["engine"], e.uuid);
    }
}

#[test]
fn coalescing_broadcast_to_three_engines_sends_one_reply_with_all_results() {
    let ctl = TestController::start();
    let client = FakeClient::connect(&ctl);
    let engines = start_engines(&ctl, &client, 3, true);
    let (req, targets) = broadcast(&ctl, &client, &engines, true);
    let r = client
        .recv(&client.bcast, DEADLINE)
        .expect("no coalesced reply");
    client.assert_quiet(&client.bcast, "exactly one coalesced reply");
    assert!(
        r.idents.is_empty(),
        "broadcast replies carry no engine frame"
    );
    assert_eq!(msg_type(&r), mt::APPLY_REPLY);
    assert_eq!(content(&r)["status"], "ok");
    let md = metadata(&r);
    assert_eq!(md["broadcast_targets"], targets);
    assert_eq!(md["original_msg_id"], msg_id(&req));
    assert_eq!(md["is_coalescing"], true);
    let want: Vec<Frame> = engines.iter().map(|e| fr(e.uuid.as_bytes())).collect();
    assert_eq!(r.buffers, want, "every engine's result, in target order");
    let p = parent_id(&r);
    assert!(
        engines
            .iter()
            .any(|e| p == format!("{}_{}", msg_id(&req), e.uuid)),
        "parent is one engine's request: {p}"
    );
}

#[test]
fn coalescing_broadcast_with_a_dead_engine_completes_with_engine_error() {
    let ctl = TestController::start();
    let client = FakeClient::connect(&ctl);
    let mut engines = start_engines(&ctl, &client, 3, true);
    engines[2]
        .auto_reply
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let (req, targets) = broadcast(&ctl, &client, &engines, true);
    client.assert_quiet(&client.bcast, "waiting for the third engine");
    let dead = engines.pop().expect("three engines");
    dead.heartbeat
        .store(false, std::sync::atomic::Ordering::SeqCst);
    client
        .wait_notification(mt::UNREGISTRATION_NOTIFICATION, &dead.uuid, DEADLINE)
        .expect("the silent engine was never unregistered");
    let r = client
        .recv(&client.bcast, DEADLINE)
        .expect("the broadcast never completed");
    assert!(r.idents.is_empty());
    assert_error(&content(&r), "EngineError");
    let md = metadata(&r);
    assert_eq!(md["broadcast_targets"], targets);
    assert_eq!(md["original_msg_id"], msg_id(&req));
    client.assert_quiet(&client.bcast, "exactly one reply");
}

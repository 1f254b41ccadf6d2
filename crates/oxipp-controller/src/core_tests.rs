//! Unit tests of the sans-IO controller core (test layer 1 of ARCHITECTURE.md).
//!
//! Every protocol rule is checked through [`Controller::handle`] and [`Controller::tick`]
//! with a [`RecordingOutbox`] and synthetic `Instant`s: no sockets, no sleeping. Inputs are
//! built the way the socket shell delivers them (ROUTER sockets prepend the sender's routing
//! id), and every message the core sends must carry a valid signature (checked in
//! [`Harness::sent`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use oxipp_taskdb::MemoryStore;
use oxipp_wire::frames::DELIMITER;
use oxipp_wire::session::encode;
use oxipp_wire::signing::Verdict;
use oxipp_wire::{msg_types as mt, Frame, Message, Session, Signer};
use serde_json::{json, Value};

use crate::config::Config;
use crate::core::{Controller, EngineConnInfo};
use crate::outbox::{RecordingOutbox, Sock};

const KEY: &[u8] = b"0c8e4a1f-5b7d2e9a3c6f8b1d4e7a0c2f";
const PERIOD_MS: u64 = 100;
const MISSES: u32 = 3;
const GRACE_MS: u64 = 300;
const MAX_QUERY: usize = 64 << 10;
/// Routing ids a ROUTER invents for identity-less DEALERs (5 bytes, leading zero).
const CLIENT: &[u8] = b"\x00\x80\x00\x00\x29";
const NANNY: &[u8] = b"\x00\x80\x00\x00\x2a";

fn fr(b: &[u8]) -> Frame {
    Bytes::copy_from_slice(b)
}

fn test_config() -> Config {
    Config {
        hb_period_ms: PERIOD_MS,
        hb_max_misses: MISSES,
        stranded_grace_ms: GRACE_MS,
        max_query_bytes: MAX_QUERY,
        ..Config::default()
    }
}

fn conn_info() -> Value {
    json!({
        "interface": "tcp://127.0.0.1", "registration": 10001, "control": 10002, "mux": 10003,
        "task": 10004, "iopub": 10005, "hb_ping": 10006, "hb_pong": 10007, "broadcast": [10008, 10009],
    })
}

fn lb_metadata(retries: u32, targets: &[&str]) -> Value {
    json!({"after": [], "follow": [], "timeout": 0.0, "targets": targets, "retries": retries, "label": null})
}

fn json_of(raw: &[u8]) -> Value {
    serde_json::from_slice(raw).expect("JSON frame")
}
fn header(m: &Message) -> Value {
    json_of(&m.header)
}
fn parent(m: &Message) -> Value {
    json_of(&m.parent)
}
fn md(m: &Message) -> Value {
    json_of(&m.metadata)
}
fn content(m: &Message) -> Value {
    json_of(&m.content)
}
fn msg_type(m: &Message) -> String {
    m.header_fields().expect("header").msg_type
}
fn msg_id(m: &Message) -> String {
    m.header_fields().expect("header").msg_id
}

/// Asserts `c` is a controller-made error of class `ename` (spec §3.1: `engine_info: {}`).
fn assert_error(c: &Value, ename: &str) {
    assert_eq!(c["status"], "error", "not an error: {c}");
    assert_eq!(c["ename"], ename, "wrong exception class: {c}");
    assert_eq!(
        c["engine_info"],
        json!({}),
        "controller errors need an empty engine_info: {c}"
    );
    assert!(c["traceback"].is_array(), "traceback must be a list: {c}");
    assert!(c["evalue"].is_string(), "evalue must be a str: {c}");
}

/// Only the messages sent on `sock`.
fn on(outs: &[(Sock, Message)], sock: Sock) -> Vec<Message> {
    outs.iter()
        .filter(|(s, _)| *s == sock)
        .map(|(_, m)| m.clone())
        .collect()
}

/// The single message sent on `sock`, failing if there are more or none.
fn one(outs: &[(Sock, Message)], sock: Sock) -> Message {
    let v = on(outs, sock);
    assert_eq!(
        v.len(),
        1,
        "expected one message on {sock:?}, got {}: {:?}",
        v.len(),
        socks(outs)
    );
    v.into_iter().next().unwrap_or_default()
}

fn socks(outs: &[(Sock, Message)]) -> Vec<(Sock, String)> {
    outs.iter().map(|(s, m)| (*s, msg_type(m))).collect()
}

/// A controller core plus everything needed to talk to it as clients and engines would.
struct Harness {
    ctl: Controller,
    out: RecordingOutbox,
    now: Instant,
    t0: Instant,
    signer: Signer,
    client: Session,
    engines: BTreeMap<String, Session>,
    /// The latest heartbeat payload the core published.
    last_ping: Option<Frame>,
}

impl Harness {
    fn new() -> Self {
        Self::with_config(test_config())
    }

    fn with_config(cfg: Config) -> Self {
        let t0 = Instant::now();
        let signer = Signer::new(KEY, "hmac-sha256").expect("signer");
        let db = Box::new(MemoryStore::default());
        let ctl = Controller::new(
            cfg,
            EngineConnInfo(conn_info()),
            signer.clone(),
            db,
            2,
            None,
            t0,
        )
        .expect("controller");
        Harness {
            ctl,
            out: RecordingOutbox::default(),
            now: t0,
            t0,
            client: Session::with_random_id(signer.clone()),
            signer,
            engines: BTreeMap::new(),
            last_ping: None,
        }
    }

    /// Everything sent since the last call, parsed; heartbeat pings are set aside in
    /// `last_ping`. Fails on any message that is unparsable or not validly signed.
    fn sent(&mut self) -> Vec<(Sock, Message)> {
        let mut v = Vec::new();
        for (sock, frames) in self.out.take() {
            if sock == Sock::HbPing {
                assert_eq!(frames.len(), 1, "pings are one opaque frame");
                self.last_ping = frames.into_iter().next();
                continue;
            }
            let m = Message::parse(frames)
                .unwrap_or_else(|e| panic!("core sent garbage on {sock:?}: {e}"));
            assert_eq!(
                self.signer.verify(&m.signature, m.signed_parts()),
                Verdict::Valid,
                "core sent a badly signed {} on {sock:?}",
                msg_type(&m)
            );
            v.push((sock, m));
        }
        v
    }

    fn handle(&mut self, sock: Sock, frames: Vec<Frame>) {
        self.ctl.handle(sock, frames, self.now, &mut self.out);
    }

    fn tick_at(&mut self, t: Instant) {
        self.now = t;
        self.ctl.tick(t, &mut self.out);
    }

    fn advance(&mut self, d: Duration) {
        self.tick_at(self.now + d);
    }

    fn client_msg(
        &self,
        idents: Vec<Frame>,
        msg_type: &str,
        md: Value,
        content: Value,
        buffers: Vec<Frame>,
    ) -> Message {
        self.client
            .build(idents, msg_type, None, &md, &content, buffers)
    }

    fn engine_session(&mut self, uuid: &str) -> &Session {
        let signer = self.signer.clone();
        self.engines
            .entry(uuid.to_string())
            .or_insert_with(|| Session::new(uuid.to_string(), signer))
    }

    /// A reply from engine `uuid` to `request`, routed back with `idents`.
    fn engine_reply(
        &mut self,
        uuid: &str,
        idents: Vec<Frame>,
        request: &Message,
        status: &str,
        buffers: Vec<Frame>,
    ) -> Message {
        let req_md = md(request);
        let reply_md = json!({
            "started": oxipp_wire::dates::now_iso(), "dependencies_met": true, "engine": uuid,
            "status": status, "is_broadcast": req_md.get("is_broadcast").cloned().unwrap_or(json!(false)),
            "is_coalescing": req_md.get("is_coalescing").cloned().unwrap_or(json!(false)),
            "original_msg_id": req_md.get("original_msg_id").cloned().unwrap_or(json!("")),
        });
        let reply_type = mt::reply_type(&msg_type(request));
        let s = self.engine_session(uuid);
        s.build(
            idents,
            &reply_type,
            Some(&request.header),
            &reply_md,
            &json!({"status": status}),
            buffers,
        )
    }

    /// Sends a query from routing id `ident`; returns the request and everything sent.
    fn query_from(
        &mut self,
        ident: &[u8],
        msg_type: &str,
        content: Value,
    ) -> (Message, Vec<(Sock, Message)>) {
        let req = self.client_msg(vec![fr(ident)], msg_type, json!({}), content, vec![]);
        self.handle(Sock::Query, req.clone().into_frames());
        (req, self.sent())
    }

    /// A client query that must get exactly one reply, to the client, with the request as parent.
    fn query(&mut self, msg_type: &str, content: Value) -> Message {
        let (req, outs) = self.query_from(CLIENT, msg_type, content);
        let reply = one(&outs, Sock::Query);
        assert_eq!(
            reply.idents,
            vec![fr(CLIENT)],
            "query replies go back to the asker"
        );
        assert_eq!(
            reply.parent, req.header,
            "query replies carry the request header as parent"
        );
        reply
    }

    /// `connection_reply.engines`.
    fn engines_listed(&mut self) -> Value {
        let r = self.query(mt::CONNECTION_REQUEST, json!({}));
        assert_eq!(msg_type(&r), mt::CONNECTION_REPLY);
        assert_eq!(content(&r)["status"], "ok");
        content(&r)["engines"].clone()
    }

    fn queue_status(&mut self, verbose: bool) -> Value {
        let r = self.query(
            mt::QUEUE_REQUEST,
            json!({"targets": null, "verbose": verbose}),
        );
        assert_eq!(msg_type(&r), mt::QUEUE_REPLY);
        content(&r)
    }

    /// Sends `registration_request` from engine `uuid`; returns the reply. Registration is
    /// not complete yet, so nothing may be published.
    fn request_registration(&mut self, uuid: &str, id: Option<u32>) -> Message {
        let c = match id {
            Some(id) => json!({"uuid": uuid, "id": id}),
            None => json!({"uuid": uuid}),
        };
        let req = self.engine_session(uuid).build(
            vec![fr(uuid.as_bytes())],
            mt::REGISTRATION_REQUEST,
            None,
            &json!({}),
            &c,
            vec![],
        );
        self.handle(Sock::Query, req.into_frames());
        let outs = self.sent();
        assert!(
            on(&outs, Sock::Notification).is_empty(),
            "nothing is published before the first pong"
        );
        let reply = one(&outs, Sock::Query);
        assert_eq!(reply.idents, vec![fr(uuid.as_bytes())]);
        assert_eq!(msg_type(&reply), mt::REGISTRATION_REPLY);
        if content(&reply)["status"] == "ok" {
            // oxipp engines start no nanny under this controller
            assert_eq!(content(&reply)[mt::NOTICES_CLOSED_CONNECTIONS], true);
        }
        reply
    }

    fn pong(&mut self, uuid: &str, payload: Frame) {
        self.handle(Sock::HbPong, vec![fr(uuid.as_bytes()), payload]);
    }

    /// A ping to echo: runs the clock at `now` (a fast ping is due after a registration
    /// request) and returns the latest payload.
    fn current_ping(&mut self) -> Frame {
        self.tick_at(self.now);
        let outs = self.sent();
        assert!(
            outs.is_empty(),
            "unexpected output at a heartbeat tick: {:?}",
            socks(&outs)
        );
        self.last_ping.clone().expect("a heartbeat was published")
    }

    /// Full registration (request + first pong); returns the engine id.
    fn register(&mut self, uuid: &str) -> u32 {
        let reply = self.request_registration(uuid, None);
        let c = content(&reply);
        assert_eq!(c["status"], "ok", "registration of {uuid} refused: {c}");
        let id = c["id"].as_u64().expect("id") as u32;
        let ping = self.current_ping();
        self.pong(uuid, ping);
        let outs = self.sent();
        let n = one(&outs, Sock::Notification);
        assert_eq!(msg_type(&n), mt::REGISTRATION_NOTIFICATION);
        assert_eq!(content(&n), json!({"id": id, "uuid": uuid}));
        id
    }

    /// The nanny of engine `id` reports its death (identity-less DEALER, no reply expected).
    fn nanny_unregisters(&mut self, id: u32) -> Vec<(Sock, Message)> {
        let (_, outs) = self.query_from(NANNY, mt::UNREGISTRATION_REQUEST, json!({"id": id}));
        assert!(
            on(&outs, Sock::Query).is_empty(),
            "unregistration_request gets no reply"
        );
        outs
    }

    /// Submits a load-balanced task; returns the request (without routing frames).
    fn submit_task(&mut self, md: Value, buffers: Vec<Frame>) -> Message {
        let req = self.client_msg(vec![fr(CLIENT)], mt::APPLY_REQUEST, md, json!({}), buffers);
        self.handle(Sock::TaskClient, req.clone().into_frames());
        req
    }
}

fn assert_unregistration(outs: &[(Sock, Message)], id: u32, uuid: &str) {
    let n = one(outs, Sock::Notification);
    assert_eq!(msg_type(&n), mt::UNREGISTRATION_NOTIFICATION);
    assert_eq!(content(&n), json!({"id": id, "uuid": uuid}));
}

/// The parts of a relayed message that must pass through untouched.
fn same_body(a: &Message, b: &Message) {
    assert_eq!(a.signature, b.signature, "relays must not re-sign");
    assert_eq!(a.header, b.header);
    assert_eq!(a.parent, b.parent);
    assert_eq!(a.metadata, b.metadata);
    assert_eq!(a.content, b.content);
    assert_eq!(a.buffers, b.buffers, "buffers must pass byte-exact");
}

// ---------------------------------------------------------------------------------------
// registration and heartbeats

#[test]
fn registration_reply_has_id_period_and_connection_info_but_no_parent() {
    let mut h = Harness::new();
    let reply = h.request_registration("eng-a", None);
    assert_eq!(
        &reply.parent[..],
        b"{}",
        "stock sends registration_reply without a parent"
    );
    let c = content(&reply);
    assert_eq!(c["status"], "ok");
    assert_eq!(c["id"], 0);
    assert_eq!(c["hb_period"], PERIOD_MS);
    assert_eq!(c["connection_info"], conn_info());
    let second = h.request_registration("eng-b", None);
    assert_eq!(content(&second)["id"], 1, "ids count up");
}

#[test]
fn registration_completes_only_on_the_first_pong() {
    let mut h = Harness::new();
    h.request_registration("eng-a", None);
    assert_eq!(
        h.engines_listed(),
        json!({}),
        "pending engines are invisible"
    );

    h.pong("eng-a", fr(b"not-a-ping-we-sent"));
    assert!(
        h.sent().is_empty(),
        "a pong of an unknown payload proves nothing"
    );
    assert_eq!(h.engines_listed(), json!({}));

    let ping = h.current_ping();
    h.pong("stranger", ping.clone());
    assert!(
        h.sent().is_empty(),
        "a pong from an engine that never registered registers nothing"
    );

    h.pong("eng-a", ping.clone());
    let outs = h.sent();
    let n = one(&outs, Sock::Notification);
    assert_eq!(msg_type(&n), mt::REGISTRATION_NOTIFICATION);
    assert_eq!(content(&n), json!({"id": 0, "uuid": "eng-a"}));
    assert_eq!(&n.parent[..], b"{}");
    assert!(n.idents.is_empty(), "notifications have no topic frame");
    assert_eq!(h.engines_listed(), json!({"0": "eng-a"}));

    h.pong("eng-a", ping);
    assert!(
        h.sent().is_empty(),
        "registration_notification is published once"
    );
    assert_eq!(h.engines_listed(), json!({"0": "eng-a"}));
}

#[test]
fn duplicate_uuid_gets_a_key_error_whether_pending_or_registered() {
    let mut h = Harness::new();
    assert_eq!(
        content(&h.request_registration("eng-a", None))["status"],
        "ok"
    );
    for state in ["pending", "registered"] {
        let reply = h.request_registration("eng-a", None);
        let c = content(&reply);
        assert_error(&c, "KeyError");
        assert_eq!(
            c["evalue"], "\"uuid 'eng-a' in use\"",
            "stock wording ({state})"
        );
        assert_eq!(&reply.parent[..], b"{}");
        if state == "pending" {
            let ping = h.current_ping();
            h.pong("eng-a", ping);
            assert_eq!(on(&h.sent(), Sock::Notification).len(), 1);
        }
    }
    assert_eq!(h.ctl.stats.get("registration_in_use"), 2);
    assert_eq!(h.engines_listed(), json!({"0": "eng-a"}));
    assert_eq!(
        content(&h.request_registration("eng-b", None))["id"],
        1,
        "refusals consume no id"
    );
}

#[test]
fn requested_ids_are_granted_when_free_and_never_reused() {
    let mut h = Harness::new();
    let id = |h: &mut Harness, uuid: &str, req: Option<u32>| {
        content(&h.request_registration(uuid, req))["id"].clone()
    };
    assert_eq!(
        id(&mut h, "a", Some(5)),
        5,
        "a free requested id is granted"
    );
    assert_eq!(
        id(&mut h, "b", Some(5)),
        6,
        "a taken id -> the next counter value"
    );
    assert_eq!(id(&mut h, "c", None), 7);
    assert_eq!(
        id(&mut h, "d", Some(2)),
        2,
        "lower free ids may be requested"
    );
    assert_eq!(id(&mut h, "e", None), 8, "the counter never goes back");
}

#[test]
fn missed_heartbeats_unregister_after_max_misses_plus_one_beats() {
    let mut h = Harness::new();
    let period = Duration::from_millis(PERIOD_MS);
    let id_a = h.register("eng-a");
    let id_b = h.register("eng-b");
    // Beats are at t0 + k·period. eng-b answers every ping; eng-a answers pings 1 and 2 only.
    // The answer to ping 2 is counted at beat 3; beats 4..=7 are misses 1..=4, and the
    // fourth (> max_misses = 3) stops the heart.
    let answered = 2;
    let dies_at = answered + 1 + (MISSES + 1);
    for k in 1..=dies_at + 3 {
        h.tick_at(h.t0 + period * k);
        let outs = h.sent();
        let ping = h.last_ping.clone().expect("a beat");
        if k < dies_at {
            assert!(
                outs.is_empty(),
                "beat {k}: engine dropped too early: {:?}",
                socks(&outs)
            );
        } else if k == dies_at {
            assert_unregistration(&outs, id_a, "eng-a");
        } else {
            assert!(
                on(&outs, Sock::Notification).is_empty(),
                "beat {k}: unregistered twice?"
            );
        }
        if k <= answered {
            h.pong("eng-a", ping.clone());
        }
        h.pong("eng-b", ping);
        assert!(h.sent().is_empty());
    }
    assert_eq!(
        h.engines_listed(),
        json!({id_b.to_string(): "eng-b"}),
        "the live engine stays"
    );
}

#[test]
fn late_pong_for_the_previous_ping_still_counts() {
    let mut h = Harness::new();
    let period = Duration::from_millis(PERIOD_MS);
    h.register("eng-a");
    // Each answer arrives one beat late (after the next ping went out): stock accepts the
    // previous ping, so the engine must never be declared dead.
    let mut previous: Option<Frame> = None;
    for k in 1..=(3 * MISSES) {
        h.tick_at(h.t0 + period * k);
        let outs = h.sent();
        assert!(outs.is_empty(), "beat {k}: {:?}", socks(&outs));
        if let Some(p) = previous.take() {
            h.pong("eng-a", p);
        }
        previous = h.last_ping.clone();
    }
    assert_eq!(h.engines_listed(), json!({"0": "eng-a"}));
}

#[test]
fn nanny_unregistration_is_immediate_and_ids_are_not_reused() {
    let mut h = Harness::new();
    let id = h.register("eng-a");
    let outs = h.nanny_unregisters(id);
    assert_unregistration(&outs, id, "eng-a");
    assert_eq!(h.engines_listed(), json!({}));
    let again = h.nanny_unregisters(id);
    assert!(
        again.is_empty(),
        "unregistering twice publishes nothing: {:?}",
        socks(&again)
    );
    assert_eq!(h.register("eng-b"), 1, "ids are never reused");
}

#[test]
fn shutdown_reply_on_iopub_unregisters_the_engine() {
    let mut h = Harness::new();
    let id = h.register("eng-a");
    let m = h.engine_session("eng-a").build(
        vec![fr(b"engine.0.shutdown")],
        mt::SHUTDOWN_REPLY,
        None,
        &json!({}),
        &json!({"status": "ok", "restart": false}),
        vec![],
    );
    h.handle(Sock::IopubIn, m.clone().into_frames());
    let outs = h.sent();
    let relayed = one(&outs, Sock::IopubOut);
    assert_eq!(relayed, m, "IOPub is relayed unchanged, topic included");
    assert_unregistration(&outs, id, "eng-a");
}

// ---------------------------------------------------------------------------------------
// mux and control relays

#[test]
fn mux_relay_swaps_routing_frames_both_ways_and_queue_status_counts() {
    let mut h = Harness::new();
    let id = h.register("eng-a");
    let req = h.client_msg(
        vec![fr(CLIENT), fr(b"eng-a")],
        mt::APPLY_REQUEST,
        json!({"label": null}),
        json!({}),
        vec![fr(b"\x80\x04canned-f"), fr(b"\x00\xffargs")],
    );
    h.handle(Sock::MuxClient, req.clone().into_frames());
    let outs = h.sent();
    let to_engine = one(&outs, Sock::MuxEngine);
    assert_eq!(outs.len(), 1);
    assert_eq!(
        to_engine.idents,
        vec![fr(b"eng-a"), fr(CLIENT)],
        "[engine, client] towards the engine"
    );
    same_body(&to_engine, &req);

    let key = id.to_string();
    let qs = h.queue_status(false);
    assert_eq!(
        qs,
        json!({"status": "ok", key.clone(): {"queue": 1, "completed": 0, "tasks": 0}, "unassigned": 0})
    );
    let qs = h.queue_status(true);
    assert_eq!(
        qs[&key],
        json!({"queue": [msg_id(&req)], "completed": [], "tasks": []})
    );
    assert_eq!(qs["unassigned"], json!([]));

    let reply = h.engine_reply(
        "eng-a",
        vec![fr(b"eng-a"), fr(CLIENT)],
        &req,
        "ok",
        vec![fr(b"\x80\x04result")],
    );
    h.handle(Sock::MuxEngine, reply.clone().into_frames());
    let outs = h.sent();
    let to_client = one(&outs, Sock::MuxClient);
    assert_eq!(outs.len(), 1);
    assert_eq!(
        to_client.idents,
        vec![fr(CLIENT), fr(b"eng-a")],
        "[client, engine] towards the client"
    );
    same_body(&to_client, &reply);

    let qs = h.queue_status(false);
    assert_eq!(qs[&key], json!({"queue": 0, "completed": 1, "tasks": 0}));
    assert_eq!(
        h.queue_status(true)[&key]["completed"],
        json!([msg_id(&req)])
    );
}

#[test]
fn control_relay_swaps_routing_frames_both_ways() {
    let mut h = Harness::new();
    h.register("eng-a");
    let req = h.client_msg(
        vec![fr(CLIENT), fr(b"eng-a")],
        mt::CLEAR_REQUEST,
        json!({}),
        json!({}),
        vec![],
    );
    h.handle(Sock::ControlClient, req.clone().into_frames());
    let to_engine = one(&h.sent(), Sock::ControlEngine);
    assert_eq!(to_engine.idents, vec![fr(b"eng-a"), fr(CLIENT)]);
    same_body(&to_engine, &req);
    let reply = h.engine_reply("eng-a", vec![fr(b"eng-a"), fr(CLIENT)], &req, "ok", vec![]);
    h.handle(Sock::ControlEngine, reply.clone().into_frames());
    let to_client = one(&h.sent(), Sock::ControlClient);
    assert_eq!(to_client.idents, vec![fr(CLIENT), fr(b"eng-a")]);
    same_body(&to_client, &reply);
}

#[test]
fn requests_to_unregistered_engines_get_an_immediate_engine_error() {
    let mut h = Harness::new();
    let id = h.register("eng-dead");
    h.nanny_unregisters(id);
    for (target, sock, req_type, reply_type) in [
        ("ghost", Sock::MuxClient, mt::APPLY_REQUEST, mt::APPLY_REPLY),
        (
            "eng-dead",
            Sock::MuxClient,
            mt::EXECUTE_REQUEST,
            mt::EXECUTE_REPLY,
        ),
        (
            "ghost",
            Sock::ControlClient,
            mt::CLEAR_REQUEST,
            mt::CLEAR_REPLY,
        ),
    ] {
        let req = h.client_msg(
            vec![fr(CLIENT), fr(target.as_bytes())],
            req_type,
            json!({}),
            json!({}),
            vec![],
        );
        h.handle(sock, req.clone().into_frames());
        let outs = h.sent();
        assert_eq!(
            outs.len(),
            1,
            "{target}/{req_type}: only an error reply: {:?}",
            socks(&outs)
        );
        let r = one(&outs, sock);
        assert_eq!(
            r.idents,
            vec![fr(CLIENT), fr(target.as_bytes())],
            "routed like an engine reply"
        );
        assert_eq!(msg_type(&r), reply_type);
        assert_eq!(r.parent, req.header);
        assert_error(&content(&r), "EngineError");
        assert_eq!(md(&r)["status"], "error");
    }
    assert_eq!(h.ctl.stats.get("unknown_target"), 3);
    assert_eq!(
        h.queue_status(false),
        json!({"status": "ok", "unassigned": 0}),
        "nothing was queued"
    );
}

// ---------------------------------------------------------------------------------------
// load-balanced tasks

#[test]
fn task_goes_to_an_engine_as_engine_then_client_and_the_reply_comes_back_swapped() {
    let mut h = Harness::new();
    // Submitted before any engine exists: it waits, unassigned.
    let req = h.submit_task(lb_metadata(0, &[]), vec![fr(b"f"), fr(b"args")]);
    assert!(h.sent().is_empty(), "no engine yet");
    assert_eq!(h.queue_status(false)["unassigned"], 1);

    let id = h.register_collecting("eng-a");
    let to_engine = one(&id.1, Sock::TaskEngine);
    assert_eq!(to_engine.idents, vec![fr(b"eng-a"), fr(CLIENT)]);
    same_body(&to_engine, &req);
    let key = id.0.to_string();
    assert_eq!(
        h.queue_status(false),
        json!({"status": "ok", key.clone(): {"queue": 0, "completed": 0, "tasks": 1}, "unassigned": 0})
    );
    assert_eq!(h.queue_status(true)[&key]["tasks"], json!([msg_id(&req)]));

    let reply = h.engine_reply(
        "eng-a",
        vec![fr(b"eng-a"), fr(CLIENT)],
        &req,
        "ok",
        vec![fr(b"result")],
    );
    h.handle(Sock::TaskEngine, reply.clone().into_frames());
    let outs = h.sent();
    assert_eq!(outs.len(), 1);
    let to_client = one(&outs, Sock::TaskClient);
    assert_eq!(to_client.idents, vec![fr(CLIENT), fr(b"eng-a")]);
    same_body(&to_client, &reply);
    assert_eq!(
        h.queue_status(false)[&key],
        json!({"queue": 0, "completed": 1, "tasks": 0})
    );
}

impl Harness {
    /// Like [`Harness::register`], but also returns what registration set off (tasks waiting
    /// for an engine are sent on completion).
    fn register_collecting(&mut self, uuid: &str) -> (u32, Vec<(Sock, Message)>) {
        let reply = self.request_registration(uuid, None);
        let id = content(&reply)["id"].as_u64().expect("id") as u32;
        let ping = self.current_ping();
        self.pong(uuid, ping);
        let outs = self.sent();
        assert_eq!(
            content(&one(&outs, Sock::Notification)),
            json!({"id": id, "uuid": uuid})
        );
        (id, outs)
    }
}

#[test]
fn tasks_stranded_on_a_dead_engine_fail_with_engine_error_after_the_grace_period() {
    let mut h = Harness::new();
    let id = h.register("eng-a");
    let req = h.submit_task(lb_metadata(0, &[]), vec![fr(b"f")]);
    assert_eq!(one(&h.sent(), Sock::TaskEngine).idents[0], fr(b"eng-a"));

    let outs = h.nanny_unregisters(id);
    assert_unregistration(&outs, id, "eng-a");
    assert!(
        on(&outs, Sock::TaskClient).is_empty(),
        "in-flight replies get a grace period"
    );
    let died = h.now;

    h.tick_at(died + Duration::from_millis(GRACE_MS - 1));
    assert!(on(&h.sent(), Sock::TaskClient).is_empty(), "too early");
    h.tick_at(died + Duration::from_millis(GRACE_MS));
    let outs = h.sent();
    let r = one(&outs, Sock::TaskClient);
    assert_eq!(
        r.idents,
        vec![fr(CLIENT), fr(b"eng-a")],
        "stock relays it with the dead engine's uuid"
    );
    assert_eq!(msg_type(&r), mt::APPLY_REPLY);
    assert_eq!(r.parent, req.header);
    let c = content(&r);
    assert_error(&c, "EngineError");
    assert!(
        c["evalue"].as_str().unwrap_or("").contains(&msg_id(&req)),
        "names the task: {c}"
    );
    assert_eq!(md(&r)["status"], "error");
    assert_eq!(md(&r)["engine"], "eng-a");

    // A reply that straggles in afterwards is dropped, not relayed a second time.
    let late = h.engine_reply("eng-a", vec![fr(b"eng-a"), fr(CLIENT)], &req, "ok", vec![]);
    h.handle(Sock::TaskEngine, late.into_frames());
    assert!(h.sent().is_empty());
    h.advance(Duration::from_millis(10 * GRACE_MS));
    assert!(
        on(&h.sent(), Sock::TaskClient).is_empty(),
        "failed once only"
    );

    let rr = h.query(
        mt::RESULT_REQUEST,
        json!({"msg_ids": [msg_id(&req)], "status_only": false}),
    );
    let rc = content(&rr);
    assert_eq!(rc["completed"], json!([msg_id(&req)]));
    assert_eq!(
        rc[msg_id(&req)]["result_content"]["ename"],
        "EngineError",
        "recorded: {rc}"
    );
}

#[test]
fn stranded_task_with_retries_reruns_on_another_engine() {
    let mut h = Harness::new();
    let ids: BTreeMap<String, u32> = ["eng-a", "eng-b"]
        .iter()
        .map(|u| (u.to_string(), h.register(u)))
        .collect();
    let req = h.submit_task(lb_metadata(1, &[]), vec![fr(b"f")]);
    let first = one(&h.sent(), Sock::TaskEngine);
    let victim = String::from_utf8(first.idents[0].to_vec()).expect("uuid");
    let other = if victim == "eng-a" { "eng-b" } else { "eng-a" };

    let outs = h.nanny_unregisters(ids[&victim]);
    assert_unregistration(&outs, ids[&victim], &victim);
    h.advance(Duration::from_millis(GRACE_MS));
    let outs = h.sent();
    assert!(
        on(&outs, Sock::TaskClient).is_empty(),
        "a retry hides the failure from the client"
    );
    let rerun = one(&outs, Sock::TaskEngine);
    assert_eq!(rerun.idents, vec![fr(other.as_bytes()), fr(CLIENT)]);
    same_body(&rerun, &req);

    let reply = h.engine_reply(
        other,
        vec![fr(other.as_bytes()), fr(CLIENT)],
        &req,
        "ok",
        vec![],
    );
    h.handle(Sock::TaskEngine, reply.clone().into_frames());
    let r = one(&h.sent(), Sock::TaskClient);
    assert_eq!(r.idents, vec![fr(CLIENT), fr(other.as_bytes())]);
    same_body(&r, &reply);
}

#[test]
fn task_with_bad_metadata_is_refused_with_a_reply() {
    let mut h = Harness::new();
    h.register("eng-a");
    let req = h.submit_task(json!({"targets": "not-a-list", "retries": 0}), vec![]);
    let outs = h.sent();
    assert!(on(&outs, Sock::TaskEngine).is_empty());
    let r = one(&outs, Sock::TaskClient);
    assert_eq!(
        r.idents,
        vec![fr(CLIENT)],
        "scheduler errors carry no engine frame"
    );
    assert_eq!(r.parent, req.header);
    assert_error(&content(&r), "ValueError");
}

#[test]
fn task_that_waits_past_its_timeout_fails_with_task_timeout() {
    // Generous misses: the busy engine stays registered although this test never pongs.
    let mut h = Harness::with_config(Config {
        hb_max_misses: 1000,
        ..test_config()
    });
    h.register("eng-a");
    let busy = h.submit_task(lb_metadata(0, &[]), vec![]);
    assert_eq!(one(&h.sent(), Sock::TaskEngine).header, busy.header);
    // hwm = 1: the second task has to wait, and may wait 0.5 s at most.
    let mut meta = lb_metadata(0, &[]);
    meta["timeout"] = json!(0.5);
    let req = h.submit_task(meta, vec![]);
    assert!(h.sent().is_empty(), "the only engine is busy");
    h.advance(Duration::from_millis(499));
    assert!(h.sent().is_empty(), "timed out early");
    h.advance(Duration::from_millis(2));
    let outs = h.sent();
    assert!(on(&outs, Sock::TaskEngine).is_empty());
    let r = one(&outs, Sock::TaskClient);
    assert_eq!(
        r.idents,
        vec![fr(CLIENT)],
        "scheduler errors carry no engine frame"
    );
    assert_eq!(msg_type(&r), mt::APPLY_REPLY);
    assert_eq!(r.parent, req.header);
    assert_eq!(
        md(&r),
        json!({}),
        "stock: metadata {{}} for scheduler failures"
    );
    assert_error(&content(&r), "TaskTimeout");
    assert_eq!(
        h.queue_status(false)["unassigned"],
        0,
        "a failed task is no longer unassigned"
    );
}

// ---------------------------------------------------------------------------------------
// Hub queries (spec §3.2)

/// A mux request from the client to `uuid` and the engine's reply (if `reply`), returning the request.
fn mux_round(h: &mut Harness, uuid: &str, bufs: Vec<Frame>, reply: Option<Vec<Frame>>) -> Message {
    let req = h.client_msg(
        vec![fr(CLIENT), fr(uuid.as_bytes())],
        mt::APPLY_REQUEST,
        json!({"label": "lbl"}),
        json!({}),
        bufs,
    );
    h.handle(Sock::MuxClient, req.clone().into_frames());
    assert_eq!(on(&h.sent(), Sock::MuxEngine).len(), 1);
    if let Some(rb) = reply {
        let r = h.engine_reply(uuid, vec![fr(uuid.as_bytes()), fr(CLIENT)], &req, "ok", rb);
        h.handle(Sock::MuxEngine, r.into_frames());
        assert_eq!(on(&h.sent(), Sock::MuxClient).len(), 1);
    }
    req
}

#[test]
fn result_request_reports_pending_completed_records_and_buffers_in_msg_id_order() {
    let mut h = Harness::new();
    h.register("eng-a");
    let done1 = mux_round(
        &mut h,
        "eng-a",
        vec![fr(b"in1")],
        Some(vec![fr(b"out1a"), fr(b"out1b")]),
    );
    let done2 = mux_round(&mut h, "eng-a", vec![fr(b"in2")], Some(vec![fr(b"out2")]));
    let pending = mux_round(&mut h, "eng-a", vec![fr(b"in3")], None);
    let (id1, id2, id3) = (msg_id(&done1), msg_id(&done2), msg_id(&pending));

    // Ask in reverse order: buffers must still come in sorted msg_id order.
    let r = h.query(
        mt::RESULT_REQUEST,
        json!({"msg_ids": [id3, id2, id1], "status_only": false}),
    );
    assert_eq!(msg_type(&r), mt::RESULT_REPLY);
    let c = content(&r);
    assert_eq!(c["status"], "ok");
    assert_eq!(c["pending"], json!([id3]));
    let mut done = vec![id1.clone(), id2.clone()];
    done.sort();
    assert_eq!(c["completed"], json!(done));
    let rec = c[&id1].as_object().expect("record extract");
    let keys: Vec<&str> = rec.keys().map(String::as_str).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            "header",
            "io",
            "metadata",
            "received",
            "result_content",
            "result_header",
            "result_metadata"
        ]
    );
    assert_eq!(rec["header"], header(&done1));
    assert_eq!(rec["metadata"], md(&done1));
    assert_eq!(rec["result_content"], json!({"status": "ok"}));
    assert_eq!(rec["result_header"]["msg_type"], "apply_reply");
    assert_eq!(rec["result_metadata"]["engine"], "eng-a");
    assert!(rec["received"].is_string());
    let io = rec["io"].as_object().expect("io");
    let mut io_keys: Vec<&str> = io.keys().map(String::as_str).collect();
    io_keys.sort_unstable();
    assert_eq!(
        io_keys,
        [
            "error",
            "execute_input",
            "execute_result",
            "stderr",
            "stdout"
        ]
    );
    assert!(c.get(&id3).is_none(), "no record for pending ids");
    let expect_bufs: Vec<Frame> = if id1 < id2 {
        vec![fr(b"out1a"), fr(b"out1b"), fr(b"out2")]
    } else {
        vec![fr(b"out2"), fr(b"out1a"), fr(b"out1b")]
    };
    assert_eq!(r.buffers, expect_bufs);

    let r = h.query(
        mt::RESULT_REQUEST,
        json!({"msg_ids": [id1, id3], "status_only": true}),
    );
    let c = content(&r);
    assert_eq!(c["completed"], json!([id1]));
    assert_eq!(c["pending"], json!([id3]));
    assert!(c.get(&id1).is_none(), "status_only: no records");
    assert!(r.buffers.is_empty(), "status_only: no buffers");

    let r = h.query(
        mt::RESULT_REQUEST,
        json!({"msg_ids": [id1, "no-such-id"], "status_only": false}),
    );
    let c = content(&r);
    assert_error(&c, "KeyError");
    assert_eq!(c["evalue"], "'No such message: no-such-id'");
    assert!(r.buffers.is_empty());
}

#[test]
fn db_request_returns_records_with_buffers_as_frames_and_their_lengths() {
    let mut h = Harness::new();
    h.register("eng-a");
    let a = mux_round(
        &mut h,
        "eng-a",
        vec![fr(b"a-in1"), fr(b"a-in2")],
        Some(vec![fr(b"a-out")]),
    );
    let b = mux_round(&mut h, "eng-a", vec![fr(b"b-in")], None);
    let (ia, ib) = (msg_id(&a), msg_id(&b));

    let r = h.query(
        mt::DB_REQUEST,
        json!({"query": {"msg_id": {"$in": [ia, ib]}}, "keys": ["msg_id", "buffers", "result_buffers", "completed"]}),
    );
    assert_eq!(msg_type(&r), mt::DB_REPLY);
    let c = content(&r);
    assert_eq!(c["status"], "ok");
    let records = c["records"].as_array().expect("records");
    assert_eq!(records.len(), 2);
    let order: Vec<&str> = records
        .iter()
        .map(|r| r["msg_id"].as_str().unwrap_or_default())
        .collect();
    let mut want_bufs = Vec::new();
    let (mut lens, mut rlens) = (Vec::new(), Vec::new());
    for id in &order {
        let rec = records.iter().find(|r| r["msg_id"] == *id).expect("record");
        // JSON objects are unordered: compare the key sets
        let mut keys: Vec<&str> = rec
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["completed", "msg_id"],
            "buffers never appear inside records"
        );
        if *id == ia {
            assert!(rec["completed"].is_string());
            want_bufs.extend([fr(b"a-in1"), fr(b"a-in2"), fr(b"a-out")]);
            lens.push(2);
            rlens.push(1);
        } else {
            assert_eq!(rec["completed"], Value::Null);
            want_bufs.push(fr(b"b-in"));
            lens.push(1);
            rlens.push(0);
        }
    }
    assert_eq!(c["buffer_lens"], json!(lens));
    assert_eq!(c["result_buffer_lens"], json!(rlens));
    assert_eq!(
        r.buffers, want_bufs,
        "per record: request buffers, then result buffers"
    );

    let r = h.query(
        mt::DB_REQUEST,
        json!({"query": {"msg_id": ia}, "keys": null}),
    );
    let c = content(&r);
    assert_eq!(c["buffer_lens"], Value::Null);
    assert_eq!(c["result_buffer_lens"], Value::Null);
    assert!(r.buffers.is_empty());
    let rec = &c["records"][0];
    assert_eq!(rec["msg_id"], ia);
    assert_eq!(rec["queue"], "mux");
    assert_eq!(rec["engine_uuid"], "eng-a");
    assert_eq!(rec["client_uuid"], h.client.id);
    assert_eq!(rec["label"], "lbl");
    assert!(rec.get("buffers").is_none() && rec.get("result_buffers").is_none());

    let r = h.query(
        mt::DB_REQUEST,
        json!({"query": {}, "keys": ["no_such_column"]}),
    );
    assert_error(&content(&r), "KeyError");
}

#[test]
fn history_request_lists_msg_ids_by_submission_date() {
    let mut h = Harness::new();
    h.register("eng-a");
    // Sent late-dated first: history orders by the request's header date, not arrival.
    let mut ids = Vec::new();
    for date in ["2030-01-02T00:00:00.000000Z", "2030-01-01T00:00:00.000000Z"] {
        let mut req = h.client_msg(
            vec![fr(CLIENT), fr(b"eng-a")],
            mt::APPLY_REQUEST,
            json!({}),
            json!({}),
            vec![],
        );
        let mut hd = header(&req);
        hd["date"] = json!(date);
        req.header = Bytes::from(encode(&hd));
        h.client.sign(&mut req);
        ids.push(msg_id(&req));
        h.handle(Sock::MuxClient, req.into_frames());
        assert_eq!(on(&h.sent(), Sock::MuxEngine).len(), 1);
    }
    let r = h.query(mt::HISTORY_REQUEST, json!({}));
    assert_eq!(msg_type(&r), mt::HISTORY_REPLY);
    assert_eq!(
        content(&r),
        json!({"status": "ok", "history": [ids[1], ids[0]]})
    );
}

#[test]
fn purge_request_refuses_pending_and_unknown_engines_and_drops_completed() {
    let mut h = Harness::new();
    let id = h.register("eng-a");
    let a = mux_round(&mut h, "eng-a", vec![], Some(vec![]));
    let b = mux_round(&mut h, "eng-a", vec![], Some(vec![]));
    let p = mux_round(&mut h, "eng-a", vec![], None);
    let history =
        |h: &mut Harness| content(&h.query(mt::HISTORY_REQUEST, json!({})))["history"].clone();

    let r = h.query(
        mt::PURGE_REQUEST,
        json!({"msg_ids": [msg_id(&p)], "engine_ids": []}),
    );
    assert_eq!(msg_type(&r), mt::PURGE_REPLY);
    let c = content(&r);
    assert_error(&c, "IndexError");
    assert_eq!(c["evalue"], format!("msg pending: '{}'", msg_id(&p)));

    let r = h.query(
        mt::PURGE_REQUEST,
        json!({"msg_ids": [], "engine_ids": [99]}),
    );
    assert_error(&content(&r), "IndexError");
    assert_eq!(content(&r)["evalue"], "No such engine: 99");

    let r = h.query(
        mt::PURGE_REQUEST,
        json!({"msg_ids": [msg_id(&a)], "engine_ids": []}),
    );
    assert_eq!(content(&r), json!({"status": "ok"}));
    assert_eq!(history(&mut h), json!([msg_id(&b), msg_id(&p)]));
    let gone = h.query(
        mt::RESULT_REQUEST,
        json!({"msg_ids": [msg_id(&a)], "status_only": false}),
    );
    assert_error(&content(&gone), "KeyError");

    let r = h.query(
        mt::PURGE_REQUEST,
        json!({"msg_ids": [], "engine_ids": [id]}),
    );
    assert_eq!(content(&r), json!({"status": "ok"}));
    assert_eq!(
        history(&mut h),
        json!([msg_id(&p)]),
        "an engine's completed records go, pending stay"
    );

    let r = h.query(
        mt::PURGE_REQUEST,
        json!({"msg_ids": "all", "engine_ids": []}),
    );
    assert_eq!(content(&r), json!({"status": "ok"}));
    assert_eq!(
        history(&mut h),
        json!([msg_id(&p)]),
        "'all' keeps records not completed"
    );
}

#[test]
fn resubmit_request_reruns_a_task_under_a_new_msg_id() {
    let mut h = Harness::new();
    h.register("eng-a");
    let orig = h.submit_task(lb_metadata(0, &[]), vec![fr(b"f"), fr(b"args")]);
    one(&h.sent(), Sock::TaskEngine);
    let reply = h.engine_reply(
        "eng-a",
        vec![fr(b"eng-a"), fr(CLIENT)],
        &orig,
        "ok",
        vec![fr(b"r1")],
    );
    h.handle(Sock::TaskEngine, reply.into_frames());
    one(&h.sent(), Sock::TaskClient);

    let (req, outs) = h.query_from(
        CLIENT,
        mt::RESUBMIT_REQUEST,
        json!({"msg_ids": [msg_id(&orig)]}),
    );
    let r = one(&outs, Sock::Query);
    assert_eq!(r.parent, req.header);
    assert_eq!(msg_type(&r), mt::RESUBMIT_REPLY);
    let c = content(&r);
    assert_eq!(c["status"], "ok");
    let new_id = c["resubmitted"][msg_id(&orig)]
        .as_str()
        .expect("old -> new map")
        .to_string();
    assert_ne!(new_id, msg_id(&orig));

    let rerun = one(&outs, Sock::TaskEngine);
    assert_eq!(rerun.idents[0], fr(b"eng-a"));
    assert_ne!(
        rerun.idents[1],
        fr(CLIENT),
        "the Hub resubmits as its own client"
    );
    let (oh, nh) = (header(&orig), header(&rerun));
    assert_eq!(nh["msg_id"], new_id);
    assert_eq!(nh["msg_type"], oh["msg_type"]);
    assert_eq!(nh["session"], oh["session"]);
    assert_eq!(
        parent(&rerun),
        nh,
        "stock quirk: the resubmission's parent is its own header"
    );
    assert_eq!(rerun.content, orig.content);
    assert_eq!(rerun.buffers, orig.buffers);

    let rec = h.query(
        mt::DB_REQUEST,
        json!({"query": {"msg_id": msg_id(&orig)}, "keys": ["resubmitted"]}),
    );
    assert_eq!(content(&rec)["records"][0]["resubmitted"], new_id);

    // The engine's answer is recorded for the resubmitter (who polls result_request) and is
    // not delivered to the original client.
    let ereply = h.engine_reply("eng-a", rerun.idents.clone(), &rerun, "ok", vec![fr(b"r2")]);
    h.handle(Sock::TaskEngine, ereply.into_frames());
    let outs = h.sent();
    assert!(on(&outs, Sock::TaskClient)
        .iter()
        .all(|m| m.idents[0] != fr(CLIENT)));
    let rr = h.query(
        mt::RESULT_REQUEST,
        json!({"msg_ids": [new_id], "status_only": false}),
    );
    assert_eq!(content(&rr)["completed"], json!([new_id]));
    assert_eq!(rr.buffers, vec![fr(b"r2")]);

    let r = h.query(mt::RESUBMIT_REQUEST, json!({"msg_ids": ["nope"]}));
    let c = content(&r);
    assert_error(&c, "KeyError");
    assert_eq!(c["evalue"], "\"No such msg(s): ['nope']\"");
}

#[test]
fn queue_request_with_a_bad_target_is_a_hub_error() {
    let mut h = Harness::new();
    h.register("eng-a");
    let r = h.query(mt::QUEUE_REQUEST, json!({"targets": [7], "verbose": false}));
    assert_eq!(msg_type(&r), mt::HUB_ERROR);
    assert_error(&content(&r), "IndexError");
    let r = h.query(
        mt::QUEUE_REQUEST,
        json!({"targets": ["eng-a"], "verbose": false}),
    );
    assert_eq!(
        content(&r),
        json!({"status": "ok", "0": {"queue": 0, "completed": 0, "tasks": 0}, "unassigned": 0})
    );
}

#[test]
fn unknown_msg_type_gets_a_hub_error() {
    let mut h = Harness::new();
    let r = h.query("bogus_request", json!({}));
    assert_eq!(msg_type(&r), mt::HUB_ERROR);
    let c = content(&r);
    assert_error(&c, "KeyError");
    assert_eq!(
        c["evalue"], "\"Bad Message Type: 'bogus_request'\"",
        "stock wording"
    );
    assert_eq!(h.ctl.stats.get("query_unknown_type"), 1);
}

#[test]
fn shutdown_request_replies_publishes_and_schedules_exit() {
    let mut h = Harness::new();
    assert!(h.ctl.exit_at().is_none());
    let (req, outs) = h.query_from(CLIENT, mt::SHUTDOWN_REQUEST, json!({}));
    let r = one(&outs, Sock::Query);
    assert_eq!(msg_type(&r), mt::SHUTDOWN_REPLY);
    assert_eq!(content(&r), json!({"status": "ok"}));
    assert_eq!(r.parent, req.header);
    let n = one(&outs, Sock::Notification);
    assert_eq!(msg_type(&n), mt::SHUTDOWN_NOTIFICATION);
    assert_eq!(content(&n), json!({"status": "ok"}));
    assert_eq!(n.parent, req.header);
    let exit = h.ctl.exit_at().expect("exit scheduled");
    assert!(
        exit <= h.now + Duration::from_secs(1),
        "stock exits about 1 s later; we must not be slower"
    );
    assert!(
        h.ctl.next_deadline() <= exit,
        "the shell must wake up for the exit"
    );
}

// ---------------------------------------------------------------------------------------
// bad input

/// A signed client query whose JSON parts are given raw.
fn raw_query(h: &Harness, header: &[u8], content: &[u8]) -> Vec<Frame> {
    let mut m = Message {
        idents: vec![fr(CLIENT)],
        signature: Bytes::new(),
        header: fr(header),
        parent: fr(b"{}"),
        metadata: fr(b"{}"),
        content: fr(content),
        buffers: vec![],
    };
    h.client.sign(&mut m);
    m.into_frames()
}

#[test]
fn bad_query_input_is_refused_counted_and_answered_and_the_hub_keeps_working() {
    let mut h = Harness::new();
    h.register("eng-a");
    let good = |h: &Harness| {
        h.client_msg(
            vec![fr(CLIENT)],
            mt::CONNECTION_REQUEST,
            json!({}),
            json!({}),
            vec![],
        )
    };

    let mut unsigned = good(&h);
    unsigned.signature = Bytes::new();
    let mut forged = good(&h);
    forged.signature = Bytes::from(
        Signer::new(b"wrong-key", "hmac-sha256")
            .expect("signer")
            .sign(forged.signed_parts()),
    );
    let mut tampered = good(&h);
    tampered.content = fr(br#"{"x": 1}"#);
    let mut not_hex = good(&h);
    not_hex.signature = fr(b"zz-not-hex");
    let hdr = header(&good(&h));
    let mut no_type = hdr.clone();
    no_type.as_object_mut().expect("object").remove("msg_type");
    let big = good(&h);
    let mut oversized = big.clone();
    oversized.buffers = vec![Bytes::from(vec![0u8; MAX_QUERY + 1])];

    let cases: Vec<(&str, Vec<Frame>, &str)> = vec![
        (
            "garbage",
            vec![fr(CLIENT), fr(b"\xde\xad\xbe\xef")],
            "malformed",
        ),
        (
            "too few frames",
            vec![fr(CLIENT), fr(DELIMITER), fr(b""), fr(b"{}")],
            "malformed",
        ),
        ("unsigned", unsigned.into_frames(), "unsigned"),
        ("wrong key", forged.into_frames(), "bad_signature"),
        (
            "tampered after signing",
            tampered.into_frames(),
            "bad_signature",
        ),
        ("signature not hex", not_hex.into_frames(), "bad_signature"),
        (
            "header not JSON",
            raw_query(&h, b"{not json", b"{}"),
            "bad_header",
        ),
        (
            "header without msg_type",
            raw_query(&h, &encode(&no_type), b"{}"),
            "bad_header",
        ),
        ("oversized", oversized.into_frames(), "oversized"),
    ];
    for (what, frames, stat) in cases {
        let before = h.ctl.stats.get(stat);
        h.handle(Sock::Query, frames);
        assert_eq!(
            h.ctl.stats.get(stat),
            before + 1,
            "{what}: counted under {stat}"
        );
        let outs = h.sent();
        assert_eq!(
            outs.len(),
            1,
            "{what}: one answer and nothing else: {:?}",
            socks(&outs)
        );
        let r = one(&outs, Sock::Query);
        assert_eq!(r.idents, vec![fr(CLIENT)], "{what}");
        assert_eq!(msg_type(&r), mt::HUB_ERROR, "{what}");
        assert_error(&content(&r), "ValueError");
        // ... and the next valid message still works.
        assert_eq!(h.engines_listed(), json!({"0": "eng-a"}), "after {what}");
    }

    // Valid signature, valid header, content that is not JSON.
    let mut hdr2 = hdr.clone();
    hdr2["msg_id"] = json!("bad-content-1");
    let frames = raw_query(&h, &encode(&hdr2), b"[1, 2");
    h.handle(Sock::Query, frames);
    let r = one(&h.sent(), Sock::Query);
    assert_eq!(msg_type(&r), mt::HUB_ERROR);
    assert_error(&content(&r), "ValueError");
    assert_eq!(
        parent(&r)["msg_id"],
        "bad-content-1",
        "the header was readable, so it is the parent"
    );
    assert_eq!(h.ctl.stats.get("query_bad_content"), 1);

    // A replayed (byte-identical) valid message is refused the second time.
    let m = good(&h);
    h.handle(Sock::Query, m.clone().into_frames());
    assert_eq!(msg_type(&one(&h.sent(), Sock::Query)), mt::CONNECTION_REPLY);
    h.handle(Sock::Query, m.into_frames());
    let r = one(&h.sent(), Sock::Query);
    assert_eq!(msg_type(&r), mt::HUB_ERROR);
    assert!(
        content(&r)["evalue"]
            .as_str()
            .unwrap_or_default()
            .contains("replay"),
        "{}",
        content(&r)
    );
    assert_eq!(h.ctl.stats.get("replayed"), 1);
    assert_eq!(h.engines_listed(), json!({"0": "eng-a"}));
}

#[test]
fn bad_input_on_relay_sockets_is_dropped_silently_and_never_relayed() {
    let mut h = Harness::new();
    h.register("eng-a");
    let garbage = vec![fr(CLIENT), fr(b"eng-a"), fr(b"garbage")];
    for sock in [
        Sock::MuxClient,
        Sock::MuxEngine,
        Sock::TaskClient,
        Sock::TaskEngine,
        Sock::ControlClient,
        Sock::ControlEngine,
        Sock::BcastClient,
        Sock::BcastLeaf(0),
        Sock::IopubIn,
    ] {
        h.handle(sock, garbage.clone());
        let outs = h.sent();
        assert!(
            outs.is_empty(),
            "{sock:?}: garbage must not produce output: {:?}",
            socks(&outs)
        );
    }
    assert_eq!(h.ctl.stats.get("malformed"), 9);
    h.handle(Sock::HbPong, vec![fr(b"eng-a")]);
    h.handle(Sock::HbPong, vec![fr(b"eng-a"), fr(b"x"), fr(b"y")]);
    assert_eq!(h.ctl.stats.get("bad_pong"), 2);

    // A forged mux request never reaches the engine; a replayed one reaches it once.
    let mut forged = h.client_msg(
        vec![fr(CLIENT), fr(b"eng-a")],
        mt::APPLY_REQUEST,
        json!({}),
        json!({}),
        vec![],
    );
    forged.content = fr(br#"{"evil": true}"#);
    h.handle(Sock::MuxClient, forged.into_frames());
    assert!(h.sent().is_empty());
    let req = h.client_msg(
        vec![fr(CLIENT), fr(b"eng-a")],
        mt::APPLY_REQUEST,
        json!({}),
        json!({}),
        vec![],
    );
    h.handle(Sock::MuxClient, req.clone().into_frames());
    assert_eq!(on(&h.sent(), Sock::MuxEngine).len(), 1);
    h.handle(Sock::MuxClient, req.clone().into_frames());
    assert!(
        h.sent().is_empty(),
        "a replayed request must not be relayed again"
    );
    assert_eq!(h.ctl.stats.get("replayed"), 1);

    // A forged reply never reaches the client.
    let mut reply = h.engine_reply("eng-a", vec![fr(b"eng-a"), fr(CLIENT)], &req, "ok", vec![]);
    reply.signature = fr(b"00");
    h.handle(Sock::MuxEngine, reply.into_frames());
    assert!(h.sent().is_empty());
    assert_eq!(
        h.queue_status(false)["0"]["queue"],
        1,
        "still waiting for the real reply"
    );
}

// ---------------------------------------------------------------------------------------
// broadcast

fn bcast_targets(ids: &BTreeMap<String, u32>) -> Value {
    Value::Array(ids.iter().map(|(u, i)| json!([u, i])).collect())
}

/// Registers `uuids`, sends a broadcast to all of them and checks the per-engine fan-out.
/// Returns the request, the engine ids and the per-engine messages.
/// What each engine received from a broadcast, and on which leaf socket.
type PerEngine = BTreeMap<String, (Sock, Message)>;

fn broadcast(
    h: &mut Harness,
    uuids: &[&str],
    coalescing: bool,
) -> (Message, BTreeMap<String, u32>, PerEngine) {
    let ids: BTreeMap<String, u32> = uuids
        .iter()
        .map(|u| (u.to_string(), h.register(u)))
        .collect();
    let targets = bcast_targets(&ids);
    let req = h.client_msg(
        vec![fr(CLIENT)],
        mt::APPLY_REQUEST,
        json!({"targets": targets, "is_broadcast": true, "is_coalescing": coalescing}),
        json!({}),
        vec![fr(b"f"), fr(b"args")],
    );
    h.handle(Sock::BcastClient, req.clone().into_frames());
    let outs = h.sent();
    assert_eq!(
        outs.len(),
        uuids.len(),
        "one message per target: {:?}",
        socks(&outs)
    );
    let orig = msg_id(&req);
    let mut per_engine = BTreeMap::new();
    for (sock, m) in outs {
        let uuid = String::from_utf8(m.idents[0].to_vec()).expect("uuid");
        let id = ids[&uuid];
        assert_eq!(
            sock,
            Sock::BcastLeaf((id % 2) as u16),
            "engines connect to broadcast[id % n]"
        );
        assert_eq!(m.idents, vec![fr(uuid.as_bytes()), fr(CLIENT)]);
        let (mh, rh) = (header(&m), header(&req));
        assert_eq!(
            mh["msg_id"],
            format!("{orig}_{uuid}"),
            "per-engine msg_id rewrite"
        );
        for k in ["msg_type", "session", "date", "username"] {
            assert_eq!(mh[k], rh[k], "header.{k} is kept");
        }
        let mmd = md(&m);
        assert_eq!(mmd["original_msg_id"], orig);
        assert_eq!(mmd["targets"], targets);
        assert_eq!(mmd["is_coalescing"], coalescing);
        assert_eq!(m.content, req.content);
        assert_eq!(m.buffers, req.buffers);
        assert_ne!(m.signature, req.signature, "rewritten, so freshly signed");
        per_engine.insert(uuid, (sock, m));
    }
    assert_eq!(per_engine.len(), uuids.len(), "distinct engines");
    (req, ids, per_engine)
}

#[test]
fn non_coalescing_broadcast_relays_each_reply_without_an_engine_frame() {
    let mut h = Harness::new();
    let (req, _ids, per_engine) = broadcast(&mut h, &["eng-a", "eng-b", "eng-c"], false);
    let orig = msg_id(&req);
    for (uuid, (sock, m)) in &per_engine {
        let reply = h.engine_reply(uuid, m.idents.clone(), m, "ok", vec![fr(uuid.as_bytes())]);
        h.handle(*sock, reply.clone().into_frames());
        let r = one(&h.sent(), Sock::BcastClient);
        assert_eq!(r.idents, vec![fr(CLIENT)]);
        same_body(&r, &reply);
        assert_eq!(parent(&r)["msg_id"], format!("{orig}_{uuid}"));
    }
    assert!(h.sent().is_empty());
}

#[test]
fn coalescing_broadcast_sends_one_reply_with_buffers_in_target_order() {
    let mut h = Harness::new();
    let (req, ids, per_engine) = broadcast(&mut h, &["eng-a", "eng-b", "eng-c"], true);
    // Replies in reverse order.
    for (uuid, (sock, m)) in per_engine.iter().rev() {
        assert!(
            on(&h.sent(), Sock::BcastClient).is_empty(),
            "nothing before the last reply"
        );
        let reply = h.engine_reply(uuid, m.idents.clone(), m, "ok", vec![fr(uuid.as_bytes())]);
        h.handle(*sock, reply.into_frames());
    }
    let outs = h.sent();
    let r = one(&outs, Sock::BcastClient);
    assert_eq!(r.idents, vec![fr(CLIENT)]);
    assert_eq!(content(&r)["status"], "ok");
    let rmd = md(&r);
    assert_eq!(rmd["broadcast_targets"], bcast_targets(&ids));
    assert_eq!(rmd["original_msg_id"], msg_id(&req));
    assert_eq!(rmd["is_coalescing"], true);
    assert_eq!(
        r.buffers,
        vec![fr(b"eng-a"), fr(b"eng-b"), fr(b"eng-c")],
        "buffers in target order"
    );
    assert!(parent(&r)["msg_id"]
        .as_str()
        .unwrap_or_default()
        .starts_with(&msg_id(&req)));
}

#[test]
fn coalescing_broadcast_with_a_dying_engine_completes_with_one_engine_error() {
    let mut h = Harness::new();
    let (req, ids, per_engine) = broadcast(&mut h, &["eng-a", "eng-b", "eng-c"], true);
    for uuid in ["eng-a", "eng-b"] {
        let (sock, m) = &per_engine[uuid];
        let reply = h.engine_reply(uuid, m.idents.clone(), m, "ok", vec![fr(uuid.as_bytes())]);
        h.handle(*sock, reply.into_frames());
        assert!(h.sent().is_empty(), "still waiting for eng-c");
    }
    let outs = h.nanny_unregisters(ids["eng-c"]);
    assert_unregistration(&outs, ids["eng-c"], "eng-c");
    let r = one(&outs, Sock::BcastClient);
    assert_eq!(r.idents, vec![fr(CLIENT)]);
    assert_eq!(msg_type(&r), mt::APPLY_REPLY);
    assert_error(&content(&r), "EngineError");
    let rmd = md(&r);
    assert_eq!(
        rmd["broadcast_targets"],
        bcast_targets(&ids),
        "all targets, the dead one included"
    );
    assert_eq!(
        rmd["original_msg_id"],
        msg_id(&req),
        "the client maps coalesced replies by this"
    );
    assert_eq!(rmd["is_broadcast"], true);
    assert_eq!(rmd["is_coalescing"], true);

    // eng-c's reply straggling in, and the grace period passing, change nothing.
    let (sock, m) = &per_engine["eng-c"];
    let late = h.engine_reply("eng-c", m.idents.clone(), m, "ok", vec![]);
    h.handle(*sock, late.into_frames());
    h.advance(Duration::from_millis(2 * GRACE_MS));
    assert!(
        on(&h.sent(), Sock::BcastClient).is_empty(),
        "exactly one reply"
    );
}

#[test]
fn iopub_is_relayed_byte_exact_and_output_is_recorded() {
    let mut h = Harness::new();
    h.register("eng-a");
    let req = mux_round(&mut h, "eng-a", vec![], None);
    let stream = h.engine_session("eng-a").build(
        vec![fr(b"engine.0.stdout")],
        mt::STREAM,
        Some(&req.header),
        &json!({}),
        &json!({"name": "stdout", "text": "hello\n"}),
        vec![],
    );
    h.handle(Sock::IopubIn, stream.clone().into_frames());
    let relayed = one(&h.sent(), Sock::IopubOut);
    assert_eq!(relayed, stream);
    let rec = h.query(
        mt::DB_REQUEST,
        json!({"query": {"msg_id": msg_id(&req)}, "keys": ["stdout"]}),
    );
    assert_eq!(content(&rec)["records"][0]["stdout"], "hello\n");
}

#[test]
fn non_coalescing_broadcast_is_not_reported_pending_after_every_engine_replied() {
    let mut h = Harness::new();
    let (req, _ids, per_engine) = broadcast(&mut h, &["eng-a", "eng-b"], false);
    for (uuid, (sock, m)) in &per_engine {
        let reply = h.engine_reply(uuid, m.idents.clone(), m, "ok", vec![]);
        h.handle(*sock, reply.into_frames());
        one(&h.sent(), Sock::BcastClient);
    }
    let orig = msg_id(&req);
    let r = h.query(
        mt::RESULT_REQUEST,
        json!({"msg_ids": [orig], "status_only": true}),
    );
    let c = content(&r);
    // Either answer is acceptable (stock keeps no record at all: KeyError); "pending" forever is not.
    let pending = c["pending"]
        .as_array()
        .is_some_and(|p| p.iter().any(|x| x == &json!(orig)));
    assert!(
        !pending,
        "a finished broadcast is reported pending forever: {c}"
    );
}

#[test]
fn non_coalescing_broadcast_slot_of_an_unregistered_target_is_answered() {
    let mut h = Harness::new();
    let id = h.register("eng-a");
    let targets = json!([["eng-a", id], ["ghost", 5]]);
    let req = h.client_msg(
        vec![fr(CLIENT)],
        mt::APPLY_REQUEST,
        json!({"targets": targets, "is_broadcast": true, "is_coalescing": false}),
        json!({}),
        vec![],
    );
    h.handle(Sock::BcastClient, req.clone().into_frames());
    let outs = h.sent();
    // Like mux and control requests to an unknown engine (relay.rs reject_unknown_target),
    // the client must hear about the slot that can never be answered: it gets no
    // unregistration_notification for an engine that was never (or is no longer) registered.
    let ghost_id = format!("{}_ghost", msg_id(&req));
    let r = on(&outs, Sock::BcastClient)
        .into_iter()
        .find(|m| parent(m)["msg_id"] == ghost_id.as_str());
    let r = r.unwrap_or_else(|| panic!("no reply for {ghost_id}: {:?}", socks(&outs)));
    assert_eq!(r.idents, vec![fr(CLIENT)]);
    assert_error(&content(&r), "EngineError");
    assert_eq!(md(&r)["original_msg_id"], msg_id(&req));
}

#[test]
fn queued_task_whose_only_target_dies_ends_with_an_error() {
    let mut h = Harness::new();
    let id = h.register("eng-a");
    h.register("eng-b");
    let running = h.submit_task(lb_metadata(0, &["eng-a"]), vec![]);
    assert_eq!(one(&h.sent(), Sock::TaskEngine).header, running.header);
    // hwm = 1 and eng-a is busy: this one waits for eng-a, the only engine it may use.
    let queued = h.submit_task(lb_metadata(0, &["eng-a"]), vec![]);
    assert!(h.sent().is_empty());
    h.nanny_unregisters(id);
    h.advance(Duration::from_millis(GRACE_MS));
    let mut replies: BTreeMap<String, Value> = BTreeMap::new();
    for m in on(&h.sent(), Sock::TaskClient) {
        replies.insert(
            parent(&m)["msg_id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            content(&m),
        );
    }
    assert_error(&replies[&msg_id(&running)], "EngineError");
    let c = replies
        .get(&msg_id(&queued))
        .unwrap_or_else(|| panic!("queued task left waiting forever: {replies:?}"));
    assert_error(c, "ImpossibleDependency");
}

#[test]
fn mux_requests_stranded_on_a_dead_engine_are_recorded_as_engine_errors() {
    let mut h = Harness::new();
    let id = h.register("eng-a");
    let req = mux_round(&mut h, "eng-a", vec![], None);
    let outs = h.nanny_unregisters(id);
    assert!(
        on(&outs, Sock::MuxClient).is_empty(),
        "clients fail direct requests themselves (spec §4.2)"
    );
    h.advance(Duration::from_millis(GRACE_MS));
    assert!(on(&h.sent(), Sock::MuxClient).is_empty());
    let r = h.query(
        mt::RESULT_REQUEST,
        json!({"msg_ids": [msg_id(&req)], "status_only": false}),
    );
    let c = content(&r);
    assert_eq!(c["completed"], json!([msg_id(&req)]), "{c}");
    let rc = &c[msg_id(&req)]["result_content"];
    assert_error(rc, "EngineError");
    assert!(
        rc["evalue"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&format!("Engine {id} died")),
        "{rc}"
    );
}

#[test]
fn stalled_registration_is_dropped_and_a_late_pong_does_not_complete_it() {
    let mut h = Harness::with_config(Config {
        registration_timeout: Some(1.0),
        hb_max_misses: 1000,
        ..test_config()
    });
    h.request_registration("eng-slow", None);
    h.advance(Duration::from_millis(999));
    h.sent();
    let ping = h.last_ping.clone().expect("pings");
    h.advance(Duration::from_millis(1));
    assert!(h.sent().is_empty());
    assert_eq!(h.ctl.stats.get("registration_stalled"), 1);
    h.pong("eng-slow", ping);
    assert!(
        h.sent().is_empty(),
        "a dropped registration must not complete"
    );
    assert_eq!(h.engines_listed(), json!({}));
    assert_eq!(
        content(&h.request_registration("eng-slow", None))["status"],
        "ok",
        "the uuid is free again"
    );
}

#[test]
fn engine_giving_up_on_registration_cancels_it() {
    let mut h = Harness::new();
    h.request_registration("eng-a", None);
    let ping = h.current_ping();
    // Stock engines that time out send unregistration_request {"id": null} from their
    // registration DEALER (identity = uuid).
    let m = h.engine_session("eng-a").build(
        vec![fr(b"eng-a")],
        mt::UNREGISTRATION_REQUEST,
        None,
        &json!({}),
        &json!({"id": null}),
        vec![],
    );
    h.handle(Sock::Query, m.into_frames());
    assert!(h.sent().is_empty(), "no reply, nothing published");
    h.pong("eng-a", ping);
    assert!(
        h.sent().is_empty(),
        "cancelled: the first pong completes nothing"
    );
    assert_eq!(h.engines_listed(), json!({}));
}

#[test]
fn registration_flood_is_refused_with_an_error_reply() {
    let mut h = Harness::with_config(Config {
        max_pending_registrations: 2,
        ..test_config()
    });
    h.request_registration("a", None);
    h.request_registration("b", None);
    let c = content(&h.request_registration("c", None));
    assert_error(&c, "RuntimeError");
    let ping = h.current_ping();
    h.pong("a", ping);
    assert_eq!(on(&h.sent(), Sock::Notification).len(), 1);
    assert_eq!(
        content(&h.request_registration("c", None))["status"],
        "ok",
        "room again"
    );
}

//! The engine runtime against our real controller (in-process, real sockets) and a stock-like
//! client built from oxipp-wire. The executor is a small Rust one whose behaviour each request
//! picks through its content (`{"op": "echo" | "sleep" | "print" | "fail" | "none"}`), so every
//! runtime duty (queueing, replies, abort, stream flushing, heartbeats) is exercised without
//! Python.

// The controller's test harness (TestController, FakeClient) is reused rather than copied.
#[path = "../../oxipp-controller/tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use oxipp_engine::{run, Executor, Options, Outcome, Request, Runtime};
use oxipp_wire::{msg_types as mt, Message};
use serde_json::{json, Value};

struct TestExecutor;

impl Executor for TestExecutor {
    fn handle(&mut self, rt: &Runtime, req: &Arc<Request>) -> Option<Outcome> {
        let c: Value = serde_json::from_slice(&req.content).unwrap_or(Value::Null);
        let ms = c["ms"].as_u64().unwrap_or(0);
        let ok = |buffers| {
            Some(Outcome {
                status: "ok".into(),
                content: json!({"status": "ok"}),
                buffers,
                dependencies_met: true,
            })
        };
        match c["op"].as_str().unwrap_or("echo") {
            "sleep" => {
                std::thread::sleep(Duration::from_millis(ms));
                ok(vec![])
            }
            "print" => {
                rt.stream("stdout", "early\n", Some(req));
                std::thread::sleep(Duration::from_millis(ms));
                rt.stream("stdout", "late\n", Some(req));
                ok(vec![])
            }
            "fail" => Some(Outcome {
                status: "error".into(),
                content: json!({"status": "error", "ename": "ValueError", "evalue": "x",
                                "traceback": [], "engine_info": {"engine_id": rt.id}}),
                buffers: vec![],
                dependencies_met: true,
            }),
            "none" => None,
            _ => ok(req.buffers.iter().rev().cloned().collect()),
        }
    }
}

/// An engine runtime with the test executor in a thread.
struct Engine {
    rt: Arc<Runtime>,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Engine {
    fn start(ctl: &TestController, requested_id: Option<u32>) -> Engine {
        let text = std::fs::read_to_string(ctl.engine_file()).expect("engine file");
        Engine::start_text(text, requested_id)
    }

    /// An engine started with this connection info (text of ipcontroller-engine.json).
    fn start_text(text: String, requested_id: Option<u32>) -> Engine {
        let mut opts = Options::new(text);
        opts.requested_id = requested_id;
        opts.exit_process = false;
        let rt = Arc::new(Runtime::start(opts).expect("registration"));
        let done = Arc::new(AtomicBool::new(false));
        let (rt2, done2) = (rt.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            run(&rt2, &mut TestExecutor);
            done2.store(true, Ordering::SeqCst);
        });
        Engine {
            rt,
            done,
            thread: Some(thread),
        }
    }

    fn wait_done(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.done.load(Ordering::SeqCst) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("executor thread");
        }
        true
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.rt.close();
        // the executor thread blocks in next_request forever after close; leave it
    }
}

fn started(ctl: &TestController, requested_id: Option<u32>) -> (FakeClient, Engine) {
    let client = FakeClient::connect(ctl);
    let e = Engine::start(ctl, requested_id);
    client.wait_registered(std::slice::from_ref(&e.rt.uuid), DEADLINE);
    (client, e)
}

fn apply(client: &FakeClient, e: &Engine, content: Value) -> Message {
    let route = vec![fr(e.rt.uuid.as_bytes())];
    client.msg(
        route,
        mt::APPLY_REQUEST,
        json!({"label": "lbl"}),
        content,
        apply_buffers(),
    )
}

/// IOPub messages (topic, msg_type, content, parent msg_id) until `until` matches one.
fn iopub_until(
    client: &FakeClient,
    until: impl Fn(&str, &Value, &str) -> bool,
) -> Vec<(String, String, Value, String)> {
    let mut out = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = client
            .recv(&client.iopub, left)
            .unwrap_or_else(|| panic!("IOPub went quiet after {out:?}"));
        let topic =
            String::from_utf8_lossy(m.idents.first().map(|f| &f[..]).unwrap_or(b"")).to_string();
        let (t, c, p) = (msg_type(&m), content(&m), parent_id(&m));
        let stop = until(&t, &c, &p);
        out.push((topic, t, c, p));
        if stop {
            return out;
        }
    }
}

#[test]
fn registers_with_requested_id_and_runs_apply_through_mux_and_task() {
    let ctl = TestController::start();
    let (client, e) = started(&ctl, Some(5));
    assert_eq!(e.rt.id, 5);
    assert_eq!(e.rt.hb_period, Duration::from_millis(PING_MS));

    // mux
    let m = apply(&client, &e, json!({"op": "echo"}));
    client.send(&client.mux, &m);
    let r = client.reply_to(&client.mux, &msg_id(&m), DEADLINE);
    assert_eq!(msg_type(&r), mt::APPLY_REPLY);
    assert_eq!(content(&r), json!({"status": "ok"}));
    let mut expect_bufs = apply_buffers();
    expect_bufs.reverse();
    assert_eq!(r.buffers, expect_bufs, "buffers pass byte-exact both ways");
    let md = metadata(&r);
    assert_eq!(md["engine"], e.rt.uuid.as_str());
    assert_eq!(md["status"], "ok");
    assert_eq!(md["label"], "lbl");
    assert_eq!(md["dependencies_met"], true);
    assert_eq!(md["is_broadcast"], false);
    assert_eq!(md["is_coalescing"], false);
    assert_eq!(md["original_msg_id"], "");
    assert!(oxipp_wire::dates::parse(md["started"].as_str().unwrap()).is_some());
    assert!(md.get("engine_info").is_none());
    assert_eq!(header(&r)["session"], e.rt.uuid.as_str());
    let id = msg_id(&m);
    let seen = iopub_until(&client, |t, c, p| {
        t == "status" && c["execution_state"] == "idle" && p == id
    });
    let busy = seen
        .iter()
        .find(|(_, t, c, p)| t == "status" && c["execution_state"] == "busy" && *p == id);
    assert_eq!(busy.expect("busy before idle").0, "engine.5.status");

    // task (load-balanced)
    let m = client.msg(
        vec![],
        mt::APPLY_REQUEST,
        lb_metadata(&[], 0),
        json!({"op": "echo"}),
        apply_buffers(),
    );
    client.send(&client.task, &m);
    let r = client.reply_to(&client.task, &msg_id(&m), DEADLINE);
    assert_eq!(content(&r)["status"], "ok");
    assert_eq!(r.idents, vec![fr(e.rt.uuid.as_bytes())]);

    // an error reply carries engine_info in metadata
    let m = apply(&client, &e, json!({"op": "fail"}));
    client.send(&client.mux, &m);
    let r = client.reply_to(&client.mux, &msg_id(&m), DEADLINE);
    assert_eq!(metadata(&r)["status"], "error");
    assert_eq!(
        metadata(&r)["engine_info"],
        json!({"engine_uuid": e.rt.uuid, "engine_id": 5})
    );
}

#[test]
fn abort_queued_and_remembered() {
    let ctl = TestController::start();
    let (client, e) = started(&ctl, None);
    let route = || vec![fr(e.rt.uuid.as_bytes())];
    let r1 = apply(&client, &e, json!({"op": "sleep", "ms": 800}));
    let r2 = apply(&client, &e, json!({"op": "echo"}));
    let r3 = apply(&client, &e, json!({"op": "echo"}));
    for m in [&r1, &r2, &r3] {
        client.send(&client.mux, m);
    }
    // wait until r1 runs and r2, r3 are queued
    let deadline = Instant::now() + DEADLINE;
    while e.rt.queued() < 2 {
        assert!(Instant::now() < deadline, "requests never queued");
        std::thread::sleep(Duration::from_millis(5));
    }
    let r4_later = apply(&client, &e, json!({"op": "echo"}));
    let abort = client.msg(
        route(),
        mt::ABORT_REQUEST,
        json!({}),
        json!({"msg_ids": [msg_id(&r3), msg_id(&r4_later)]}),
        vec![],
    );
    client.send(&client.control, &abort);
    let a = client.reply_to(&client.control, &msg_id(&abort), DEADLINE);
    assert_eq!(msg_type(&a), mt::ABORT_REPLY);
    assert_eq!(content(&a)["status"], "ok");
    // r3 was queued: answered aborted at once, before r1 finishes
    let r = client.reply_to(&client.mux, &msg_id(&r3), DEADLINE);
    assert_eq!(content(&r), json!({"status": "aborted"}));
    assert_eq!(metadata(&r)["status"], "aborted");
    // r4 is remembered and answered aborted when it arrives
    client.send(&client.mux, &r4_later);
    let r = client.reply_to(&client.mux, &msg_id(&r4_later), DEADLINE);
    assert_eq!(content(&r)["status"], "aborted");
    // an empty list aborts everything queued (r2)
    let abort_all = client.msg(
        route(),
        mt::ABORT_REQUEST,
        json!({}),
        json!({"msg_ids": []}),
        vec![],
    );
    client.send(&client.control, &abort_all);
    client.reply_to(&client.control, &msg_id(&abort_all), DEADLINE);
    let r = client.reply_to(&client.mux, &msg_id(&r2), DEADLINE);
    assert_eq!(content(&r)["status"], "aborted");
    // the running request is not aborted
    let r = client.reply_to(&client.mux, &msg_id(&r1), DEADLINE);
    assert_eq!(content(&r)["status"], "ok");
}

#[test]
fn stop_on_error_aborts_queued_after_failed_execute() {
    let ctl = TestController::start();
    let (client, e) = started(&ctl, None);
    let route = || vec![fr(e.rt.uuid.as_bytes())];
    let ex = |op: &str| {
        client.msg(
            route(),
            mt::EXECUTE_REQUEST,
            json!({}),
            json!({"op": op, "code": ""}),
            vec![],
        )
    };
    let first = client.msg(
        route(),
        mt::APPLY_REQUEST,
        json!({}),
        json!({"op": "sleep", "ms": 300}),
        vec![],
    );
    let failing = ex("fail");
    let queued = ex("echo");
    for m in [&first, &failing, &queued] {
        client.send(&client.mux, m);
    }
    assert_eq!(
        content(&client.reply_to(&client.mux, &msg_id(&first), DEADLINE))["status"],
        "ok"
    );
    let f = client.reply_to(&client.mux, &msg_id(&failing), DEADLINE);
    assert_eq!(msg_type(&f), mt::EXECUTE_REPLY);
    assert_eq!(content(&f)["status"], "error");
    assert_eq!(
        content(&client.reply_to(&client.mux, &msg_id(&queued), DEADLINE))["status"],
        "aborted"
    );
}

#[test]
fn kernel_info_on_shell_and_control() {
    let ctl = TestController::start();
    let (client, e) = started(&ctl, None);
    e.rt.set_kernel_info(r#"{"status": "ok", "implementation": "test-impl"}"#)
        .unwrap();
    assert!(e.rt.set_kernel_info("[1]").is_err());
    for sock in [&client.mux, &client.control] {
        let m = client.msg(
            vec![fr(e.rt.uuid.as_bytes())],
            "kernel_info_request",
            json!({}),
            json!({}),
            vec![],
        );
        client.send(sock, &m);
        let r = client.reply_to(sock, &msg_id(&m), DEADLINE);
        assert_eq!(msg_type(&r), "kernel_info_reply");
        assert_eq!(content(&r)["implementation"], "test-impl");
    }
}

#[test]
fn shutdown_replies_on_control_and_iopub_then_stops_the_executor() {
    let ctl = TestController::start();
    let (client, mut e) = started(&ctl, None);
    let m = client.msg(
        vec![fr(e.rt.uuid.as_bytes())],
        mt::SHUTDOWN_REQUEST,
        json!({}),
        json!({"restart": false}),
        vec![],
    );
    client.send(&client.control, &m);
    let r = client.reply_to(&client.control, &msg_id(&m), DEADLINE);
    assert_eq!(msg_type(&r), mt::SHUTDOWN_REPLY);
    assert_eq!(content(&r), json!({"status": "ok", "restart": false}));
    let id = msg_id(&m);
    let seen = iopub_until(&client, |t, _, p| t == mt::SHUTDOWN_REPLY && p == id);
    assert_eq!(
        seen.last().unwrap().0,
        format!("engine.{}.shutdown", e.rt.id)
    );
    assert!(e.wait_done(DEADLINE), "executor loop did not stop");
    // the Hub unregisters the engine on seeing the IOPub shutdown_reply
    assert!(client
        .wait_notification(mt::UNREGISTRATION_NOTIFICATION, &e.rt.uuid, DEADLINE)
        .is_some());
}

#[test]
fn bad_signatures_and_garbage_are_dropped() {
    let ctl = TestController::start();
    let (client, e) = started(&ctl, None);
    let mut bad = apply(&client, &e, json!({"op": "echo"}));
    bad.signature = fr(b"0000000000000000000000000000000000000000000000000000000000000000");
    client.send(&client.mux, &bad);
    let mut bad_control = client.msg(
        vec![fr(e.rt.uuid.as_bytes())],
        mt::SHUTDOWN_REQUEST,
        json!({}),
        json!({"restart": false}),
        vec![],
    );
    bad_control.signature = fr(b"nothex");
    client.send(&client.control, &bad_control);
    oxipp_wire::sockets::send_frames(&client.mux, [e.rt.uuid.as_bytes(), b"garbage"]).unwrap();
    let good = apply(&client, &e, json!({"op": "echo"}));
    client.send(&client.mux, &good);
    let r = client.reply_to(&client.mux, &msg_id(&good), DEADLINE);
    assert_eq!(content(&r)["status"], "ok");
    // the same signed bytes again: a replay, dropped like jupyter_client does
    client.send(&client.mux, &good);
    client.assert_quiet(&client.mux, "a replayed request must not run again");
    client.assert_quiet(
        &client.control,
        "a badly signed shutdown must not be answered",
    );
    assert_eq!(e.rt.queued(), 0);
}

#[test]
fn heartbeats_continue_while_the_executor_blocks() {
    // the controller declares an engine dead after 10 missed 100 ms pings; block for 3 s
    let ctl = TestController::start();
    let (client, e) = started(&ctl, None);
    let m = apply(&client, &e, json!({"op": "sleep", "ms": 3000}));
    client.send(&client.mux, &m);
    let r = client.reply_to(&client.mux, &msg_id(&m), Duration::from_secs(15));
    assert_eq!(content(&r)["status"], "ok");
    assert!(
        client
            .wait_notification(
                mt::UNREGISTRATION_NOTIFICATION,
                &e.rt.uuid,
                Duration::from_millis(300)
            )
            .is_none(),
        "engine was unregistered while busy"
    );
    assert_eq!(client.engines()[e.rt.id.to_string()], e.rt.uuid.as_str());
}

#[test]
fn stream_output_is_flushed_while_running_and_before_the_reply() {
    let ctl = TestController::start();
    let (client, e) = started(&ctl, None);
    let m = apply(&client, &e, json!({"op": "print", "ms": 1500}));
    client.send(&client.mux, &m);
    let id = msg_id(&m);
    // "early" must arrive while the request still runs (no reply yet)
    let seen = iopub_until(&client, |t, c, _| t == mt::STREAM && c["text"] == "early\n");
    let (topic, _, _, parent) = seen.last().unwrap();
    assert_eq!(topic, &format!("engine.{}.stdout", e.rt.id));
    assert_eq!(parent, &id);
    assert!(
        oxipp_wire::sockets::recv_frames(&client.mux, true).is_err(),
        "reply came before the first flush"
    );
    // "late" is written just before returning: published before the idle status
    let seen = iopub_until(&client, |t, c, p| {
        t == "status" && c["execution_state"] == "idle" && p == id
    });
    assert!(
        seen.iter()
            .any(|(_, t, c, _)| t == mt::STREAM && c["text"] == "late\n"),
        "late output missing before idle: {seen:?}"
    );
    client.reply_to(&client.mux, &id, DEADLINE);
}

#[test]
fn no_reply_types_and_clear() {
    let ctl = TestController::start();
    let (client, e) = started(&ctl, None);
    let m = apply(&client, &e, json!({"op": "none"}));
    client.send(&client.mux, &m);
    client.assert_quiet(&client.mux, "a request the executor does not answer");
    let id = msg_id(&m);
    iopub_until(&client, |t, c, p| {
        t == "status" && c["execution_state"] == "idle" && p == id
    });
    let c = client.msg(
        vec![fr(e.rt.uuid.as_bytes())],
        mt::CLEAR_REQUEST,
        json!({}),
        json!({}),
        vec![],
    );
    client.send(&client.control, &c);
    let r = client.reply_to(&client.control, &msg_id(&c), DEADLINE);
    assert_eq!(msg_type(&r), mt::CLEAR_REPLY);
    assert_eq!(content(&r)["status"], "ok");
}

#[test]
fn watchdog_stops_the_engine_when_the_controller_goes_away() {
    let mut ctl = TestController::start();
    let client = FakeClient::connect(&ctl);
    let text = std::fs::read_to_string(ctl.engine_file()).expect("engine file");
    let mut opts = Options::new(text);
    opts.exit_process = false;
    opts.max_heartbeat_misses = 2;
    let rt = Runtime::start(opts).expect("registration");
    client.wait_registered(std::slice::from_ref(&rt.uuid), DEADLINE);
    // pings keep coming: nothing happens for a while
    assert!(rt.next_request(Some(Duration::from_millis(2000))).is_none());
    ctl.stop(DEADLINE)
        .expect("controller stops")
        .expect("controller exits cleanly");
    // 3 checks of 600 ms without a ping, then a shutdown item
    let r = rt
        .next_request(Some(Duration::from_secs(5)))
        .expect("watchdog fired");
    assert_eq!(r.kind, oxipp_engine::Kind::Shutdown);
}

#[test]
fn signal_request_replies_like_the_stock_nanny() {
    let ctl = TestController::start();
    let (client, e) = started(&ctl, None);
    for (sig, status) in [
        (json!(0), "ok"),
        (json!("0"), "ok"),
        (json!("SIGNOPE"), "error"),
    ] {
        let m = client.msg(
            vec![fr(e.rt.uuid.as_bytes())],
            mt::SIGNAL_REQUEST,
            json!({}),
            json!({ "sig": sig }),
            vec![],
        );
        client.send(&client.control, &m);
        let r = client.reply_to(&client.control, &msg_id(&m), DEADLINE);
        assert_eq!(msg_type(&r), "_request", "stock nanny's reply type");
        assert_eq!(content(&r)["status"], status, "{sig}");
    }
}

/// A free local port (nothing listens on it once this returns).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address").port()
}

/// From `delay` on, listens on `port` and forwards each connection to local port `target`:
/// a controller socket that starts listening late.
fn late_proxy(port: u16, target: u16, delay: Duration) {
    use std::net::{Shutdown, TcpListener, TcpStream};
    fn pipe(mut from: TcpStream, mut to: TcpStream) {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
    }
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let l = TcpListener::bind(("127.0.0.1", port)).expect("the proxy's port");
        for c in l.incoming() {
            let Ok(a) = c else { return };
            let Ok(b) = TcpStream::connect(("127.0.0.1", target)) else {
                return;
            };
            let (a2, b2) = (a.try_clone().expect("clone"), b.try_clone().expect("clone"));
            std::thread::spawn(move || pipe(a, b2));
            std::thread::spawn(move || pipe(b, a2));
        }
    });
}

/// The engine's sockets connect to endpoints that refuse at first and retry (their
/// reconnect timers are due while nothing is readable): registration through a proxy that
/// listens after 300 ms, the shell's mux connection through one that listens after 1 s, while
/// the executor is already waiting for requests on the shell socket.
#[test]
fn sockets_connect_to_endpoints_that_listen_late() {
    let ctl = TestController::start();
    let client = FakeClient::connect(&ctl);
    let text = std::fs::read_to_string(ctl.engine_file()).expect("engine file");
    let mut v: Value = serde_json::from_str(&text).expect("engine file JSON");
    let (reg, mux) = (free_port(), free_port());
    let port = |k: &str| v[k].as_u64().expect("port") as u16;
    late_proxy(reg, port("registration"), Duration::from_millis(300));
    late_proxy(mux, port("mux"), Duration::from_millis(1000));
    v["registration"] = json!(reg);
    v["mux"] = json!(mux);
    let t0 = Instant::now();
    let e = Engine::start_text(v.to_string(), None);
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "registered via the proxy"
    );
    client.wait_registered(std::slice::from_ref(&e.rt.uuid), DEADLINE);
    // the controller drops what it routes to an engine not connected to it yet
    std::thread::sleep(Duration::from_millis(1500).saturating_sub(t0.elapsed()));
    let m = apply(&client, &e, json!({"op": "echo"}));
    client.send(&client.mux, &m);
    let r = client.reply_to(&client.mux, &msg_id(&m), DEADLINE);
    assert_eq!(content(&r), json!({"status": "ok"}));
}

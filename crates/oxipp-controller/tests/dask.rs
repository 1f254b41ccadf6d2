//! `become_dask_request` / `stop_distributed_request` over real sockets, with a real child
//! process: failures to start (no interpreter, an interpreter that exits, one that hangs, no
//! `distributed`) become wrapped-exception replies and never stop the Hub; with `distributed`
//! installed, one scheduler is started, shared, reachable over TCP and killed on stop and on
//! controller exit.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use oxipp_wire::msg_types as mt;
use oxipp_wire::Message;
use serde_json::{json, Value};

/// Generous: a cold `import distributed` on a busy 2-core machine takes several seconds.
const START: Duration = Duration::from_secs(40);

fn controller_with_python(python: &str, extra: &[&str]) -> TestController {
    let mut args = vec![format!("--IPController.dask_python={python}")];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    TestController::start_with(&refs)
}

/// Sends a query without waiting; its msg_id.
fn send_query(client: &FakeClient, msg_type: &str, content: Value) -> String {
    let m = client.msg(vec![], msg_type, json!({}), content, vec![]);
    client.send(&client.query, &m);
    msg_id(&m)
}

fn become_dask(client: &FakeClient, timeout: Duration) -> Message {
    let id = send_query(
        client,
        mt::BECOME_DASK_REQUEST,
        json!({"scheduler_args": {}}),
    );
    client.reply_to(&client.query, &id, timeout)
}

/// An executable shell script in a fresh directory (the directory is returned too).
fn script(body: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(unique("oxipp-dask-test"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("fake-python");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (dir, path)
}

fn assert_hub_error(m: &Message, ename: &str) -> String {
    assert_eq!(msg_type(m), mt::HUB_ERROR, "{}", content(m));
    let c = content(m);
    assert_error(&c, ename);
    c["evalue"].as_str().unwrap_or_default().to_string()
}

fn process_alive(pid: u32) -> bool {
    // reaped children vanish from /proc; a zombie would still count as alive here
    Path::new(&format!("/proc/{pid}")).exists()
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn accepts(port: u64) -> bool {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

#[test]
fn missing_interpreter_gets_an_error_reply() {
    let ctl = controller_with_python("/nonexistent/oxipp-test-python", &[]);
    let client = FakeClient::connect(&ctl);
    let r = become_dask(&client, DEADLINE);
    let evalue = assert_hub_error(&r, "FileNotFoundError");
    assert!(
        evalue.contains("/nonexistent/oxipp-test-python"),
        "{evalue}"
    );
    // stopping with nothing running is fine, and the Hub still answers
    let r = client.query(mt::STOP_DISTRIBUTED_REQUEST, json!({}));
    assert_eq!(msg_type(&r), mt::STOP_DISTRIBUTED_REPLY);
    assert_eq!(content(&r), json!({"status": "ok"}));
    assert_eq!(client.engines(), json!({}));
}

#[test]
fn interpreter_that_exits_gets_an_error_reply_with_its_stderr() {
    let (dir, py) = script("echo 'no dask here' >&2\nexit 1");
    let ctl = controller_with_python(&py.display().to_string(), &[]);
    let client = FakeClient::connect(&ctl);
    for _ in 0..2 {
        // a failed start leaves nothing behind: the next request tries again
        let r = become_dask(&client, DEADLINE);
        let evalue = assert_hub_error(&r, "RuntimeError");
        assert!(evalue.contains("exit status: 1"), "{evalue}");
        assert!(evalue.contains("no dask here"), "{evalue}");
    }
    assert_eq!(client.engines(), json!({}));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_scheduler_args_get_an_error_reply() {
    let ctl = controller_with_python("/nonexistent/oxipp-test-python", &[]);
    let client = FakeClient::connect(&ctl);
    let id = send_query(
        &client,
        mt::BECOME_DASK_REQUEST,
        json!({"scheduler_args": [1]}),
    );
    let r = client.reply_to(&client.query, &id, DEADLINE);
    assert_hub_error(&r, "TypeError");
}

#[test]
fn a_hanging_start_times_out_is_killed_and_does_not_block_the_hub() {
    let (dir, py) = script("echo $$ > \"$(dirname \"$0\")/pid\"\nexec sleep 60");
    let ctl = controller_with_python(
        &py.display().to_string(),
        &["--IPController.dask_start_timeout=1.5"],
    );
    let client = FakeClient::connect(&ctl);
    let started = Instant::now();
    let dask_id = send_query(&client, mt::BECOME_DASK_REQUEST, json!({}));
    // the Hub keeps answering while the scheduler starts
    let conn_id = send_query(&client, mt::CONNECTION_REQUEST, json!({}));
    let r = client.reply_to(&client.query, &conn_id, DEADLINE);
    assert_eq!(msg_type(&r), mt::CONNECTION_REPLY);
    assert!(started.elapsed() < Duration::from_millis(1000));
    let pid_file = dir.join("pid");
    wait_until("the fake python wrote its pid", DEADLINE, || {
        std::fs::read_to_string(&pid_file).is_ok_and(|s| s.trim().parse::<u32>().is_ok())
    });
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("pid")
        .trim()
        .parse()
        .expect("pid number");
    assert!(process_alive(pid));

    let r = client.reply_to(&client.query, &dask_id, DEADLINE);
    let evalue = assert_hub_error(&r, "TimeoutError");
    assert!(evalue.contains("1.5 s"), "{evalue}");
    assert!(started.elapsed() >= Duration::from_millis(1400));
    assert!(
        !process_alive(pid),
        "the hanging scheduler process was not killed"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A Python with `distributed`, or None (the success tests then only say they were skipped).
fn python_with_distributed() -> Option<String> {
    let repo_venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    let candidates = [
        std::env::var("OXIPP_PYTHON").ok(),
        Some(repo_venv.display().to_string()),
        Some("python3".into()),
    ];
    candidates.into_iter().flatten().find(|p| {
        Command::new(p)
            .args(["-c", "import distributed"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// A Python *without* `distributed`, or None.
fn python_without_distributed() -> Option<String> {
    ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .args(["-c", "import distributed"])
                .output()
                .is_ok_and(|o| !o.status.success() && o.status.code() == Some(1))
        })
        .map(str::to_string)
}

#[test]
fn python_without_distributed_gets_the_import_error() {
    let Some(py) = python_without_distributed() else {
        eprintln!("skipped: every python3 here has distributed");
        return;
    };
    let ctl = controller_with_python(&py, &[]);
    let client = FakeClient::connect(&ctl);
    let r = become_dask(&client, START);
    let evalue = assert_hub_error(&r, "ModuleNotFoundError");
    assert!(evalue.contains("distributed"), "{evalue}");
    let tb = content(&r)["traceback"].clone();
    assert!(
        tb.as_array().is_some_and(|a| a.len() > 1),
        "the child's traceback is passed on: {tb}"
    );
}

#[test]
fn one_shared_scheduler_reachable_over_tcp_and_killed_on_stop_and_exit() {
    let Some(py) = python_with_distributed() else {
        eprintln!("skipped: no python with distributed");
        return;
    };
    let mut ctl = controller_with_python(&py, &[]);
    let client = FakeClient::connect(&ctl);

    // two requests while it starts: both get the one scheduler
    let a = send_query(
        &client,
        mt::BECOME_DASK_REQUEST,
        json!({"scheduler_args": {}}),
    );
    let b = send_query(&client, mt::BECOME_DASK_REQUEST, json!({}));
    let mut replies = Vec::new();
    for _ in 0..2 {
        let m = client
            .recv(&client.query, START)
            .expect("become_dask_reply");
        replies.push(m);
    }
    let mut parents: Vec<String> = replies.iter().map(parent_id).collect();
    parents.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(parents, want);
    for r in &replies {
        assert_eq!(msg_type(r), mt::BECOME_DASK_REPLY, "{}", content(r));
    }
    let c = content(&replies[0]);
    assert_eq!(c, content(&replies[1]));
    assert_eq!(c["status"], "ok");
    assert_eq!(c["ip"], "127.0.0.1");
    let port = c["port"].as_u64().expect("port");
    assert_eq!(c["address"], format!("tcp://127.0.0.1:{port}"));
    assert!(accepts(port), "nothing listens at {}", c["address"]);

    // a later request reuses it
    let again = become_dask(&client, DEADLINE);
    assert_eq!(content(&again), c);

    // stop kills it; stopping twice is fine
    for _ in 0..2 {
        let r = client.query(mt::STOP_DISTRIBUTED_REQUEST, json!({}));
        assert_eq!(msg_type(&r), mt::STOP_DISTRIBUTED_REPLY);
        assert_eq!(content(&r), json!({"status": "ok"}));
    }
    wait_until("the stopped scheduler's port closes", DEADLINE, || {
        !accepts(port)
    });

    // stop while starting: the pending request fails, and nothing is left running
    let pending = send_query(&client, mt::BECOME_DASK_REQUEST, json!({}));
    let r = client.query(mt::STOP_DISTRIBUTED_REQUEST, json!({}));
    assert_eq!(content(&r), json!({"status": "ok"}));
    let r = client.reply_to(&client.query, &pending, START);
    let evalue = assert_hub_error(&r, "RuntimeError");
    let port2: u64 = evalue
        .split("tcp://127.0.0.1:")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no address in {evalue}"));
    wait_until(
        "the scheduler stopped while starting is gone",
        DEADLINE,
        || !accepts(port2),
    );

    // a fresh start after all that works, and the controller's exit takes it down
    let r = become_dask(&client, START);
    assert_eq!(msg_type(&r), mt::BECOME_DASK_REPLY, "{}", content(&r));
    let port3 = content(&r)["port"].as_u64().expect("port");
    assert!(accepts(port3));
    assert!(ctl.stop(DEADLINE).is_some(), "controller did not stop");
    wait_until(
        "the controller's exit kills the scheduler",
        DEADLINE,
        || !accepts(port3),
    );
}

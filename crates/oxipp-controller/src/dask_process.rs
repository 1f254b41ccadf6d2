//! The dask.distributed scheduler as a child process.
//!
//! Stock ipyparallel's Hub is Python and creates `distributed.Scheduler` in its own event loop.
//! Ours is Rust, so a Python interpreter runs the scheduler instead ([`SCRIPT`]) and reports its
//! address as one tagged JSON line on stdout. Reading that line blocks, so a helper thread does
//! it and hands the outcome over a channel the controller polls: the Hub's loop never waits for
//! the 1-3 s a scheduler takes to start.
//!
//! The child's stdin is a pipe nobody writes to; the script ends when it reads EOF there, so the
//! scheduler goes away with the controller even when the controller is SIGKILLed.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};

use oxipp_wire::errors::error_content;
use serde_json::{Map, Value};

/// Marks the one stdout line the script reports on.
const TAG: &str = "OXIPP_DASK ";
/// Lines of the child's stderr kept to explain a failed start.
const STDERR_TAIL: usize = 20;

/// Runs `distributed.Scheduler(**json.loads(argv[1]))` until stdin closes. It reports
/// `{"ip", "address", "port"}` once listening, or `{"ename", "evalue", "traceback"}` if
/// anything (the import included) fails.
pub const SCRIPT: &str = r#"
import asyncio, json, sys, threading, traceback

def report(**fields):
    sys.stdout.write("OXIPP_DASK " + json.dumps(fields) + "\n")
    sys.stdout.flush()

async def serve(kwargs):
    loop = asyncio.get_running_loop()
    parent_gone = asyncio.Event()

    def watch_parent():
        while sys.stdin.buffer.read(4096):
            pass
        loop.call_soon_threadsafe(parent_gone.set)

    threading.Thread(target=watch_parent, daemon=True).start()
    from distributed import Scheduler

    scheduler = Scheduler(**kwargs)
    await scheduler.start()
    report(ip=scheduler.ip, address=scheduler.address, port=scheduler.port)
    await parent_gone.wait()
    await scheduler.close()

try:
    asyncio.run(serve(json.loads(sys.argv[1])))
except BaseException as e:
    report(ename=type(e).__name__, evalue=str(e),
           traceback=traceback.format_exception(type(e), e, e.__traceback__))
    sys.exit(1)
"#;

/// Where a running scheduler listens: the content of a `become_dask_reply`.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerAddr {
    pub ip: String,
    pub address: String,
    pub port: u64,
}

/// Why a scheduler could not be started, as the Python exception the client will raise.
#[derive(Debug, Clone, PartialEq)]
pub struct StartError {
    pub ename: String,
    pub evalue: String,
    /// The child's own traceback, when it got far enough to print one.
    pub traceback: Vec<String>,
}

impl StartError {
    pub fn new(ename: &str, evalue: String) -> Self {
        StartError {
            ename: ename.into(),
            evalue,
            traceback: Vec::new(),
        }
    }

    /// Wrapped-exception content, like every other Hub error (`engine_info: {}`).
    pub fn content(&self) -> Value {
        let mut c = error_content(&self.ename, &self.evalue);
        if !self.traceback.is_empty() {
            c["traceback"] = Value::from(self.traceback.clone());
        }
        c
    }
}

/// What the reader thread found on the child's stdout.
#[derive(Debug)]
pub enum Report {
    Listening(SchedulerAddr),
    Failed(StartError),
    /// stdout closed without a report (not Python, crashed, killed); the stderr tail.
    Vanished(String),
}

/// The interpreter for the scheduler: the configured one, else the one engines get
/// ([`oxipp_wire::interpreter::default_python`]).
pub fn python(configured: Option<&str>) -> String {
    match configured.filter(|p| !p.is_empty()) {
        Some(p) => p.to_string(),
        None => oxipp_wire::interpreter::default_python(),
    }
}

/// Fills in our defaults: loopback unless an address is given (`ip` is accepted as stock
/// clients' spelling of `host`), a random port, and no dashboard (its HTTP server, which
/// `distributed` starts regardless, goes on a random loopback port instead of 8787).
pub fn scheduler_kwargs(
    args: &Map<String, Value>,
    default_host: Option<&str>,
) -> Map<String, Value> {
    let mut kw = args.clone();
    if let Some(ip) = kw.remove("ip") {
        kw.entry("host").or_insert(ip);
    }
    if !kw.contains_key("host") && !kw.contains_key("interface") {
        if let Some(h) = default_host {
            kw.insert("host".into(), Value::from(h));
        }
    }
    kw.entry("port").or_insert(Value::from(0));
    if !kw.contains_key("dashboard") && !kw.contains_key("dashboard_address") {
        kw.insert("dashboard".into(), Value::Bool(false));
        kw.insert("dashboard_address".into(), Value::from("127.0.0.1:0"));
    }
    kw
}

/// A scheduler child process; killed (and reaped) when dropped.
pub struct SchedulerProcess {
    child: Child,
    /// Held open only so the child sees EOF when we go away.
    _stdin: Option<ChildStdin>,
}

impl SchedulerProcess {
    /// Starts `python -c SCRIPT kwargs`; the receiver gets one [`Report`].
    pub fn spawn(
        python: &str,
        kwargs: &Map<String, Value>,
    ) -> Result<(SchedulerProcess, Receiver<Report>), StartError> {
        let mut child = Command::new(python)
            .arg("-c")
            .arg(SCRIPT)
            .arg(Value::Object(kwargs.clone()).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                let ename = match e.kind() {
                    std::io::ErrorKind::NotFound => "FileNotFoundError",
                    std::io::ErrorKind::PermissionDenied => "PermissionError",
                    _ => "OSError",
                };
                StartError::new(
                    ename,
                    format!("cannot run {python:?} for the dask.distributed scheduler: {e}"),
                )
            })?;
        let stdin = child.stdin.take();
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(StartError::new(
                "OSError",
                "no pipes to the scheduler".into(),
            ));
        };
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let tail2 = Arc::clone(&tail);
        let pid = child.id();
        let err_thread = std::thread::Builder::new()
            .name("dask-stderr".into())
            .spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    tracing::debug!("dask scheduler {pid}: {line}");
                    let mut t = tail2.lock().unwrap_or_else(|p| p.into_inner());
                    if t.len() == STDERR_TAIL {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            });
        let (tx, rx) = mpsc::channel();
        let out_thread = std::thread::Builder::new()
            .name("dask-stdout".into())
            .spawn(move || {
                let mut lines = BufReader::new(stdout).lines();
                let mut report = None;
                for line in lines.by_ref() {
                    let Ok(line) = line else { break };
                    if let Some(json) = line.strip_prefix(TAG) {
                        report = Some(parse_report(json));
                        break;
                    }
                }
                let report = match report {
                    Some(r) => r,
                    None => {
                        // The child is gone: let stderr drain so the tail is complete.
                        if let Ok(t) = err_thread {
                            let _ = t.join();
                        }
                        let t = tail.lock().unwrap_or_else(|p| p.into_inner());
                        Report::Vanished(t.iter().cloned().collect::<Vec<_>>().join("\n"))
                    }
                };
                let _ = tx.send(report);
                // Keep the pipe drained for as long as the scheduler lives.
                for line in lines {
                    if line.is_err() {
                        break;
                    }
                }
            });
        let mut proc = SchedulerProcess {
            child,
            _stdin: stdin,
        };
        if let Err(e) = out_thread {
            proc.kill();
            return Err(StartError::new(
                "OSError",
                format!("cannot start a thread: {e}"),
            ));
        }
        Ok((proc, rx))
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (it is reaped if so).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills and reaps the process; its exit status in words (for error messages).
    pub fn kill(&mut self) -> String {
        // A process that already exited is a zombie until reaped: the signal does nothing to
        // it, and `wait` still returns its own status.
        let _ = self.child.kill();
        match self.child.wait() {
            Ok(s) => s.to_string(),
            Err(e) => format!("unknown status ({e})"),
        }
    }
}

impl Drop for SchedulerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn parse_report(json: &str) -> Report {
    let v: Value = match serde_json::from_str(json) {
        Ok(v) => v,
        Err(e) => {
            return Report::Failed(StartError::new(
                "ValueError",
                format!("unreadable report from the dask scheduler process: {e}: {json}"),
            ))
        }
    };
    let text = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    if let Some(address) = v.get("address").and_then(Value::as_str) {
        return Report::Listening(SchedulerAddr {
            ip: text("ip"),
            address: address.to_string(),
            port: v.get("port").and_then(Value::as_u64).unwrap_or(0),
        });
    }
    let traceback = v
        .get("traceback")
        .and_then(Value::as_array)
        .map(|a| crate::queries::strings(a))
        .unwrap_or_default();
    let ename = text("ename");
    Report::Failed(StartError {
        ename: if ename.is_empty() {
            "RuntimeError".into()
        } else {
            ename
        },
        evalue: text("evalue"),
        traceback,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn defaults_fill_only_what_is_missing() {
        let kw = scheduler_kwargs(&Map::new(), Some("127.0.0.1"));
        assert_eq!(
            Value::Object(kw),
            json!({"host": "127.0.0.1", "port": 0, "dashboard": false,
                   "dashboard_address": "127.0.0.1:0"})
        );
        let kw = scheduler_kwargs(
            &map(json!({"ip": "10.0.0.1", "port": 8786})),
            Some("127.0.0.1"),
        );
        assert_eq!(kw["host"], "10.0.0.1");
        assert_eq!(kw["port"], 8786);
        assert!(!kw.contains_key("ip"));
        let kw = scheduler_kwargs(&map(json!({"dashboard_address": ":8787"})), None);
        assert!(!kw.contains_key("host"));
        assert!(!kw.contains_key("dashboard"));
        let kw = scheduler_kwargs(&map(json!({"interface": "lo"})), Some("127.0.0.1"));
        assert!(!kw.contains_key("host"));
    }

    #[test]
    fn reports_parse() {
        match parse_report(r#"{"ip": "127.0.0.1", "address": "tcp://127.0.0.1:5", "port": 5}"#) {
            Report::Listening(a) => assert_eq!(a.address, "tcp://127.0.0.1:5"),
            other => panic!("{other:?}"),
        }
        match parse_report(r#"{"ename": "ModuleNotFoundError", "evalue": "x", "traceback": ["a"]}"#)
        {
            Report::Failed(e) => {
                let c = e.content();
                assert_eq!(c["ename"], "ModuleNotFoundError");
                assert_eq!(c["traceback"], json!(["a"]));
                assert_eq!(c["engine_info"], json!({}));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_report("{"), Report::Failed(_)));
    }

    #[test]
    fn configured_python_wins() {
        assert_eq!(python(Some("/opt/py")), "/opt/py");
    }

    #[test]
    fn missing_interpreter_is_an_error_not_a_panic() {
        let err = SchedulerProcess::spawn("/nonexistent/oxipp-python", &Map::new())
            .err()
            .expect("spawn must fail");
        assert_eq!(err.ename, "FileNotFoundError");
    }
}

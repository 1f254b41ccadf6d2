//! `oxipp._oxipp.EngineRuntime` and `Request`: the Python face of the `oxipp-engine` runtime
//! (section 1 of docs/engine-runtime.md).
//!
//! Every call that can block (registration, waiting for a request) runs inside `py.detach`, so
//! the GIL is free for the runtime's own needs and for other Python threads. `next_request`
//! waits in slices of at most 100 ms and calls `check_signals` between them with the GIL held:
//! without that a Python SIGINT/SIGTERM handler would not run while the engine is idle.

use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use oxipp_engine::{EngineError, Options, Request, Runtime};
use pyo3::exceptions::{PyConnectionError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::sendbuf::frames;

/// The longest the GIL is released in one go while waiting for a request.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

fn to_py(e: EngineError) -> PyErr {
    match e {
        EngineError::Timeout(_) => PyTimeoutError::new_err(e.to_string()),
        EngineError::Refused(_) | EngineError::Zmq(_) | EngineError::Io(_) => {
            PyConnectionError::new_err(e.to_string())
        }
        EngineError::Config(_) | EngineError::Invalid(_) => PyValueError::new_err(e.to_string()),
    }
}

/// Rust logs go to stderr (the original fd 2 when fds are captured) at the Python logging level the engine was started with. Only the
/// first runtime in a process sets this up (a global subscriber can be installed once).
fn init_logging(level: i32) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let max = match level {
            i32::MIN..=10 => tracing::Level::DEBUG,
            11..=20 => tracing::Level::INFO,
            21..=30 => tracing::Level::WARN,
            _ => tracing::Level::ERROR,
        };
        let _ = tracing_subscriber::fmt()
            .with_max_level(max)
            // fd 2 itself may be captured into IOPub: logs go to its original
            .with_writer(|| oxipp_engine::LogWriter)
            .with_target(false)
            .try_init();
    });
}

/// Sends `unregistration_request` for engine `id` to the controller in `connection_json`
/// (an engine's connection info), waiting at most 1 s for it to be written: the nanny's
/// report of its engine's exit.
#[pyfunction]
pub fn unregister_engine(py: Python<'_>, connection_json: String, id: u32) -> PyResult<()> {
    py.detach(move || oxipp_engine::registration::unregister_engine(&connection_json, id))
        .map_err(to_py)
}

/// One request from the controller (read-only).
#[pyclass(frozen, module = "oxipp._oxipp", name = "Request")]
pub struct PyRequest {
    inner: Arc<Request>,
}

#[pymethods]
impl PyRequest {
    /// "shell" | "clear" | "shutdown"
    #[getter]
    fn kind(&self) -> &'static str {
        self.inner.kind.as_str()
    }
    #[getter]
    fn msg_type(&self) -> &str {
        &self.inner.msg_type
    }
    #[getter]
    fn msg_id(&self) -> &str {
        &self.inner.msg_id
    }
    #[getter]
    fn header<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.header)
    }
    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.metadata)
    }
    #[getter]
    fn content<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.content)
    }
    #[getter]
    fn buffers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items = self
            .inner
            .buffers
            .iter()
            .map(|b| crate::frame::frame_object(py, b))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }
    #[getter]
    fn is_broadcast(&self) -> bool {
        self.inner.is_broadcast
    }
    #[getter]
    fn is_coalescing(&self) -> bool {
        self.inner.is_coalescing
    }
    fn __repr__(&self) -> String {
        format!(
            "<Request {} {} {}>",
            self.inner.kind.as_str(),
            self.inner.msg_type,
            self.inner.msg_id
        )
    }
}

/// A registered engine: sockets, heartbeat and control run in Rust threads.
#[pyclass(frozen, module = "oxipp._oxipp", name = "EngineRuntime")]
pub struct PyEngineRuntime {
    rt: Arc<Runtime>,
}

#[pymethods]
impl PyEngineRuntime {
    #[new]
    #[pyo3(signature = (connection_json, requested_id=None, timeout=5.0, max_heartbeat_misses=50, log_level=30, capture_fd=false))]
    fn new(
        py: Python<'_>,
        connection_json: String,
        requested_id: Option<u32>,
        timeout: f64,
        max_heartbeat_misses: u32,
        log_level: i32,
        capture_fd: bool,
    ) -> PyResult<Self> {
        init_logging(log_level);
        if !timeout.is_finite() || timeout < 0.0 {
            return Err(PyValueError::new_err(
                "timeout must be a non-negative number",
            ));
        }
        let mut opts = Options::new(connection_json);
        opts.requested_id = requested_id;
        opts.timeout = Duration::from_secs_f64(timeout);
        opts.max_heartbeat_misses = max_heartbeat_misses;
        opts.capture_fds = capture_fd;
        let rt = py.detach(move || Runtime::start(opts)).map_err(to_py)?;
        Ok(PyEngineRuntime { rt: Arc::new(rt) })
    }

    #[getter]
    fn id(&self) -> u32 {
        self.rt.id
    }
    /// Whether the controller would notice this engine's death only by missed heartbeats
    /// (a stock controller): then a nanny process should report it.
    #[getter]
    fn needs_nanny(&self) -> bool {
        self.rt.needs_nanny
    }
    #[getter]
    fn uuid(&self) -> &str {
        &self.rt.uuid
    }
    /// Heartbeat period in seconds.
    #[getter]
    fn hb_period(&self) -> f64 {
        self.rt.hb_period.as_secs_f64()
    }
    #[getter]
    fn connection_json(&self) -> &str {
        &self.rt.connection_json
    }
    /// `(stdout_fd, stderr_fd)`: duplicates of the original fds 1 and 2 while those are
    /// captured (`capture_fd=True`), for the engine's own output and logs; else `None`.
    #[getter]
    fn original_fds(&self) -> Option<(i32, i32)> {
        self.rt.original_fds()
    }

    /// The next request, or `None` after `timeout` seconds (`None` = wait forever). Python
    /// signal handlers run while waiting (a KeyboardInterrupt raised by one propagates).
    #[pyo3(signature = (timeout=None))]
    fn next_request(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<PyRequest>> {
        let deadline = timeout
            .filter(|t| t.is_finite())
            .map(|t| Instant::now() + Duration::from_secs_f64(t.max(0.0)));
        loop {
            let slice = match deadline {
                Some(d) => d
                    .saturating_duration_since(Instant::now())
                    .min(SIGNAL_CHECK),
                None => SIGNAL_CHECK,
            };
            let rt = self.rt.clone();
            if let Some(r) = py.detach(move || rt.next_request(Some(slice))) {
                return Ok(Some(PyRequest { inner: r }));
            }
            py.check_signals()?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
        }
    }

    /// Sends `<type>_reply` to `req` (after its buffered output), then status idle.
    #[pyo3(signature = (req, content_json, buffers=None, status="ok", dependencies_met=true))]
    fn reply(
        &self,
        py: Python<'_>,
        req: PyRef<'_, PyRequest>,
        content_json: &str,
        buffers: Option<Bound<'_, PyAny>>,
        status: &str,
        dependencies_met: bool,
    ) -> PyResult<()> {
        let bufs = frames(buffers.as_ref(), None)?;
        let r = req.inner.clone();
        let content = content_json.to_string();
        let status = status.to_string();
        py.detach(|| self.rt.reply(&r, &content, bufs, &status, dependencies_met))
            .map_err(to_py)
    }

    /// Publishes an IOPub message (topic `engine.<id>.<kind>` unless `topic` is given).
    #[pyo3(signature = (msg_type, content_json, parent=None, topic=None, buffers=None))]
    fn publish(
        &self,
        py: Python<'_>,
        msg_type: &str,
        content_json: &str,
        parent: Option<PyRef<'_, PyRequest>>,
        topic: Option<&str>,
        buffers: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let bufs = frames(buffers.as_ref(), None)?;
        let parent = parent.map(|p| p.inner.clone());
        let (msg_type, content, topic) = (
            msg_type.to_string(),
            content_json.to_string(),
            topic.map(str::to_string),
        );
        py.detach(|| {
            self.rt.publish(
                &msg_type,
                &content,
                parent.as_deref(),
                topic.as_deref(),
                bufs,
            )
        })
        .map_err(to_py)
    }

    /// Buffers stream text; published every 50 ms and before the request's reply.
    #[pyo3(signature = (name, text, parent=None))]
    fn stream(&self, name: &str, text: &str, parent: Option<PyRef<'_, PyRequest>>) -> PyResult<()> {
        if name != "stdout" && name != "stderr" {
            return Err(PyValueError::new_err(format!(
                "stream name must be 'stdout' or 'stderr', not {name:?}"
            )));
        }
        self.rt
            .stream(name, text, parent.as_ref().map(|p| &*p.inner));
        Ok(())
    }

    /// Answers every queued shell request with status aborted.
    fn abort_queued(&self) {
        self.rt.abort_queued();
    }

    /// Sets the content of kernel_info_reply (a JSON object).
    fn set_kernel_info(&self, json: &str) -> PyResult<()> {
        self.rt.set_kernel_info(json).map_err(to_py)
    }

    /// Opens Jupyter kernel sockets on `ip` (bind_kernel); returns their ports as a dict
    /// (shell_port, iopub_port, stdin_port, control_port, hb_port). Idempotent.
    #[pyo3(signature = (ip = "127.0.0.1"))]
    fn bind_kernel<'py>(&self, py: Python<'py>, ip: &str) -> PyResult<Bound<'py, PyDict>> {
        let ports = py.detach(|| self.rt.bind_kernel(ip)).map_err(to_py)?;
        let d = PyDict::new(py);
        d.set_item("shell_port", ports.shell)?;
        d.set_item("iopub_port", ports.iopub)?;
        d.set_item("stdin_port", ports.stdin)?;
        d.set_item("control_port", ports.control)?;
        d.set_item("hb_port", ports.hb)?;
        Ok(d)
    }

    /// Unregisters and stops the runtime's threads. Idempotent.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.rt.close());
    }

    fn __repr__(&self) -> String {
        format!("<EngineRuntime id={} uuid={}>", self.rt.id, self.rt.uuid)
    }
}

/// The profile directory stock ipyparallel would use (`--profile-dir`, `$IPP_PROFILE_DIR`,
/// `<ipython_dir>/profile_<name>`), shared with the controller so both agree.
#[pyfunction]
#[pyo3(signature = (profile=None, profile_dir=None, ipython_dir=None))]
pub fn resolve_profile_dir(
    profile: Option<String>,
    profile_dir: Option<String>,
    ipython_dir: Option<String>,
) -> String {
    let args = oxipp_wire::profile::ProfileArgs {
        profile,
        profile_dir: profile_dir.filter(|s| !s.is_empty()).map(Into::into),
        ipython_dir: ipython_dir.filter(|s| !s.is_empty()).map(Into::into),
    };
    oxipp_wire::profile::resolve(&args).display().to_string()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyEngineRuntime>()?;
    m.add_class::<PyRequest>()?;
    m.add_function(wrap_pyfunction!(resolve_profile_dir, m)?)?;
    m.add_function(wrap_pyfunction!(unregister_engine, m)?)?;
    // what `--version` prints: stock tooling checks for the ipyparallel version
    m.add("COMPAT_VERSION", oxipp_wire::COMPAT_VERSION)?;
    Ok(())
}

//! `oxipp._oxipp.ClientCore`: the Python face of the `oxipp-client` core.
//!
//! Python builds message content and pickles user objects; this signs, sends and receives. Waiting
//! for events (`wait_events`) releases the GIL, so other threads run while one sleeps in Rust.

use std::time::Duration;

use oxipp_client::{Channel, ClientError, Core, Event, Wake};
use pyo3::exceptions::{PyConnectionError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::sendbuf::{frames, SendTracker};

fn to_py(e: ClientError) -> PyErr {
    match e {
        ClientError::Config(_) => PyValueError::new_err(e.to_string()),
        ClientError::Socket(_) | ClientError::Send(_) | ClientError::Closed => {
            PyConnectionError::new_err(e.to_string())
        }
    }
}

/// One connected client core (sockets and IO thread).
#[pyclass(frozen, module = "oxipp._oxipp", name = "ClientCore")]
pub struct PyClientCore {
    core: Core,
}

fn event_tuple<'py>(py: Python<'py>, e: Event) -> PyResult<Bound<'py, PyTuple>> {
    let idents = PyList::new(py, e.idents.iter().map(|b| PyBytes::new(py, b)))?;
    let buffers = e
        .buffers
        .iter()
        .map(|b| crate::frame::frame_object(py, b))
        .collect::<PyResult<Vec<_>>>()?;
    let buffers = PyList::new(py, buffers)?;
    (
        e.source.as_str(),
        e.msg_type,
        e.parent_id,
        idents,
        PyBytes::new(py, &e.header),
        PyBytes::new(py, &e.parent),
        PyBytes::new(py, &e.metadata),
        PyBytes::new(py, &e.content),
        buffers,
    )
        .into_pyobject(py)
}

fn event_list(py: Python<'_>, events: Vec<Event>) -> PyResult<Bound<'_, PyList>> {
    let items = events
        .into_iter()
        .map(|e| event_tuple(py, e))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

#[pymethods]
impl PyClientCore {
    #[new]
    fn new(py: Python<'_>, connection_json: String) -> PyResult<Self> {
        let core = py
            .detach(move || Core::connect(&connection_json))
            .map_err(to_py)?;
        Ok(PyClientCore { core })
    }

    /// This client's Session id (`header.session` of everything it sends).
    #[getter]
    fn session(&self) -> &str {
        &self.core.session.id
    }

    #[getter]
    fn username(&self) -> &str {
        &self.core.session.username
    }

    #[getter]
    fn task_scheme(&self) -> &str {
        &self.core.endpoints.task_scheme
    }

    /// `(msg_id, header_json_bytes)` for a new message of `msg_type`.
    fn new_header<'py>(&self, py: Python<'py>, msg_type: &str) -> (String, Bound<'py, PyBytes>) {
        let (id, h) = self.core.new_header(msg_type);
        (id, PyBytes::new(py, &h))
    }

    /// Signs and sends a message on `channel` (query, mux, task, control, broadcast).
    /// `flush=False` only queues it, for a later flushing send or `flush()`: a batch of
    /// messages goes out in a few writes. Big buffers are sent from their own memory (see
    /// `sendbuf`); `track=True` returns a `SendTracker` that is done once none is in use.
    #[pyo3(signature = (channel, header, content, metadata=None, buffers=None, ident=None, parent=None, flush=true, track=false))]
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        py: Python<'_>,
        channel: &str,
        header: &[u8],
        content: &[u8],
        metadata: Option<&[u8]>,
        buffers: Option<&Bound<'_, PyAny>>,
        ident: Option<&[u8]>,
        parent: Option<&[u8]>,
        flush: bool,
        track: bool,
    ) -> PyResult<Option<SendTracker>> {
        let ch = Channel::parse(channel)
            .ok_or_else(|| PyValueError::new_err(format!("unknown channel {channel:?}")))?;
        let (tracker, state) = if track {
            let (t, s) = SendTracker::new();
            (Some(t), Some(s))
        } else {
            (None, None)
        };
        let buffers = frames(buffers, state.as_ref())?;
        let (header, content) = (header.to_vec(), content.to_vec());
        let metadata = metadata.unwrap_or(b"{}").to_vec();
        let (parent, ident) = (parent.map(<[u8]>::to_vec), ident.map(<[u8]>::to_vec));
        // without the GIL: signing large messages, and waiting for the sockets while the IO
        // thread drains them, must not stop the client's other Python threads
        py.detach(|| {
            self.core.send(
                ch,
                ident.as_deref(),
                header,
                parent,
                metadata,
                content,
                buffers,
                flush,
            )
        })
        .map_err(to_py)?;
        Ok(tracker)
    }

    /// Writes every message that sends with `flush=False` queued.
    fn flush(&self, py: Python<'_>) {
        let core = &self.core;
        py.detach(|| core.flush());
    }

    /// Waits up to `timeout` seconds (None = forever) without taking events: as a thread
    /// blocked on a result (`foreground=True`, which then takes and handles the events
    /// itself; `seen` = the `generation` it read before checking its result) or as the
    /// dispatcher. Returns "ready", "timeout" or "closed".
    #[pyo3(signature = (foreground, timeout=None, seen=None))]
    fn wait_events(
        &self,
        py: Python<'_>,
        foreground: bool,
        timeout: Option<f64>,
        seen: Option<u64>,
    ) -> &'static str {
        let timeout = timeout
            .filter(|t| t.is_finite())
            .map(|t| Duration::from_secs_f64(t.max(0.0)));
        let core = &self.core;
        let wake = py.detach(|| {
            if foreground {
                core.wait_foreground(timeout, seen)
            } else {
                core.wait_background(timeout)
            }
        });
        match wake {
            Wake::Ready => "ready",
            Wake::TimedOut => "timeout",
            Wake::Closed => "closed",
        }
    }

    /// Up to `max` events without waiting, as tuples `(source, msg_type, parent_msg_id,
    /// idents, header, parent, metadata, content, buffers)`; None once closed and drained.
    #[pyo3(signature = (max=4096))]
    fn take_events<'py>(
        &self,
        py: Python<'py>,
        max: usize,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        match self.core.take_events(max) {
            None => Ok(None),
            Some(events) => event_list(py, events).map(Some),
        }
    }

    /// Marks a handled batch and wakes every foreground waiter (the events may have been
    /// another thread's).
    fn kick(&self) {
        self.core.kick()
    }

    /// How many batches were marked handled so far (see `wait_events`).
    #[getter]
    fn generation(&self) -> u64 {
        self.core.generation()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.core.is_closed()
    }

    /// Stops the IO thread after sending what is queued; `take_events` then returns None.
    fn close(&self, py: Python<'_>) {
        let core = &self.core;
        py.detach(|| core.close());
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyClientCore>()?;
    Ok(())
}

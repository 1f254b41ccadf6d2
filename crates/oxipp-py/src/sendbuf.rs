//! Python buffers as frames to send: big ones without a copy, and `SendTracker`, which says
//! when the core no longer reads them (`track=True`).
//!
//! Why: copying a 100 MB array into a frame costs its memcpy plus the first touch of 100 MB of
//! fresh pages (~70 ms per 100 MB on the VMs we measured), about as much again as sending it
//! over loopback. A buffer of at least [`ZERO_COPY_MIN`] bytes is therefore sent from the
//! object's own memory: the frame holds a private `memoryview` of it (for `bytes`, the object
//! itself), which keeps the exporter alive and its memory in place (a `bytearray` or numpy
//! array cannot be resized while a view exists), and is dropped once the frame is written.
//!
//! As with stock ipyparallel (pyzmq sends buffers above 64 KiB with `copy=False`), changing a
//! buffer in place before its message has been written changes what is sent; `track=True`
//! gives a tracker to wait on before doing that. Frames may be dropped on a thread without the
//! GIL (the IO thread, after writing): the view's reference is then released the next time a
//! thread returns to Python from the core (pyo3's deferred reference pool), so a sent buffer
//! stays alive until the client or engine next calls into Rust.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyTimeoutError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView};

/// Buffers at least this big are sent from their own memory; smaller ones are copied (a
/// copy is cheaper than pinning). The size of jupyter_client's `Session.copy_threshold`.
pub(crate) const ZERO_COPY_MIN: usize = 64 * 1024;

/// How many of a tracked message's buffers the core still reads.
#[derive(Default)]
pub(crate) struct TrackState {
    in_use: Mutex<usize>,
    released: Condvar,
}

impl TrackState {
    fn pin(&self) {
        *self.in_use.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    }

    fn unpin(&self) {
        let mut n = self.in_use.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.released.notify_all();
        }
    }

    fn done(&self) -> bool {
        *self.in_use.lock().unwrap_or_else(|p| p.into_inner()) == 0
    }

    /// Waits until every buffer is released or `timeout` passes (None: no limit).
    fn wait(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut n = self.in_use.lock().unwrap_or_else(|p| p.into_inner());
        while *n > 0 {
            n = match deadline {
                None => self.released.wait(n).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    self.released
                        .wait_timeout(n, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
        true
    }
}

/// Whether a tracked message's big buffers are still in use by the core (like pyzmq's
/// `MessageTracker`): `done` once they were written (or dropped with their connection), after
/// which the caller may change them in place. Buffers that were copied are never in use.
#[pyclass(frozen, module = "oxipp._oxipp", name = "SendTracker")]
pub struct SendTracker {
    state: Arc<TrackState>,
}

impl SendTracker {
    pub(crate) fn new() -> (Self, Arc<TrackState>) {
        let state = Arc::new(TrackState::default());
        (
            Self {
                state: Arc::clone(&state),
            },
            state,
        )
    }
}

#[pymethods]
impl SendTracker {
    /// True once no buffer of the message is in use.
    #[getter]
    fn done(&self) -> bool {
        self.state.done()
    }

    /// Waits until done; `timeout` in seconds (None or negative: no limit). Returns True, or
    /// raises TimeoutError when the timeout passes first.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let timeout = timeout
            .filter(|t| t.is_finite() && *t >= 0.0)
            .map(Duration::from_secs_f64);
        let state = &self.state;
        if py.detach(|| state.wait(timeout)) {
            Ok(true)
        } else {
            Err(PyTimeoutError::new_err("Still waiting to be sent"))
        }
    }

    fn __repr__(&self) -> String {
        format!("<SendTracker done={}>", self.state.done())
    }
}

/// A frame's bytes in a Python object's memory (see the module documentation).
struct Pinned {
    ptr: *const u8,
    len: usize,
    /// `bytes`, or a private memoryview holding the exporter's buffer.
    _owner: Py<PyAny>,
    track: Option<Arc<TrackState>>,
}

// SAFETY: the memory stays valid and in place while `_owner` lives (a `bytes` object never
// changes; a memoryview holds its exporter's buffer export, which forbids resizing), and
// `_owner` is only released, never used, off the GIL (a `Py` dropped without the GIL is
// queued for release). Concurrent in-place writes by the owner of the buffer are the
// documented caveat of zero-copy sending, as with pyzmq's `copy=False`.
#[allow(unsafe_code)]
unsafe impl Send for Pinned {}
#[allow(unsafe_code)]
unsafe impl Sync for Pinned {}

impl AsRef<[u8]> for Pinned {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr`/`len` describe the owner's buffer, valid while `self` lives (above).
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts(self.ptr, self.len)
        }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if let Some(t) = &self.track {
            t.unpin();
        }
    }
}

fn pinned(owner: Py<PyAny>, ptr: *const u8, len: usize, track: Option<&Arc<TrackState>>) -> Bytes {
    if let Some(t) = track {
        t.pin();
    }
    Bytes::from_owner(Pinned {
        ptr,
        len,
        _owner: owner,
        track: track.cloned(),
    })
}

/// Turns a Python sequence of bytes-like objects into frames. `bytes` and anything with a
/// C-contiguous buffer (memoryview, bytearray, numpy arrays, viewed as unsigned bytes) are
/// used as they are when big (see the module documentation), copied otherwise; objects
/// without such a buffer go through `bytes(obj)`. `track` counts the buffers used in place.
pub(crate) fn frames(
    buffers: Option<&Bound<'_, PyAny>>,
    track: Option<&Arc<TrackState>>,
) -> PyResult<Vec<Bytes>> {
    let Some(buffers) = buffers else {
        return Ok(vec![]);
    };
    let mut out = Vec::new();
    for item in buffers.try_iter()? {
        let item = item?;
        let frame = match item.cast::<PyBytes>() {
            Ok(b) => bytes_frame(b, track),
            Err(_) => match buffer_frame(&item, track) {
                Some(f) => f,
                None => {
                    let conv = item.py().get_type::<PyBytes>().call1((&item,))?;
                    bytes_frame(conv.cast::<PyBytes>()?, track)
                }
            },
        };
        out.push(frame);
    }
    Ok(out)
}

fn bytes_frame(b: &Bound<'_, PyBytes>, track: Option<&Arc<TrackState>>) -> Bytes {
    let data = b.as_bytes();
    if data.len() < ZERO_COPY_MIN {
        return Bytes::copy_from_slice(data);
    }
    pinned(
        b.clone().into_any().unbind(),
        data.as_ptr(),
        data.len(),
        track,
    )
}

/// The frame of `obj`'s buffer, or None when it has no C-contiguous one.
fn buffer_frame(obj: &Bound<'_, PyAny>, track: Option<&Arc<TrackState>>) -> Option<Bytes> {
    let as_u8 = |o: &Bound<'_, PyAny>| -> Option<Bytes> {
        let buf = PyBuffer::<u8>::get(o).ok()?;
        if !buf.is_c_contiguous() {
            return None;
        }
        if buf.len_bytes() < ZERO_COPY_MIN {
            return buf.to_vec(o.py()).ok().map(Bytes::from);
        }
        drop(buf);
        // the memoryview holds its own export of the buffer for as long as the frame lives
        let view = PyMemoryView::from(o).ok()?;
        let (ptr, len) = {
            let vbuf = PyBuffer::<u8>::get(view.as_any()).ok()?;
            (vbuf.buf_ptr() as *const u8, vbuf.len_bytes())
        };
        Some(pinned(view.into_any().unbind(), ptr, len, track))
    };
    if let Some(f) = as_u8(obj) {
        return Some(f);
    }
    // typed buffers (float64 arrays, ...): the same memory as unsigned bytes
    let view = obj
        .py()
        .get_type::<PyMemoryView>()
        .call1((obj,))
        .ok()?
        .call_method1("cast", ("B",))
        .ok()?;
    as_u8(&view)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SendTracker>()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tracker_is_done_when_its_last_buffer_is_released() {
        let (_tracker, state) = SendTracker::new();
        assert!(state.done());
        state.pin();
        state.pin();
        state.unpin();
        assert!(!state.done());
        assert!(!state.wait(Some(Duration::from_millis(10))));
        let s2 = Arc::clone(&state);
        let t = std::thread::spawn(move || s2.unpin());
        assert!(state.wait(Some(Duration::from_secs(5))));
        t.join().unwrap();
        assert!(state.done());
    }
}

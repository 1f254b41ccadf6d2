//! `oxipp._oxipp.Frame`: a received message frame handed to Python without a copy.
//!
//! Why: a big buffer (a numpy array's bytes) arrived in a buffer of its own
//! (`oxipp_zmtp`), and copying it into a Python `bytes` cost a pass over it and, the first
//! time, 100 MB of fresh memory per 100 MB array (~70 ms of page faults on this VM) in the
//! engine receiving a push and in the client receiving a pull. A `Frame` exports the
//! received bytes through the buffer protocol, read-only: `memoryview`, `numpy.frombuffer`,
//! `pickle.loads` and `bytes()` read it like `bytes`. Small frames stay `bytes` (see
//! [`frame_object`]), which is what code that looks at message parts expects.

use std::os::raw::{c_int, c_void};

use bytes::Bytes;
use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Frames of at least this many bytes go to Python as [`PyFrame`]s (the size above which
/// `oxipp_zmtp` receives a frame into its own buffer).
pub const SHARED_MIN: usize = oxipp_zmtp::frame::ZERO_COPY_MIN;

/// Read-only bytes shared with a received message.
#[pyclass(frozen, module = "oxipp._oxipp", name = "Frame")]
pub struct PyFrame {
    data: Bytes,
}

#[pymethods]
impl PyFrame {
    /// # Safety
    /// Called by Python with a valid `view` to fill (the buffer protocol).
    #[allow(unsafe_code)]
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err("a received frame is read-only"));
        }
        let data = &slf.get().data;
        let len = ffi::Py_ssize_t::try_from(data.len())
            .map_err(|_| PyBufferError::new_err("frame too large"))?;
        // SAFETY: `view` is valid (our caller's contract). The pointer stays valid while
        // the view exists: PyBuffer_FillInfo keeps a reference to this frozen object, whose
        // `Bytes` never changes or moves its contents; readonly = 1 forbids writes.
        #[allow(unsafe_code)]
        let rc = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                data.as_ptr() as *mut c_void,
                len,
                1,
                flags,
            )
        };
        if rc == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    fn __len__(&self) -> usize {
        self.data.len()
    }

    /// A copy as `bytes`.
    fn __bytes__<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.data)
    }

    fn __repr__(&self) -> String {
        format!("<oxipp Frame of {} bytes>", self.data.len())
    }
}

/// A received frame as Python sees it: `bytes` if small, else a [`PyFrame`] sharing it.
pub fn frame_object<'py>(py: Python<'py>, data: &Bytes) -> PyResult<Bound<'py, PyAny>> {
    if data.len() < SHARED_MIN {
        return Ok(PyBytes::new(py, data).into_any());
    }
    Ok(Bound::new(py, PyFrame { data: data.clone() })?.into_any())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyFrame>()?;
    Ok(())
}

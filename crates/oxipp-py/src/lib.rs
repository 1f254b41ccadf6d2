//! `oxipp._oxipp`: the Rust side of the `oxipp` Python package.
//!
//! The command line (`python -m oxipp …`, `python -m oxipp.controller …`) and the engine
//! runtime ([`engine`]); the client core will be exposed here too. Python owns nothing in these
//! calls: they run with the GIL released, so other Python threads keep running meanwhile.

use pyo3::prelude::*;

mod client;
mod engine;
mod frame;
mod sendbuf;

/// Runs the `oxipp` command line with `argv` (program name first, like `sys.argv`) and returns
/// its exit code; the caller passes it to `sys.exit`.
///
/// The GIL is released for the whole run (`Python::detach`, pyo3's name for the former
/// `allow_threads`): the controller runs until it is signalled, and must not hold up Python.
#[pyfunction]
fn main(py: Python<'_>, argv: Vec<String>) -> i32 {
    py.detach(move || oxipp_cluster::cli_main(argv))
}

#[pymodule]
fn _oxipp(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(main, m)?)?;
    engine::register(m)?;
    client::register(m)?;
    frame::register(m)?;
    sendbuf::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

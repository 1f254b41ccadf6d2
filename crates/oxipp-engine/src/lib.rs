//! The engine runtime of an oxipp engine process.
//!
//! Rust owns everything an engine does on the wire (registration, the heartbeat, the shell,
//! control and IOPub sockets, signing, abort bookkeeping, status and stream publishing); the
//! user's code runs elsewhere, behind [`Executor`] (in production the Python executor, reached
//! through the `oxipp._oxipp.EngineRuntime` binding). The split exists so that heartbeats and
//! control messages are served while user code holds the GIL for minutes. The contract between
//! the halves is `docs/engine-runtime.md`.

mod bell;
pub mod conn;
pub mod error;
pub mod executor;
pub mod fdcap;
mod heart;
mod io;
pub mod kernel;
pub mod queue;
pub mod registration;
mod reply;
pub mod runtime;
mod signals;

pub use error::EngineError;
pub use executor::{run, Executor, Outcome};
pub use fdcap::{log_fd, LogWriter};
pub use kernel::KernelPorts;
pub use queue::{Channel, Kind, Request};
pub use runtime::{Options, Runtime};

//! The ipyparallel wire format, shared by every oxipp process.
//!
//! Stock ipyparallel speaks the Jupyter message protocol over ZeroMQ: multipart messages of
//! routing frames, a `<IDS|MSG>` delimiter, an HMAC signature over four JSON frames, and raw
//! buffers. This crate owns everything about that format that does not need a socket loop:
//! framing ([`frames`]), signing ([`signing`]), replay detection ([`replay`]), message
//! construction ([`session`]), dates ([`dates`]), error contents ([`errors`]), connection files
//! ([`connection`]), profile directories ([`profile`]), the protocol constants ([`msg_types`]),
//! the one place that creates ZeroMQ sockets ([`sockets`]) and the wake-up of a thread that
//! sleeps on their descriptors ([`bell`]).

pub mod alloc;
pub mod bell;
pub mod connection;
pub mod dates;
pub mod errors;
pub mod frames;
pub mod interpreter;
pub mod msg_types;
pub mod profile;
pub mod replay;
pub mod session;
pub mod signing;
pub mod sockets;

pub use frames::{Frame, Message, WireError};
pub use session::Session;
pub use signing::Signer;

/// The ipyparallel version this implementation is wire-compatible with. Stock tooling
/// (`test_apps`) checks that `--version` prints exactly this string.
pub const COMPAT_VERSION: &str = "9.2.0";

/// Jupyter message protocol version written in headers (jupyter_client 8 writes "5.4").
pub const PROTOCOL_VERSION: &str = "5.4";

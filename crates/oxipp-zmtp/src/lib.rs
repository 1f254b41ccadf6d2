//! ZeroMQ's wire protocol (ZMTP 3.0/3.1, NULL security) spoken directly over non-blocking
//! TCP by the thread that owns the socket.
//!
//! Why: libzmq moves every message through a background IO thread, which costs two thread
//! wakeups per hop; on a small machine that dominated the controller's CPU per task. Here
//! the owner's thread reads and writes the kernel sockets itself, batching: one read parses
//! every message it holds, one `writev` sends every message queued since the last flush.
//!
//! Wire-compatible with libzmq 4.x peers (tested against libzmq 4.3 in `tests/`):
//! ROUTER, DEALER, PUB and SUB with the semantics oxipp relies on (identities, routing by
//! id with `ROUTER_MANDATORY`-style errors and handover, round-robin, prefix subscriptions),
//! `bind` and `connect` with reconnect.
//!
//! No threads: see [`socket`] for how the owner drives a [`Socket`] (poll its one
//! descriptor, [`Socket::recv`] until `None`, [`Socket::send`], [`Socket::flush`]).
//!
//! Modules: [`frame`] (greeting, frames, commands — pure, fuzzed), `writeq` (the
//! per-connection `writev` queue), `conn` (one connection's handshake and decoding),
//! [`socket`] (the socket and its IO), `types` (options, events, errors), [`mod@poll`]
//! (waiting on several sockets), `endpoint` (`tcp://` parsing, non-blocking connect).
//!
//! Writes to a peer that vanished fail with `EPIPE` only if `SIGPIPE` is ignored, as Rust
//! binaries and Python do by default.

mod bigbuf;
mod conn;
mod endpoint;
pub mod frame;
mod lowat;
mod pages;
pub mod poll;
pub mod socket;
mod types;
mod writeq;

pub use frame::ProtocolError;
pub use poll::poll;
pub use socket::{Event, Options, SendError, Socket, SocketType, Stats, ACCEPT_RETRY};

/// Bytes per read into a socket's shared read buffer (one buffer per socket, not per
/// connection: leftovers of a partial frame are kept per connection).
pub const READ_BUF: usize = 256 * 1024;

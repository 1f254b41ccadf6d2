//! How the sans-IO controller core sends: through this trait, so unit tests can capture
//! everything it would put on the wire without opening sockets.

use oxipp_wire::Frame;

/// The controller's sockets, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sock {
    /// Hub ROUTER: registration and client queries.
    Query,
    MuxClient,
    MuxEngine,
    TaskClient,
    TaskEngine,
    ControlClient,
    ControlEngine,
    /// SUB bound for engines' IOPub.
    IopubIn,
    /// PUB bound for clients' IOPub.
    IopubOut,
    Notification,
    HbPing,
    HbPong,
    BcastClient,
    /// Engine-facing broadcast socket number `n` (engines connect to `broadcast[id % n]`).
    BcastLeaf(u16),
}

pub trait Outbox {
    /// Sends one multipart message. Returns false if the socket refused it at once (for
    /// engine-facing ROUTERs: no such peer).
    fn send(&mut self, sock: Sock, frames: Vec<Frame>) -> bool;
}

/// An outbox that records what was sent (tests, and the in-process benchmarks).
#[derive(Debug, Default)]
pub struct RecordingOutbox {
    pub sent: Vec<(Sock, Vec<Frame>)>,
}

impl Outbox for RecordingOutbox {
    fn send(&mut self, sock: Sock, frames: Vec<Frame>) -> bool {
        self.sent.push((sock, frames));
        true
    }
}

impl RecordingOutbox {
    pub fn take(&mut self) -> Vec<(Sock, Vec<Frame>)> {
        std::mem::take(&mut self.sent)
    }
}

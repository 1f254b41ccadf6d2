//! The engine's wake-ups use the shared [`oxipp_wire::bell::Bell`].
pub use oxipp_wire::bell::Bell;

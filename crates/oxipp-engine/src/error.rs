//! Why an engine could not start.

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The connection info is unusable (missing keys, bad JSON, unknown signature scheme).
    #[error("bad connection info: {0}")]
    Config(String),
    /// No registration reply within the timeout (stock: "Registration timed out").
    #[error("registration timed out after {0:.1} s")]
    Timeout(f64),
    /// The controller answered the registration with an error (e.g. uuid already registered).
    #[error("registration refused: {0}")]
    Refused(String),
    /// A socket could not be made or used.
    #[error("{0}")]
    Io(String),
    #[error("zmq: {0}")]
    Zmq(#[from] zmq::Error),
    /// Invalid argument from the executor side (bad JSON content).
    #[error("{0}")]
    Invalid(String),
}

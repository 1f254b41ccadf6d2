//! Failures the scheduler itself decides (stock `fail_unreachable`).

/// Why the scheduler fails a task without running it (any further). The shell answers the
/// client with an `apply_reply` whose content is a wrapped exception of class
/// [`ename`](SchedError::ename) (`engine_info: {}`, metadata `{}`, no engine routing frame)
/// and records it as the task's result.
///
/// Stock raises these classes without arguments, so its `evalue` is `""`; here each variant
/// carries a human-readable reason that [`evalue`](SchedError::evalue) returns. Sending `""`
/// instead is equally compatible (clients match on `ename`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchedError {
    /// The task depends on itself, on an id never submitted to this scheduler (or one so
    /// old it was forgotten), or its metadata was malformed.
    #[error("InvalidDependency: {0}")]
    InvalidDependency(String),
    /// The dependencies can never be met (a required dependency failed, `follow` targets
    /// ran on different engines, every target engine is gone or blacklisted, ...).
    #[error("ImpossibleDependency: {0}")]
    ImpossibleDependency(String),
    /// The task waited in the scheduler longer than its `timeout`.
    #[error("TaskTimeout: {0}")]
    TaskTimeout(String),
}

impl SchedError {
    /// Exception class name (`ipyparallel.error.<ename>`).
    pub fn ename(&self) -> &'static str {
        match self {
            SchedError::InvalidDependency(_) => "InvalidDependency",
            SchedError::ImpossibleDependency(_) => "ImpossibleDependency",
            SchedError::TaskTimeout(_) => "TaskTimeout",
        }
    }

    /// Exception message.
    pub fn evalue(&self) -> &str {
        match self {
            SchedError::InvalidDependency(s)
            | SchedError::ImpossibleDependency(s)
            | SchedError::TaskTimeout(s) => s,
        }
    }
}

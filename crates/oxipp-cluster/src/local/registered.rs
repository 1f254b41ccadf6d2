//! Counting registered engines from the controller's engine state file, which the controller
//! rewrites (atomically) whenever an engine registers or unregisters.

use std::time::{Duration, Instant};

use super::layout::Layout;

/// Registered engine count; 0 while the file does not exist (yet).
pub fn count(layout: &Layout) -> usize {
    let Ok(text) = std::fs::read_to_string(layout.engine_state_file()) else {
        return 0;
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            v.get("engines")
                .and_then(|e| e.as_object())
                .map(|m| m.len())
        })
        .unwrap_or(0)
}

/// Why waiting for engines stopped early.
#[derive(Debug)]
pub enum WaitError {
    TimedOut { registered: usize },
    Aborted(String),
}

/// Waits until at least `n` engines are registered, calling `progress(count)` whenever the
/// count changes and `check()` every poll (an `Err` aborts: e.g. the supervisor died).
pub fn wait_for(
    layout: &Layout,
    n: usize,
    timeout: Duration,
    mut progress: impl FnMut(usize),
    mut check: impl FnMut() -> Result<(), String>,
) -> Result<usize, WaitError> {
    let deadline = Instant::now() + timeout;
    let mut last = usize::MAX;
    loop {
        let c = count(layout);
        if c != last {
            progress(c);
            last = c;
        }
        if c >= n {
            return Ok(c);
        }
        check().map_err(WaitError::Aborted)?;
        if Instant::now() >= deadline {
            return Err(WaitError::TimedOut { registered: c });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

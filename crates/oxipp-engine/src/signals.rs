//! Sending a signal to this process (control `signal_request`, `interrupt_request`).
//!
//! The signal goes to the whole process (kill(getpid())), not the IO thread, so Python's
//! handler runs in the main thread as with stock's nanny, which signals the engine pid.

/// Resolves an int or a name (`"SIGINT"`, `"INT"`) to a signal number.
pub fn resolve(sig: &serde_json::Value) -> Option<i32> {
    if let Some(n) = sig.as_i64() {
        // 0 is valid: kill(pid, 0) only checks the process exists (%px --signal-on-interrupt 0)
        return i32::try_from(n).ok().filter(|n| (0..65).contains(n));
    }
    let name = sig.as_str()?;
    if let Ok(n) = name.parse::<i64>() {
        return resolve(&serde_json::Value::from(n));
    }
    let name = name.strip_prefix("SIG").unwrap_or(name);
    Some(match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ABRT" => libc::SIGABRT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "ALRM" => libc::SIGALRM,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "PIPE" => libc::SIGPIPE,
        _ => return None,
    })
}

/// Delivers `sig` to this process on behalf of a `signal_request` whose reply was just queued.
/// SIGINT (the common case: interrupt the running task) and 0 go at once; any other signal may
/// end the process before the reply is written (when the sockets' lock is released), so it is sent 100 ms later from a helper
/// thread.
pub fn deliver(sig: i32) {
    if sig == 0 || sig == libc::SIGINT {
        if let Err(e) = send_to_self(sig) {
            tracing::warn!("signal {sig} failed: {e}");
        }
        return;
    }
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(100));
        tracing::info!("delivering signal {sig} to this process");
        if let Err(e) = send_to_self(sig) {
            tracing::warn!("signal {sig} failed: {e}");
        }
    });
}

/// Sends `sig` to this process.
#[allow(unsafe_code)]
pub fn send_to_self(sig: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) with our own pid and a validated signal number has no memory effects.
    let rc = unsafe { libc::kill(libc::getpid(), sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn names_and_numbers() {
        assert_eq!(super::resolve(&json!("SIGINT")), Some(libc::SIGINT));
        assert_eq!(super::resolve(&json!("TERM")), Some(libc::SIGTERM));
        assert_eq!(super::resolve(&json!(2)), Some(2));
        assert_eq!(super::resolve(&json!(0)), Some(0));
        assert_eq!(super::resolve(&json!("0")), Some(0));
        assert_eq!(super::resolve(&json!("SIGNOPE")), None);
        assert_eq!(super::resolve(&json!(-3)), None);
        assert_eq!(super::resolve(&json!(null)), None);
    }
}

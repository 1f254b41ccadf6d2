//! Signals and liveness checks for processes we know only by pid (recorded in cluster files,
//! or engines started by `oxipp engines` that the supervisor adopts).

/// Sends `sig` to `pid`; false if there is no such process (or it is not ours).
#[allow(unsafe_code)]
pub fn signal(pid: u32, sig: i32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false; // 0 and negatives would address process groups
    }
    // SAFETY: kill(2) has no memory effects; pid > 0 addresses exactly one process.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// Whether `pid` runs (a zombie counts as gone: it has exited and waits to be reaped).
pub fn alive(pid: u32) -> bool {
    if !signal(pid, 0) {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // state is the first field after the parenthesised command name
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next()),
            Some("Z") | Some("X")
        ),
        Err(_) => true, // no /proc: trust kill(pid, 0)
    }
}

pub const SIGTERM: i32 = libc::SIGTERM;
pub const SIGKILL: i32 = libc::SIGKILL;

/// Waits up to `grace` for every pid to end, calling `tick` each round (a parent reaps its
/// children there, so they do not linger as zombies), then SIGKILLs the ones still alive and
/// returns them.
pub fn wait_or_kill(pids: &[u32], grace: std::time::Duration, mut tick: impl FnMut()) -> Vec<u32> {
    let deadline = std::time::Instant::now() + grace;
    loop {
        tick();
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() {
            return left;
        }
        if std::time::Instant::now() >= deadline {
            for &p in &left {
                signal(p, SIGKILL);
            }
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Describes a child's exit status ("exited with status 1", "killed by signal 9").
pub fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "exited".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_of_self_and_of_an_exited_child() {
        assert!(alive(std::process::id()));
        assert!(!signal(0, 0), "pid 0 must never be signalled");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let status = child.wait().unwrap();
        assert!(!alive(child.id()));
        assert_eq!(describe_exit(status), "exited with status 0");
    }
}

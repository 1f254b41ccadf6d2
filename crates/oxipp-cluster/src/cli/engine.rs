//! `oxipp engine ARGS…`: an engine, i.e. what stock users know as `ipengine`.
//!
//! An engine runs user Python code, so it is a Python process (`python -m oxipp.engine`); this
//! subcommand only execs it, so that launchers and users have one `oxipp` front door. The
//! interpreter is chosen by [`python`].

use clap::Args;

/// Run an engine with ipengine arguments (execs `python -m oxipp.engine ARGS`).
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct EngineArgs {
    /// ipengine-style arguments, e.g. --profile=NAME --cluster-id=ID --mpi --log-level=20
    #[arg(
        value_name = "ARGS",
        num_args = 0..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
}

/// The interpreter engines run under: `$OXIPP_PYTHON`; else the interpreter the command line
/// came in through (`python -m oxipp` or the console script name it in `$OXIPP_SELF_PYTHON`,
/// unresolved, so a venv stays a venv); else this process when it is Python; else the active
/// virtualenv's python; else `python3` from `PATH`.
pub fn python() -> String {
    for var in ["OXIPP_PYTHON", "OXIPP_SELF_PYTHON"] {
        if let Some(p) = std::env::var(var).ok().filter(|s| !s.is_empty()) {
            return p;
        }
    }
    if let Ok(exe) = std::env::current_exe() {
        let name = exe.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with("python") {
            return exe.display().to_string();
        }
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty()) {
        let p = std::path::Path::new(&venv).join("bin").join("python");
        if p.exists() {
            return p.display().to_string();
        }
    }
    "python3".into()
}

impl EngineArgs {
    pub fn run(self) -> i32 {
        use std::os::unix::process::CommandExt;
        let py = python();
        let err = std::process::Command::new(&py)
            .args(["-m", "oxipp.engine"])
            .args(&self.args)
            .exec();
        // exec only returns on failure
        eprintln!("oxipp engine: cannot run {py}: {err}");
        127
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn arguments_pass_through_verbatim() {
        let args = [
            "--profile-dir=/tmp/x",
            "--mpi",
            "--IPEngine.timeout=3",
            "--help",
        ];
        let argv = ["oxipp", "engine"].iter().chain(&args).copied();
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Engine(e) => assert_eq!(e.args, args),
            other => panic!("parsed as {other:?}"),
        }
    }
}

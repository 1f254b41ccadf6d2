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

/// The interpreter engines run under ([`oxipp_wire::interpreter::default_python`]).
pub fn python() -> String {
    oxipp_wire::interpreter::default_python()
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

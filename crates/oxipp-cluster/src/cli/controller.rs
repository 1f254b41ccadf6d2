//! `oxipp controller ARGS…`: the controller, i.e. what stock users know as `ipcontroller`.
//!
//! The arguments are ipcontroller's traitlets-style command line (`--profile=iptest --ping=250
//! --dictdb --HeartMonitor.period=200 …`), which the controller itself parses, so clap must not
//! interpret any of them: they are collected verbatim, including `--help`/`--help-all` (help is
//! disabled here) and `--version`, which ipyparallel's own tests expect to print `9.2.0`.

use clap::Args;

/// Run the controller (Hub, schedulers, relays, heartbeat monitor) with ipcontroller arguments.
///
/// All arguments go unchanged to the controller; `oxipp controller --help-all` lists them.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct ControllerArgs {
    /// ipcontroller-style arguments, e.g. --profile=NAME --ping=MS --dictdb --ip=ADDR
    #[arg(
        value_name = "ARGS",
        num_args = 0..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
}

impl ControllerArgs {
    pub fn run(self) -> i32 {
        oxipp_controller::main_with_args(&self.args)
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn controller_args(args: &[&str]) -> Vec<String> {
        let argv = ["oxipp", "controller"].iter().chain(args).copied();
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Controller(c) => c.args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn arguments_pass_through_verbatim() {
        let cases: &[&[&str]] = &[
            &[],
            &[
                "--profile=iptest",
                "--log-level=10",
                "--ping=250",
                "--dictdb",
            ],
            &["--log-level=10", "--ping=250", "--HeartMonitor.period=200"],
            &["--version"],
            &["--help"],
            &["-h"],
            &["--help-all"],
            &["-V"],
            &["--ip", "127.0.0.1", "--MongoDB.database=x y", "--", "rest"],
            &["--sqlitedb", "-x", "positional", "--unknown-flag"],
        ];
        for &case in cases {
            let expected: Vec<String> = case.iter().map(|s| s.to_string()).collect();
            assert_eq!(controller_args(case), expected, "{case:?}");
        }
    }
}

//! The `oxipp` command line: one module per subcommand, each with a clap `Args` struct and a
//! `run(self) -> i32` that returns the process exit code.
//!
//! Subcommands mirror the stock tools: `oxipp controller` is `ipcontroller`, `oxipp engine` is
//! `ipengine`, and `start`, `stop`, `list`, `engines`, `clean` are `ipcluster`'s.

use clap::{Parser, Subcommand};

pub mod add_engines;
pub mod clean;
pub mod controller;
pub mod engine;
pub mod list;
pub mod start;
pub mod stop;
pub mod where_;

/// IPython Parallel with a Rust core, wire-compatible with ipyparallel 9.x.
#[derive(Debug, Parser)]
#[command(name = "oxipp", version, arg_required_else_help = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Controller(controller::ControllerArgs),
    Engine(engine::EngineArgs),
    Start(start::StartArgs),
    Stop(stop::StopArgs),
    List(list::ListArgs),
    Engines(add_engines::EnginesArgs),
    Clean(clean::CleanArgs),
}

impl Command {
    /// Runs the subcommand and returns its exit code.
    pub fn run(self) -> i32 {
        match self {
            Command::Controller(args) => args.run(),
            Command::Engine(args) => args.run(),
            Command::Start(args) => args.run(),
            Command::Stop(args) => args.run(),
            Command::List(args) => args.run(),
            Command::Engines(args) => args.run(),
            Command::Clean(args) => args.run(),
        }
    }
}

/// Parses `argv` (program name first, as in `std::env::args()`) and runs the subcommand.
///
/// Returns the exit code instead of exiting, because the Python extension calls this inside
/// the interpreter and hands the code to `sys.exit`. `--help` and `--version` print and return
/// 0; usage errors print clap's message and return 2.
pub fn cli_main(argv: Vec<String>) -> i32 {
    // the controller relays whole messages: keep large ones off fresh mmaps (see alloc.rs)
    oxipp_wire::alloc::keep_large_buffers_on_heap();
    match Cli::try_parse_from(argv) {
        Ok(cli) => cli.command.run(),
        Err(err) => {
            // print() sends help/version to stdout and errors to stderr; a closed pipe is no
            // reason to change the exit code
            let _ = err.print();
            err.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("oxipp").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn version_and_help_exit_zero() {
        for flag in ["--version", "-V", "--help", "-h"] {
            let err = parse(&[flag]).unwrap_err();
            assert_eq!(err.exit_code(), 0, "{flag}");
        }
        assert_eq!(cli_main(vec!["oxipp".into(), "--version".into()]), 0);
    }

    #[test]
    fn unknown_subcommand_is_a_usage_error() {
        assert_eq!(parse(&["frobnicate"]).unwrap_err().exit_code(), 2);
        assert_eq!(cli_main(vec!["oxipp".into(), "frobnicate".into()]), 2);
    }

    #[test]
    fn no_subcommand_prints_help_and_fails() {
        assert_eq!(parse(&[]).unwrap_err().exit_code(), 2);
    }
}

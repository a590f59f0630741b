//! The `edgetune` command-line tool: conformance checks, GPU probing (and, as the engine
//! grows, converting, quantizing, training, evaluating and benchmarking models).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edgetune::onnx::conformance::{self, Outcome};

#[derive(Parser)]
#[command(name = "edgetune", version = edgetune::VERSION, about = "int8 vision engine: inference and on-device fine-tuning")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run ONNX backend node tests (e.g. /usr/share/libonnx-testdata/data/node) on the reference kernels.
    Conformance {
        /// Directory holding one sub-directory per test (model.onnx + test_data_set_*).
        dir: PathBuf,
        /// Run only the tests named in this file (one per line).
        #[arg(long)]
        only: Option<PathBuf>,
        /// Print only failures and the closing line.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Find a GPU adapter and say what it is.
    Probe,
}

fn conformance_cmd(dir: PathBuf, only: Option<PathBuf>, quiet: bool) -> edgetune::Result<bool> {
    let list = only.as_deref().map(conformance::read_list).transpose()?;
    let summary = conformance::run_suite(&dir, list.as_deref(), |name, outcome| match outcome {
        Outcome::Pass if !quiet => println!("PASS {name}"),
        Outcome::Pass => {}
        Outcome::Skip(why) if !quiet => println!("SKIP {name}: {why}"),
        Outcome::Skip(_) => {}
        Outcome::Fail(why) => println!("FAIL {name}: {why}"),
    })?;
    println!("{summary}");
    Ok(summary.failed == 0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Conformance { dir, only, quiet } => conformance_cmd(dir, only, quiet),
        Command::Probe => pollster::block_on(edgetune::gpu::probe()).map(|r| {
            println!("GPU: {}", r.describe());
            true
        }),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

//! Command-line interface: one subcommand per job, all over the same engine.
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Admission webhook for KubeVirt VirtualMachines on Multus networks.
#[derive(Debug, Parser)]
#[command(name = "kubevirt-net-webhook", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Plain, env = "LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a CA and a serving certificate for the webhook Service.
    Certs(crate::certs::CertsArgs),
}

impl Cli {
    /// Runs the chosen subcommand and maps its outcome to the process exit code.
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Certs(args) => match crate::certs::run(&args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::from(2)
                }
            },
        }
    }
}

/// Logs go to stderr so that `review` output on stdout stays machine-readable.
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

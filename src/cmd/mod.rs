//! Command-line interface: one subcommand per job, all over the same engine.
pub mod audit;
pub mod certs;
pub mod json_log;
pub mod mac;
pub mod review;

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
    /// Run the webhook's checks on manifests, offline: prints the mutated VMs, writes warnings
    /// and denials to stderr. Exit code 0: all allowed, 1: some denied, 2: usage or input error.
    Review(review::ReviewArgs),
    /// Report every violation the stored VMs (and VMIs, replica sets, pools) have today, from
    /// the cluster or from files. Changes nothing. Exit code 0: none, 1: some, 2: usage, input
    /// or connection error.
    Audit(audit::AuditArgs),
    /// Print the MAC address the webhook derives for a VM's network.
    Mac(mac::MacArgs),
    /// Write a CA and a serving certificate for the webhook Service.
    Certs(certs::CertsArgs),
    /// Run the admission webhook: HTTPS /mutate and /validate, admin /metrics, probes.
    Serve(crate::server::ServeArgs),
}

impl Cli {
    /// Runs the chosen subcommand and maps its outcome to the process exit code.
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Review(args) => {
                let stdout = std::io::stdout();
                let stderr = std::io::stderr();
                match review::review(&args, &mut stdout.lock(), &mut stderr.lock()) {
                    Ok(summary) if summary.denied > 0 => ExitCode::from(1),
                    Ok(_) => ExitCode::SUCCESS,
                    Err(error) => {
                        eprintln!("error: {error}");
                        ExitCode::from(2)
                    }
                }
            }
            Command::Audit(args) => {
                let stdout = std::io::stdout();
                let stderr = std::io::stderr();
                match audit::run(&args, &mut stdout.lock(), &mut stderr.lock()) {
                    Ok(summary) if summary.violations > 0 => ExitCode::from(1),
                    Ok(_) => ExitCode::SUCCESS,
                    Err(error) => {
                        eprintln!("error: {error}");
                        ExitCode::from(2)
                    }
                }
            }
            Command::Mac(args) => match args.run() {
                Ok(mac) => {
                    println!("{mac}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::from(2)
                }
            },
            Command::Serve(args) => {
                let mut runtime = tokio::runtime::Builder::new_multi_thread();
                // TOKIO_WORKER_THREADS, when set, is tokio's to read.
                if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
                    runtime.worker_threads(crate::server::async_workers(
                        crate::server::cores(),
                        args.limits.max_concurrent_decisions,
                    ));
                }
                let result = runtime
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())
                    .and_then(|runtime| {
                        runtime
                            .block_on(crate::server::serve(args))
                            .map_err(|e| e.to_string())
                    });
                match result {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(error) => {
                        tracing::error!(%error, "cannot serve");
                        ExitCode::from(1)
                    }
                }
            }
            Command::Certs(args) => match certs::run(&args) {
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
        .with_writer(crate::server::log_lines::Stderr)
        // Colour codes only help a terminal; in a log file they are noise.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder
            .fmt_fields(json_log::JsonLinesFields::new())
            .event_format(json_log::JsonLines::default())
            .init(),
    }
}

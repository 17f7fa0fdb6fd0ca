//! `kubevirt-net-webhook`: parse arguments, set up logging, run.
use clap::Parser;
use kubevirt_net_webhook::cmd::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    kubevirt_net_webhook::cmd::init_tracing(cli.log_format);
    cli.run()
}

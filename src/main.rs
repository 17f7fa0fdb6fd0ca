//! `kubevirt-net-webhook`: parse arguments, set up logging, run.
use clap::Parser;
use kubevirt_net_webhook::cmd::Cli;

// mimalloc instead of glibc's malloc: a decision allocates and frees many small strings and
// JSON nodes, and glibc's allocator took about a third of the engine's time (perf; README,
// Benchmarks).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    kubevirt_net_webhook::cmd::init_tracing(cli.log_format);
    cli.run()
}

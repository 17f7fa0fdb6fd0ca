//! `audit` at cluster scale (issue #18): N stored VMs (default 100,000) in 100 namespaces,
//! read from files, audited by the release binary as a separate process; wall time and peak
//! RSS per run.
//!
//! ```text
//! cargo build --release
//! cargo run --release --example audit_scale                      # 100,000 VMs, 3 runs, YAML
//! cargo run --release --example audit_scale -- --vms 20000 --runs 1 --format json
//! cargo run --release --example audit_scale -- --dir /tmp/dump  # keep the files
//! ```
//!
//! The input is what `kubectl get vm -A -o yaml` gives for such VMs (no managedFields), one
//! file per namespace (`tenant-NN.yaml`, a multi-document YAML stream; with `--format json`
//! `tenant-NN.json`, a `kind: List`), and `infra-nads.yaml` with the NADs every VM uses: the
//! VMs of `examples/support/scale_cluster.rs` (shared with `apiserver_scale`), 3 NICs each,
//! every MAC and address unique except for ten violations planted in seven VMs of seven
//! namespaces.
//!
//! Each run is `/usr/bin/time -f '%e %U %S %M' kubevirt-net-webhook audit -A -f DIR -o json`
//! (the binary next to this example's directory: `target/release/`). A run fails the
//! benchmark unless it exits 1 with exactly the planted rows (namespace, name, rule, and each
//! conflict naming every other holder) and the summary line counting all N objects. Exits 1
//! on such a failure.
use std::{
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Instant,
};

use clap::{Parser, ValueEnum};
use serde_json::{Value, json};

#[path = "../tests/support/fixtures.rs"]
mod fixtures;
#[path = "support/scale_cluster.rs"]
mod scale_cluster;
use scale_cluster::{Cluster, nads};

/// Namespaces the VMs spread over: VM `i` is in `tenant-{i % 100}`.
const NAMESPACES: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// One multi-document YAML stream per namespace.
    Yaml,
    /// One `kind: List` JSON document per namespace.
    Json,
}

/// `audit -A -f DIR` over N generated VMs: time and peak memory.
#[derive(Debug, Parser)]
struct Args {
    /// Stored VMs in all (at least 100).
    #[arg(long, default_value_t = 100_000)]
    vms: usize,
    /// Runs of `audit` over the same files.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// How the files are written.
    #[arg(long, value_enum, default_value_t = Format::Yaml)]
    format: Format,
    /// Write the files here (created, kept) instead of a temporary directory.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The binary to run. Default: `kubevirt-net-webhook` in the directory above this
    /// example's (`target/release/`).
    #[arg(long, value_name = "PATH")]
    bin: Option<PathBuf>,
}

fn write_yaml_stream(path: &Path, docs: impl Iterator<Item = Value>) -> std::io::Result<u64> {
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    for doc in docs {
        writeln!(out, "---")?;
        out.write_all(
            serde_yaml_ng::to_string(&doc)
                .expect("YAML serializes")
                .as_bytes(),
        )?;
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// Writes the dump; returns (files, bytes).
fn generate(dir: &Path, cluster: &Cluster, format: Format) -> std::io::Result<(usize, u64)> {
    std::fs::create_dir_all(dir)?;
    let mut bytes = write_yaml_stream(&dir.join("infra-nads.yaml"), nads().into_iter())?;
    for n in 0..cluster.namespaces {
        let of_namespace = cluster.of_namespace(n).map(|i| cluster.vm(i));
        let path = dir.join(format!(
            "tenant-{n:02}.{}",
            match format {
                Format::Yaml => "yaml",
                Format::Json => "json",
            }
        ));
        bytes += match format {
            Format::Yaml => write_yaml_stream(&path, of_namespace)?,
            Format::Json => {
                let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
                    "items": of_namespace.collect::<Vec<_>>()});
                let mut out = BufWriter::new(std::fs::File::create(&path)?);
                serde_json::to_writer_pretty(&mut out, &list)?;
                out.flush()?;
                std::fs::metadata(&path)?.len()
            }
        };
    }
    Ok((cluster.namespaces + 1, bytes))
}

/// One run's figures.
struct Run {
    wall: f64,
    user: f64,
    sys: f64,
    peak_kib: u64,
}

/// Runs the audit once under `/usr/bin/time`; checks exit code, rows and summary.
fn run_once(bin: &Path, dir: &Path, cluster: &Cluster, scratch: &Path) -> Result<Run, String> {
    let times = scratch.join("time.txt");
    let output = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%e %U %S %M")
        .arg("-o")
        .arg(&times)
        .arg(bin)
        .args(["audit", "-A", "-f"])
        .arg(dir)
        .args(["-o", "json"])
        .output()
        .map_err(|e| format!("cannot run /usr/bin/time (apt-get install -y time): {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    // GNU time writes "Command exited with non-zero status 1" first, the figures last.
    let text = std::fs::read_to_string(&times).map_err(|e| format!("{}: {e}", times.display()))?;
    let figures: Vec<&str> = text
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let [wall, user, sys, peak] = figures[..] else {
        return Err(format!("unexpected /usr/bin/time output: {text:?}"));
    };
    let number = |s: &str| s.parse::<f64>().map_err(|e| format!("{s:?}: {e}"));
    let run = Run {
        wall: number(wall)?,
        user: number(user)?,
        sys: number(sys)?,
        peak_kib: peak.parse().map_err(|e| format!("{peak:?}: {e}"))?,
    };
    if output.status.code() != Some(1) {
        return Err(format!(
            "audit exited {:?}, not 1 (violations found); stderr:\n{stderr}",
            output.status.code()
        ));
    }
    let summary = cluster.expected_summary();
    if stderr.trim_end() != summary {
        return Err(format!("stderr is not {summary:?}:\n{stderr}"));
    }
    cluster.check_rows(&output.stdout)?;
    Ok(run)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> ExitCode {
    let args = Args::parse();
    assert!(
        args.vms >= 100,
        "--vms must be at least 100 (the planted VMs)"
    );
    assert!(args.runs >= 1, "--runs must be at least 1");
    let bin = args.bin.clone().unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("this example's path");
        // target/release/examples/audit_scale -> target/release/kubevirt-net-webhook
        exe.parent()
            .and_then(Path::parent)
            .expect("target/<profile>/examples")
            .join("kubevirt-net-webhook")
    });
    if !bin.is_file() {
        eprintln!(
            "{}: not found; run `cargo build --release` first",
            bin.display()
        );
        return ExitCode::FAILURE;
    }
    let temp = tempfile::tempdir().expect("a temporary directory");
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().join("dump"));

    let cluster = Cluster {
        vms: args.vms,
        namespaces: NAMESPACES,
    };
    let started = Instant::now();
    let (files, bytes) = generate(&dir, &cluster, args.format).expect("the dump is written");
    eprintln!(
        "wrote {} VMs ({} namespaces) and 3 NADs: {files} files, {:.1} MiB, in {:.1} s, to {}",
        args.vms,
        NAMESPACES,
        bytes as f64 / (1 << 20) as f64,
        started.elapsed().as_secs_f64(),
        dir.display()
    );

    println!(
        "{} audit -A -f {} -o json  ({} VMs, {:.1} MiB of {:?})",
        bin.display(),
        dir.display(),
        args.vms,
        bytes as f64 / (1 << 20) as f64,
        args.format
    );
    println!("| run | wall s | user s | sys s | peak RSS MiB | rows checked |");
    println!("|---|---|---|---|---|---|");
    let mut runs = Vec::new();
    for n in 1..=args.runs {
        match run_once(&bin, &dir, &cluster, temp.path()) {
            Ok(run) => {
                println!(
                    "| {n} | {:.2} | {:.2} | {:.2} | {:.0} | {} ok |",
                    run.wall,
                    run.user,
                    run.sys,
                    run.peak_kib as f64 / 1024.0,
                    cluster.expected_rows().len()
                );
                runs.push(run);
            }
            Err(e) => {
                eprintln!("run {n} failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "| median | {:.2} | {:.2} | {:.2} | {:.0} | |",
        median(runs.iter().map(|r| r.wall).collect()),
        median(runs.iter().map(|r| r.user).collect()),
        median(runs.iter().map(|r| r.sys).collect()),
        median(runs.iter().map(|r| r.peak_kib as f64 / 1024.0).collect())
    );
    ExitCode::SUCCESS
}

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
//! `tenant-NN.json`, a `kind: List`), and `infra-nads.yaml` with the NADs every VM uses, in
//! the shared `infra` namespace: `front` (bridge, 10.0.0.0/8), `back` (bridge,
//! 172.16.0.0/12) and `legacy` (macvlan). Each VM has 3 NICs: the pod network (masquerade)
//! and two bridge NICs on `front` and `back`, every one with its MAC, and an address on each
//! bridge NIC requested through `kubevirt-net-webhook.io/networks`; all unique, except for
//! ten violations planted in ten VMs of ten namespaces ([`PLANTED`]):
//!
//! - an address held on `front` by two VMs in two namespaces (2 rows, `address-conflict`),
//! - an address held on `back` by three VMs in three namespaces (3 rows),
//! - a MAC on `front` used by two VMs in two namespaces (2 rows, `mac-conflict`),
//! - three VMs with their `back` NIC on `legacy`, the macvlan NAD (3 rows, `bridge-binding`).
//!
//! Each run is `/usr/bin/time -f '%e %U %S %M' kubevirt-net-webhook audit -A -f DIR -o json`
//! (the binary next to this example's directory: `target/release/`). A run fails the
//! benchmark unless it exits 1 with exactly the planted rows (namespace, name, rule, and each
//! conflict naming every other holder) and the summary line counting all N objects. Exits 1
//! on such a failure.
use std::{
    collections::BTreeSet,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Instant,
};

use clap::{Parser, ValueEnum};
use serde_json::{Value, json};

#[path = "../tests/support/fixtures.rs"]
mod fixtures;

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

fn namespace(i: usize) -> String {
    format!("tenant-{:02}", i % NAMESPACES)
}

fn name(i: usize) -> String {
    format!("vm-{i:06}")
}

/// A MAC `02:<nic>:<i as 3 bytes>:<1>`-like, unique per (nic, i); locally administered, unicast.
fn mac(nic: u8, i: usize) -> String {
    format!(
        "02:{nic:02x}:{:02x}:{:02x}:{:02x}:01",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

/// VM `i`'s own address on `front` (10.0.0.0/8) and `back` (172.16.0.0/12).
fn front_address(i: usize) -> String {
    let h = i + 256;
    format!("10.{}.{}.{}/8", h >> 16, (h >> 8) & 0xff, h & 0xff)
}

fn back_address(i: usize) -> String {
    let h = i + 256;
    format!("172.{}.{}.{}/12", 16 + (h >> 16), (h >> 8) & 0xff, h & 0xff)
}

/// What is planted in VM `i`, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plant {
    /// Requests `front` address of VM `.0`.
    FrontAddressOf(usize),
    /// Requests `back` address of VM `.0`.
    BackAddressOf(usize),
    /// Uses the `front` MAC of VM `.0`.
    FrontMacOf(usize),
    /// Its `back` NIC is on the macvlan NAD.
    Macvlan,
}

/// The planted violations: (VM, what), each VM in its own namespace (`i % 100` differ).
const PLANTED: [(usize, Plant); 7] = [
    (77, Plant::FrontAddressOf(3)),
    (41, Plant::BackAddressOf(10)),
    (92, Plant::BackAddressOf(10)),
    (58, Plant::FrontMacOf(25)),
    (5, Plant::Macvlan),
    (50, Plant::Macvlan),
    (95, Plant::Macvlan),
];

fn plant(i: usize) -> Option<Plant> {
    PLANTED
        .iter()
        .find(|(vm, _)| *vm == i)
        .map(|(_, plant)| *plant)
}

/// The rows the audit must print: (namespace, name, rule, the other holders its message names).
fn expected_rows() -> BTreeSet<(String, String, &'static str, Vec<String>)> {
    let holders = |vms: &[usize]| -> Vec<(usize, Vec<String>)> {
        vms.iter()
            .map(|&me| {
                let others = vms
                    .iter()
                    .filter(|&&o| o != me)
                    .map(|&o| format!("VM {}/{}", namespace(o), name(o)))
                    .collect();
                (me, others)
            })
            .collect()
    };
    let mut rows = BTreeSet::new();
    for (group, rule) in [
        (&[3, 77][..], "address-conflict"),
        (&[10, 41, 92][..], "address-conflict"),
        (&[25, 58][..], "mac-conflict"),
    ] {
        for (me, others) in holders(group) {
            rows.insert((namespace(me), name(me), rule, others));
        }
    }
    for i in [5, 50, 95] {
        rows.insert((namespace(i), name(i), "bridge-binding", Vec::new()));
    }
    rows
}

/// VM `i` as `kubectl get vm -o yaml` shows a running one (managedFields left out, as kubectl
/// does by default).
fn vm(i: usize) -> Value {
    let plant = plant(i);
    let (ns, name) = (namespace(i), name(i));
    let front_mac = match plant {
        Some(Plant::FrontMacOf(other)) => mac(0x10, other),
        _ => mac(0x10, i),
    };
    let front = match plant {
        Some(Plant::FrontAddressOf(other)) => front_address(other),
        _ => front_address(i),
    };
    let back = match plant {
        Some(Plant::BackAddressOf(other)) => back_address(other),
        _ => back_address(i),
    };
    let mut requests = json!({"front": front});
    let back_nad = if plant == Some(Plant::Macvlan) {
        "infra/legacy" // a macvlan NAD takes no address request here: only the binding is wrong
    } else {
        requests["back"] = json!(back);
        "infra/back"
    };
    json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {
            "annotations": {
                "kubevirt-net-webhook.io/networks": requests.to_string(),
                "kubevirt.io/latest-observed-api-version": "v1",
                "kubevirt.io/storage-observed-api-version": "v1",
            },
            "creationTimestamp": "2026-11-02T10:00:00Z",
            "finalizers": ["kubevirt.io/virtualMachineControllerFinalize"],
            "generation": 1,
            "labels": {"app": format!("app-{}", i % 37), "tier": "backend"},
            "name": name,
            "namespace": ns,
            "resourceVersion": format!("{}", 100_000 + i),
            "uid": format!("6b0f1c2e-0000-4000-8000-{i:012}"),
        },
        "spec": {
            "dataVolumeTemplates": [{
                "metadata": {"name": format!("{name}-root")},
                "spec": {
                    "sourceRef": {"kind": "DataSource", "name": "fedora", "namespace": "kubevirt-os-images"},
                    "storage": {"resources": {"requests": {"storage": "30Gi"}}},
                },
            }],
            "runStrategy": "Always",
            "template": {
                "metadata": {"labels": {"kubevirt.io/domain": name, "kubevirt.io/size": "medium"}},
                "spec": {
                    "domain": {
                        "cpu": {"cores": 2, "sockets": 1, "threads": 1},
                        "devices": {
                            "disks": [
                                {"disk": {"bus": "virtio"}, "name": "rootdisk"},
                                {"disk": {"bus": "virtio"}, "name": "cloudinitdisk"},
                            ],
                            "interfaces": [
                                {"macAddress": mac(0x00, i), "masquerade": {}, "model": "virtio", "name": "default"},
                                {"bridge": {}, "macAddress": front_mac, "model": "virtio", "name": "front"},
                                {"bridge": {}, "macAddress": mac(0x20, i), "model": "virtio", "name": "back"},
                            ],
                            "rng": {},
                        },
                        "features": {"acpi": {}, "smm": {"enabled": true}},
                        "firmware": {"bootloader": {"efi": {"secureBoot": false}}},
                        "machine": {"type": "q35"},
                        "memory": {"guest": "4Gi"},
                    },
                    "networks": [
                        {"name": "default", "pod": {}},
                        {"multus": {"networkName": "infra/front"}, "name": "front"},
                        {"multus": {"networkName": back_nad}, "name": "back"},
                    ],
                    "terminationGracePeriodSeconds": 180,
                    "volumes": [
                        {"dataVolume": {"name": format!("{name}-root")}, "name": "rootdisk"},
                        {"cloudInitNoCloud": {"userData": "#cloud-config\nuser: fedora\nssh_authorized_keys:\n  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGz0bench0key0bench0key0bench0key0bench0 ops@example\n"}, "name": "cloudinitdisk"},
                    ],
                },
            },
        },
        "status": {
            "conditions": [
                {"lastProbeTime": null, "lastTransitionTime": "2026-11-02T10:01:12Z", "status": "True", "type": "Ready"},
                {"lastProbeTime": null, "lastTransitionTime": null, "status": "True", "type": "LiveMigratable"},
            ],
            "created": true,
            "desiredGeneration": 1,
            "observedGeneration": 1,
            "printableStatus": "Running",
            "ready": true,
            "runStrategy": "Always",
            "volumeSnapshotStatuses": [
                {"enabled": true, "name": "rootdisk"},
                {"enabled": false, "name": "cloudinitdisk", "reason": "Snapshot is not supported for this volumeSource type [cloudinitdisk]"},
            ],
        },
    })
}

fn nads() -> Vec<Value> {
    let bridge = |name: &str, subnet: &str, gateway: &str| {
        fixtures::nad_object(
            "infra",
            name,
            &json!({"cniVersion": "0.3.1", "name": name, "type": "bridge", "bridge": format!("br-{name}"),
                "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet, "gateway": gateway}]]}})
            .to_string(),
        )
    };
    vec![
        bridge("front", "10.0.0.0/8", "10.0.0.1"),
        bridge("back", "172.16.0.0/12", "172.16.0.1"),
        fixtures::nad_object(
            "infra",
            "legacy",
            r#"{"cniVersion":"0.3.1","name":"legacy","type":"macvlan","master":"eth1","mode":"bridge"}"#,
        ),
    ]
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
fn generate(dir: &Path, vms: usize, format: Format) -> std::io::Result<(usize, u64)> {
    std::fs::create_dir_all(dir)?;
    let mut bytes = write_yaml_stream(&dir.join("infra-nads.yaml"), nads().into_iter())?;
    for n in 0..NAMESPACES {
        let of_namespace = (n..vms).step_by(NAMESPACES).map(vm);
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
    Ok((NAMESPACES + 1, bytes))
}

/// One run's figures.
struct Run {
    wall: f64,
    user: f64,
    sys: f64,
    peak_kib: u64,
}

/// Runs the audit once under `/usr/bin/time`; checks exit code, rows and summary.
fn run_once(bin: &Path, dir: &Path, vms: usize, scratch: &Path) -> Result<Run, String> {
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
    let expected = expected_rows();
    let summary = format!(
        "{vms} objects audited, {} with violations, {} violations",
        expected.len(),
        expected.len()
    );
    if stderr.trim_end() != summary {
        return Err(format!("stderr is not {summary:?}:\n{stderr}"));
    }
    let rows: Vec<Value> = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("stdout is not a JSON list: {e}"))?;
    let mut got = BTreeSet::new();
    for row in &rows {
        let field = |k: &str| row[k].as_str().unwrap_or("").to_string();
        let rule = expected
            .iter()
            .map(|(_, _, rule, _)| *rule)
            .find(|r| *r == field("rule"))
            .ok_or_else(|| format!("unexpected row: {row}"))?;
        let (ns, name) = (field("namespace"), field("name"));
        // The message names every other holder, and only those that are expected.
        let others = expected
            .iter()
            .find(|(n, m, r, _)| *n == ns && *m == name && *r == rule)
            .map(|(_, _, _, others)| others.clone())
            .ok_or_else(|| format!("unexpected row: {row}"))?;
        let message = field("message");
        if let Some(missing) = others.iter().find(|o| !message.contains(o.as_str())) {
            return Err(format!(
                "{ns}/{name}: the message does not name {missing}: {message}"
            ));
        }
        if field("kind") != "VirtualMachine" {
            return Err(format!("unexpected kind: {row}"));
        }
        got.insert((ns, name, rule, others));
    }
    if rows.len() != expected.len() || got != expected {
        return Err(format!(
            "expected {} rows {expected:?}, got {} rows:\n{}",
            expected.len(),
            rows.len(),
            String::from_utf8_lossy(&output.stdout)
        ));
    }
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

    let started = Instant::now();
    let (files, bytes) = generate(&dir, args.vms, args.format).expect("the dump is written");
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
        match run_once(&bin, &dir, args.vms, temp.path()) {
            Ok(run) => {
                println!(
                    "| {n} | {:.2} | {:.2} | {:.2} | {:.0} | {} ok |",
                    run.wall,
                    run.user,
                    run.sys,
                    run.peak_kib as f64 / 1024.0,
                    expected_rows().len()
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

//! Boots a real Debian guest under qemu (TCG, no KVM needed) with the cloud-init data the
//! webhook wrote, and reads back what the guest configured.
//!
//! - [`GuestImage::get`]: the guest that `tests/support/guest-image/build.sh` makes (debootstrap
//!   bookworm + cloud-init + netplan/ifupdown/networkd, packed with `mke2fs -d`, nothing
//!   mounted), built once and cached in
//!   `${XDG_CACHE_HOME:-$HOME/.cache}/kubevirt-net-webhook/guest-<hash of that directory>`, so
//!   a change to the build files rebuilds it and a second run starts at once.
//! - [`Seed`]: the disk KubeVirt attaches for a cloud-init volume, made with `xorriso` as
//!   KubeVirt makes it (an ISO labelled `cidata` with `meta-data`, `user-data`,
//!   `network-config`; or `config-2` with `openstack/latest/{meta_data.json,user_data,
//!   network_data.json}`), also without mounting. [`Seed::from_vm`] takes the first cloud-init
//!   volume of a VM exactly as the webhook wrote it.
//! - [`Guest`]: a copy-on-write qcow2 overlay on the cached base image, so the cache stays
//!   clean and one guest can boot twice (day two). [`Guest::boot`] runs qemu with one
//!   virtio-net NIC per VM interface carrying the VM's MACs, waits (bounded by a timeout, then
//!   qemu is killed) until the guest has printed its report on the second serial port and
//!   powered off, and parses it into a [`Report`].
//! - No traffic leaves the machine: the pod NIC is a user-mode netdev with `restrict=on` (its
//!   built-in DHCP answers, nothing is forwarded; IPv4 only, like masquerade on an IPv4
//!   cluster), every other NIC is a hub port with no peer.
//!
//! Logs of every boot (serial console, report, qemu's output) are kept under
//! `target/tmp/guest-boot/<test>/` for reading after a failure.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::guest::find_tool;

/// The build script and the files it installs in the guest; their hash names the cache.
const IMAGE_SOURCES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/guest-image");
/// Building the guest from scratch takes about 3 minutes; this bounds a stuck mirror.
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A boot takes about a minute under TCG; override with `KVNW_BOOT_TIMEOUT_SECS`.
const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(600);

const TOOLS: [(&str, &str); 5] = [
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("qemu-img", "qemu-utils"),
    ("xorriso", "xorriso"),
    ("debootstrap", "debootstrap"),
    ("mke2fs", "e2fsprogs"),
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
        .unwrap_or_default()
}

/// Runs `cmd` (stdout and stderr to `log`), killing it after `timeout`.
fn run_with_timeout(
    mut cmd: Command,
    log: &Path,
    timeout: Duration,
    what: &str,
) -> Result<(ExitStatus, Duration), String> {
    let out = fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{what}: cannot start {cmd:?}: {e}"))?;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("{what}: {e}"))? {
            return Ok((status, start.elapsed()));
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{what}: no result after {} s, killed (log: {})\n{}",
                timeout.as_secs(),
                log.display(),
                tail(&read_lossy(log), 40)
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

// ---------------------------------------------------------------------------------------
// The guest image

/// The cached guest: a raw ext4 root file system, its kernel and initramfs.
#[derive(Debug)]
pub struct GuestImage {
    pub dir: PathBuf,
    pub base: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// How long building it took, when this process built it.
    pub built_in: Option<Duration>,
}

fn image_key() -> Result<String, String> {
    let mut names: Vec<PathBuf> = fs::read_dir(IMAGE_SOURCES)
        .map_err(|e| format!("{IMAGE_SOURCES}: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    let mut h = Sha256::new();
    for p in &names {
        h.update(p.file_name().unwrap().as_encoded_bytes());
        h.update([0]);
        h.update(fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?);
        h.update([0]);
    }
    Ok(hex(&h.finalize()[..8]))
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/kubevirt-net-webhook`.
pub fn cache_root() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("kubevirt-net-webhook")
}

impl GuestImage {
    /// The guest for this checkout's build files: from the cache, or built now (once per
    /// process; concurrent test processes wait on a lock file rather than build twice).
    pub fn get() -> Result<&'static GuestImage, String> {
        static IMAGE: OnceLock<Result<GuestImage, String>> = OnceLock::new();
        IMAGE
            .get_or_init(Self::load_or_build)
            .as_ref()
            .map_err(Clone::clone)
    }

    fn at(dir: PathBuf, built_in: Option<Duration>) -> GuestImage {
        GuestImage {
            base: dir.join("base.raw"),
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd.img"),
            dir,
            built_in,
        }
    }

    fn complete(&self) -> bool {
        [&self.base, &self.kernel, &self.initrd]
            .iter()
            .all(|p| p.is_file())
    }

    fn load_or_build() -> Result<GuestImage, String> {
        for (tool, package) in TOOLS {
            find_tool(tool, package)?;
        }
        let key = image_key()?;
        let root = cache_root();
        fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        let lock_path = root.join(format!("guest-{key}.lock"));
        let lock =
            fs::File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
        lock.lock()
            .map_err(|e| format!("lock {}: {e}", lock_path.display()))?;
        let cached = Self::at(root.join(format!("guest-{key}")), None);
        if cached.complete() {
            return Ok(cached);
        }
        let tmp = root.join(format!("guest-{key}.partial"));
        let _ = fs::remove_dir_all(&tmp);
        let log = root.join(format!("guest-{key}.build.log"));
        eprintln!(
            "building the test guest into {} (log: {}); this takes a few minutes once",
            cached.dir.display(),
            log.display()
        );
        let mut cmd = Command::new("bash");
        cmd.arg(Path::new(IMAGE_SOURCES).join("build.sh")).arg(&tmp);
        let (status, took) = run_with_timeout(cmd, &log, BUILD_TIMEOUT, "building the guest")?;
        if !status.success() {
            return Err(format!(
                "building the guest failed ({status}); log {}:\n{}",
                log.display(),
                tail(&read_lossy(&log), 40)
            ));
        }
        let _ = fs::remove_dir_all(&cached.dir);
        fs::rename(&tmp, &cached.dir).map_err(|e| format!("{}: {e}", cached.dir.display()))?;
        eprintln!("built the test guest in {:.0} s", took.as_secs_f64());
        let image = Self::at(cached.dir, Some(took));
        if !image.complete() {
            return Err(format!(
                "build.sh succeeded but left no base.raw/vmlinuz/initrd.img in {}",
                image.dir.display()
            ));
        }
        Ok(image)
    }
}

// ---------------------------------------------------------------------------------------
// Seeds

/// The disk KubeVirt attaches for a VM's cloud-init volume.
#[derive(Debug, Clone, PartialEq)]
pub enum Seed {
    /// `cloudInitNoCloud`: ISO labelled `cidata`.
    NoCloud {
        meta_data: String,
        user_data: String,
        network_config: Option<String>,
    },
    /// `cloudInitConfigDrive`: ISO labelled `config-2`.
    ConfigDrive {
        meta_data_json: String,
        user_data: String,
        network_data_json: Option<String>,
    },
}

impl Seed {
    /// The first cloud-init volume of `vm`, as KubeVirt would present it: instance-id
    /// `name.namespace`, user-data and network config exactly as in the volume.
    pub fn from_vm(vm: &Value) -> Result<Seed, String> {
        let name = vm["metadata"]["name"].as_str().unwrap_or_default();
        let namespace = vm["metadata"]["namespace"].as_str().unwrap_or("default");
        let instance_id = format!("{name}.{namespace}");
        let volumes = vm
            .pointer("/spec/template/spec/volumes")
            .and_then(Value::as_array)
            .ok_or("the VM has no volumes")?;
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
        for v in volumes {
            if let Some(src) = v.get("cloudInitNoCloud") {
                return Ok(Seed::NoCloud {
                    meta_data: format!("instance-id: {instance_id}\nlocal-hostname: {name}\n"),
                    user_data: text(src, "userData").unwrap_or_default(),
                    network_config: text(src, "networkData"),
                });
            }
            if let Some(src) = v.get("cloudInitConfigDrive") {
                let digest = Sha256::digest(instance_id.as_bytes());
                let h = hex(&digest[..16]);
                let uuid = format!(
                    "{}-{}-{}-{}-{}",
                    &h[..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..]
                );
                let meta = json!({"instance_id": instance_id, "uuid": uuid, "hostname": name});
                return Ok(Seed::ConfigDrive {
                    meta_data_json: meta.to_string(),
                    user_data: text(src, "userData").unwrap_or_default(),
                    network_data_json: text(src, "networkData"),
                });
            }
        }
        Err(format!("no cloud-init volume in {volumes:?}"))
    }

    pub fn user_data(&self) -> &str {
        match self {
            Seed::NoCloud { user_data, .. } | Seed::ConfigDrive { user_data, .. } => user_data,
        }
    }

    pub fn network_config(&self) -> Option<&str> {
        match self {
            Seed::NoCloud { network_config, .. } => network_config.as_deref(),
            Seed::ConfigDrive {
                network_data_json, ..
            } => network_data_json.as_deref(),
        }
    }

    /// Writes the ISO into `dir` and returns its path.
    pub fn write_iso(&self, dir: &Path, name: &str) -> Result<PathBuf, String> {
        let tree = dir.join(format!("{name}.d"));
        let _ = fs::remove_dir_all(&tree);
        let files: Vec<(&str, &str)> = match self {
            Seed::NoCloud {
                meta_data,
                user_data,
                network_config,
            } => {
                let mut f = vec![("meta-data", meta_data.as_str()), ("user-data", user_data)];
                if let Some(n) = network_config {
                    f.push(("network-config", n));
                }
                f
            }
            Seed::ConfigDrive {
                meta_data_json,
                user_data,
                network_data_json,
            } => {
                let mut f = vec![
                    ("openstack/latest/meta_data.json", meta_data_json.as_str()),
                    ("openstack/latest/user_data", user_data),
                ];
                if let Some(n) = network_data_json {
                    f.push(("openstack/latest/network_data.json", n));
                }
                f
            }
        };
        for (rel, content) in files {
            let p = tree.join(rel);
            fs::create_dir_all(p.parent().unwrap()).map_err(|e| e.to_string())?;
            fs::write(&p, content).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        let label = match self {
            Seed::NoCloud { .. } => "cidata",
            Seed::ConfigDrive { .. } => "config-2",
        };
        let iso = dir.join(format!("{name}.iso"));
        let out = Command::new(find_tool("xorriso", "xorriso")?)
            .args(["-as", "mkisofs", "-quiet", "-J", "-R", "-V", label, "-o"])
            .arg(&iso)
            .arg(&tree)
            .output()
            .map_err(|e| format!("xorriso: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "xorriso failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(iso)
    }
}

// ---------------------------------------------------------------------------------------
// Booting

/// cloud-init's network renderer in the guest, and the network services it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renderer {
    /// netplan (as on Ubuntu), with systemd-networkd as its backend.
    Netplan,
    /// /etc/network/interfaces (Debian's ifupdown).
    Eni,
    /// systemd-networkd `.network` files written by cloud-init itself.
    Networkd,
}

impl Renderer {
    pub fn name(self) -> &'static str {
        match self {
            Renderer::Netplan => "netplan",
            Renderer::Eni => "eni",
            Renderer::Networkd => "networkd",
        }
    }

    /// Kernel command line: the renderer (read by kvnw-renderer.service) and masks for the
    /// other network stack, so only one configures the NICs and waits for them.
    fn cmdline(self) -> String {
        let masks: &[&str] = match self {
            Renderer::Netplan | Renderer::Networkd => {
                &["networking.service", "ifupdown-wait-online.service"]
            }
            Renderer::Eni => &[
                "systemd-networkd.service",
                "systemd-networkd.socket",
                "systemd-networkd-wait-online.service",
            ],
        };
        let mut s = format!("kvnw.renderer={}", self.name());
        for m in masks {
            let _ = write!(s, " systemd.mask={m}");
        }
        s
    }
}

/// One virtio-net NIC of the guest, in PCI order.
#[derive(Debug, Clone)]
pub struct BootNic {
    pub mac: String,
    /// The pod network: a user-mode netdev (restricted) whose DHCP answers. Otherwise a hub
    /// port with no peer.
    pub pod: bool,
}

/// A guest disk (qcow2 overlay on the cached image) that can be booted several times.
pub struct Guest {
    pub image: &'static GuestImage,
    pub name: String,
    work: tempfile::TempDir,
    disk: PathBuf,
    logs: PathBuf,
    boots: std::cell::Cell<u32>,
}

fn boot_timeout() -> Duration {
    std::env::var("KVNW_BOOT_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_BOOT_TIMEOUT)
}

impl Guest {
    /// A fresh disk for the test `name` (also the name of its log directory).
    pub fn new(name: &str) -> Result<Guest, String> {
        let image = GuestImage::get()?;
        let work = tempfile::Builder::new()
            .prefix("guest-boot-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .map_err(|e| format!("tempdir: {e}"))?;
        let disk = work.path().join("disk.qcow2");
        let out = Command::new(find_tool("qemu-img", "qemu-utils")?)
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&image.base)
            .arg(&disk)
            .output()
            .map_err(|e| format!("qemu-img: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "qemu-img create failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let logs = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("guest-boot")
            .join(name);
        let _ = fs::remove_dir_all(&logs);
        fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
        Ok(Guest {
            image,
            name: name.to_string(),
            work,
            disk,
            logs,
            boots: std::cell::Cell::new(0),
        })
    }

    /// Boots the disk with `nics` and `seed` and returns the guest's report. Errors (with the
    /// console's tail) when qemu fails, the guest does not finish in time, or the report is
    /// incomplete.
    pub fn boot(
        &self,
        renderer: Renderer,
        nics: &[BootNic],
        seed: &Seed,
    ) -> Result<Report, String> {
        let n = self.boots.get() + 1;
        self.boots.set(n);
        let tag = format!("boot{n}-{}", renderer.name());
        let seed_iso = seed.write_iso(self.work.path(), &tag)?;
        let console = self.logs.join(format!("{tag}-console.log"));
        let report_log = self.logs.join(format!("{tag}-report.log"));
        let qemu_log = self.logs.join(format!("{tag}-qemu.log"));
        fs::write(
            self.logs.join(format!("{tag}-seed.txt")),
            format!("{seed:#?}\n"),
        )
        .map_err(|e| e.to_string())?;
        let mut cmd = Command::new(find_tool("qemu-system-x86_64", "qemu-system-x86")?);
        cmd.args(["-accel", "tcg", "-m", "1024", "-smp", "1"])
            .args([
                "-nographic",
                "-nodefaults",
                "-no-reboot",
                "-monitor",
                "none",
            ])
            .arg("-kernel")
            .arg(&self.image.kernel)
            .arg("-initrd")
            .arg(&self.image.initrd)
            .arg("-append")
            .arg(format!(
                "root=/dev/vda rw console=ttyS0 panic=-1 {}",
                renderer.cmdline()
            ))
            .arg("-drive")
            .arg(format!(
                "file={},if=virtio,format=qcow2",
                self.disk.display()
            ))
            .arg("-drive")
            .arg(format!(
                "file={},if=virtio,format=raw,readonly=on",
                seed_iso.display()
            ))
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-serial")
            .arg(format!("file:{}", report_log.display()));
        for (i, nic) in nics.iter().enumerate() {
            let netdev = if nic.pod {
                format!("user,id=net{i},restrict=on,ipv6=off")
            } else {
                format!("hubport,id=net{i},hubid={i}")
            };
            cmd.arg("-netdev")
                .arg(netdev)
                .arg("-device")
                .arg(format!("virtio-net-pci,netdev=net{i},mac={}", nic.mac));
        }
        let what = format!("{} {tag}", self.name);
        let result = run_with_timeout(cmd, &qemu_log, boot_timeout(), &what);
        let console_text = read_lossy(&console);
        let (status, took) = result.map_err(|e| {
            format!(
                "{e}\nserial console ({}):\n{}",
                console.display(),
                tail(&console_text, 60)
            )
        })?;
        let qemu_out = read_lossy(&qemu_log);
        if !status.success() {
            return Err(format!(
                "{what}: qemu exited with {status}: {qemu_out}\nconsole:\n{}",
                tail(&console_text, 60)
            ));
        }
        let report = Report::parse(&read_lossy(&report_log), console_text, took).map_err(|e| {
            format!(
                "{what}: {e} (report: {}, console: {})",
                report_log.display(),
                console.display()
            )
        })?;
        eprintln!(
            "{what}: booted, reported and powered off in {:.1} s (guest uptime at report {:.1} s)",
            took.as_secs_f64(),
            report.uptime()
        );
        Ok(report)
    }
}

// ---------------------------------------------------------------------------------------
// The report

/// A route the guest has, from `ip -j route` / `ip -6 -j route`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GuestRoute {
    /// CIDR; `0.0.0.0/0` / `::/0` for the default route.
    pub to: String,
    pub via: Option<String>,
    pub dev: String,
}

/// What the guest printed on its report port, sections by name.
#[derive(Debug, Clone)]
pub struct Report {
    pub sections: BTreeMap<String, String>,
    /// Exit code of each section's command.
    pub codes: BTreeMap<String, i32>,
    pub console: String,
    /// Wall time from starting qemu to its exit.
    pub took: Duration,
}

fn norm_ip(s: &str) -> String {
    s.parse::<IpAddr>()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| s.to_string())
}

fn norm_cidr(s: &str, v6: bool) -> String {
    match s {
        "default" => if v6 { "::/0" } else { "0.0.0.0/0" }.to_string(),
        _ => match s.split_once('/') {
            Some((a, p)) => format!("{}/{p}", norm_ip(a)),
            None => format!("{}/{}", norm_ip(s), if v6 { 128 } else { 32 }),
        },
    }
}

impl Report {
    pub fn parse(text: &str, console: String, took: Duration) -> Result<Report, String> {
        if !text.contains("=== kvnw report") {
            return Err(format!(
                "the guest printed no report; console:\n{}",
                tail(&console, 60)
            ));
        }
        let mut sections = BTreeMap::new();
        let mut codes = BTreeMap::new();
        let mut current: Option<(String, String)> = None;
        for line in text.lines() {
            if let Some(name) = line.strip_prefix("=== kvnw begin ") {
                current = Some((name.trim().to_string(), String::new()));
            } else if let Some(rest) = line.strip_prefix("=== kvnw end ") {
                let mut parts = rest.split_whitespace();
                let (Some(name), Some(code)) = (parts.next(), parts.next()) else {
                    continue;
                };
                if let Some((cur, body)) = current.take()
                    && cur == name
                {
                    codes.insert(cur.clone(), code.parse().unwrap_or(-1));
                    sections.insert(cur, body);
                }
            } else if let Some((_, body)) = current.as_mut() {
                body.push_str(line);
                body.push('\n');
            }
        }
        if !text.contains("=== kvnw done") {
            return Err(format!(
                "the report is incomplete (sections: {:?}); console:\n{}",
                sections.keys().collect::<Vec<_>>(),
                tail(&console, 60)
            ));
        }
        Ok(Report {
            sections,
            codes,
            console,
            took,
        })
    }

    pub fn section(&self, name: &str) -> &str {
        self.sections.get(name).map(String::as_str).unwrap_or("")
    }

    fn json(&self, name: &str) -> Vec<Value> {
        serde_json::from_str::<Value>(self.section(name).trim())
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    /// Seconds the guest had been up when it wrote the report.
    pub fn uptime(&self) -> f64 {
        self.section("uptime")
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(f64::NAN)
    }

    /// (interface name, MAC) of every link but `lo`.
    pub fn links(&self) -> Vec<(String, String)> {
        self.json("link")
            .iter()
            .filter(|l| l["link_type"] != "loopback")
            .filter_map(|l| {
                Some((
                    l["ifname"].as_str()?.to_string(),
                    l["address"].as_str()?.to_ascii_lowercase(),
                ))
            })
            .collect()
    }

    /// The name of the link with this MAC.
    pub fn link_name(&self, mac: &str) -> Option<String> {
        let mac = mac.to_ascii_lowercase();
        self.links()
            .into_iter()
            .find(|(_, m)| *m == mac)
            .map(|(n, _)| n)
    }

    /// Global-scope addresses (CIDR) on the link `ifname`.
    pub fn addresses(&self, ifname: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .json("addr")
            .iter()
            .filter(|l| l["ifname"] == ifname)
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["scope"] == "global")
            .filter_map(|a| {
                Some(format!(
                    "{}/{}",
                    norm_ip(a["local"].as_str()?),
                    a["prefixlen"].as_u64()?
                ))
            })
            .collect();
        out.sort();
        out
    }

    /// Every route of the main tables, IPv4 and IPv6.
    pub fn routes(&self) -> Vec<GuestRoute> {
        let mut out = Vec::new();
        for (section, v6) in [("route", false), ("route6", true)] {
            for r in self.json(section) {
                let (Some(dst), Some(dev)) = (r["dst"].as_str(), r["dev"].as_str()) else {
                    continue;
                };
                out.push(GuestRoute {
                    to: norm_cidr(dst, v6),
                    via: r["gateway"].as_str().map(norm_ip),
                    dev: dev.to_string(),
                });
            }
        }
        out.sort();
        out
    }

    /// `resolvectl dns|domain` entries of one link: `Link 3 (external): 192.168.1.1 ...`.
    fn resolvectl(&self, section: &str, ifname: &str) -> Vec<String> {
        let prefix = format!("({ifname}):");
        self.section(section)
            .lines()
            .filter_map(|l| l.split_once(&prefix).map(|(_, rest)| rest))
            .flat_map(|rest| rest.split_whitespace().map(norm_ip))
            .collect()
    }

    /// DNS servers systemd-resolved has for the link.
    pub fn dns(&self, ifname: &str) -> Vec<String> {
        self.resolvectl("resolvectl-dns", ifname)
    }

    /// Search domains systemd-resolved has for the link.
    pub fn search(&self, ifname: &str) -> Vec<String> {
        self.resolvectl("resolvectl-domain", ifname)
    }

    /// What to show when an expectation fails.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for name in [
            "ip-addr",
            "route",
            "route6",
            "resolvectl-dns",
            "resolvectl-domain",
            "cloud-init-status",
            "cloud-init-log",
            "rendered",
            "failed-units",
            "network-journal",
        ] {
            let _ = writeln!(s, "--- {name}\n{}", self.section(name).trim_end());
        }
        s
    }

    /// Checks every NIC against what the VM asked for; all problems at once.
    pub fn check(&self, nics: &[ExpectNic<'_>]) -> Result<(), String> {
        let mut problems = Vec::new();
        let status = self.section("cloud-init-status");
        if !status.contains("status: done") {
            problems.push(format!(
                "cloud-init did not finish cleanly: {}",
                status.trim()
            ));
        }
        let log = self.section("cloud-init-log");
        if log.contains("Traceback") || log.contains("ERROR") {
            problems.push("cloud-init logged errors (see cloud-init-log)".to_string());
        }
        let routes = self.routes();
        for nic in nics {
            let Some(name) = self.link_name(nic.mac) else {
                problems.push(format!(
                    "no link with MAC {} ({}); links: {:?}",
                    nic.mac,
                    nic.name,
                    self.links()
                ));
                continue;
            };
            if name != nic.name {
                problems.push(format!(
                    "the NIC with MAC {} is named {name:?}, not {:?} (set-name)",
                    nic.mac, nic.name
                ));
            }
            let have = self.addresses(&name);
            for a in nic.addresses {
                if !have.iter().any(|h| h == a) {
                    problems.push(format!(
                        "{a} is not on {name} ({}): it has {have:?}",
                        nic.mac
                    ));
                }
                for (other, _) in self.links().iter().filter(|(n, _)| *n != name) {
                    if self.addresses(other).iter().any(|h| h == a) {
                        problems.push(format!("{a} is on {other} too"));
                    }
                }
            }
            for (to, via) in nic.routes {
                let want = GuestRoute {
                    to: norm_cidr(to, to.contains(':')),
                    via: Some(norm_ip(via)),
                    dev: name.clone(),
                };
                if !routes.contains(&want) {
                    let near: Vec<&GuestRoute> = routes
                        .iter()
                        .filter(|r| r.to == want.to || r.via == want.via)
                        .collect();
                    problems.push(format!(
                        "no route {} via {via} dev {name}; similar: {near:?}",
                        want.to
                    ));
                }
            }
            let dns = self.dns(&name);
            for d in nic.dns {
                if !dns.contains(&norm_ip(d)) {
                    problems.push(format!("DNS server {d} not set on {name}: {dns:?}"));
                }
            }
            let search = self.search(&name);
            for d in nic.search {
                if !search.iter().any(|s| s == d) {
                    problems.push(format!("search domain {d} not set on {name}: {search:?}"));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} problem(s):\n- {}\n{}",
                problems.len(),
                problems.join("\n- "),
                self.describe()
            ))
        }
    }
}

/// What one NIC must look like in the guest.
#[derive(Debug, Clone, Default)]
pub struct ExpectNic<'a> {
    pub mac: &'a str,
    /// The interface name (`set-name`).
    pub name: &'a str,
    /// CIDRs that must be on this NIC and on no other.
    pub addresses: &'a [&'a str],
    /// (to, via) routes that must be on this NIC; `to` may be `default`.
    pub routes: &'a [(&'a str, &'a str)],
    pub dns: &'a [&'a str],
    pub search: &'a [&'a str],
}

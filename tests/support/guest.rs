//! Render cloud-init network config with the guest's real tools, so tests see what a guest
//! would actually configure.
//!
//! - [`net_convert`] runs `cloud-init devel net-convert` (apt package `cloud-init`): it reads
//!   netplan v2 YAML (what KubeVirt's cloudInitNoCloud `networkData` carries) or OpenStack
//!   `network_data.json` (cloudInitConfigDrive `networkData`) and writes what a distro's
//!   renderer would: netplan (Ubuntu), eni (Debian), sysconfig (CentOS/RHEL), networkd
//!   (Photon, Mariner), NetworkManager keyfiles (Fedora).
//! - [`netplan_generate`] runs `netplan generate --root-dir` (apt package `netplan.io`), the
//!   strict consumer of netplan YAML on Ubuntu: unknown keys and bad values are errors, and
//!   deprecations (e.g. `gateway4`) are warnings, which we also treat as errors.
//!
//! [`RenderedTree`] holds the output files and answers "which addresses/routes/DNS servers
//! does the guest bind to the NIC with MAC m", per renderer format.
//!
//! Findings with cloud-init 22.4.2 (Debian 12) and netplan 0.106, which the self-tests pin:
//! - Kinds: `--kind yaml` (netplan v2, with or without a top-level `network:` key) and
//!   `--kind network_data.json`. Renderer ↔ distro: netplan needs a distro with a netplan
//!   config (ubuntu/debian; centos fails with KeyError 'netplan_path'), networkd needs
//!   photon or mariner, sysconfig centos/rhel/fedora..., eni debian/ubuntu, network-manager
//!   works with any (we use fedora).
//! - v2 input with the netplan renderer is passed through nearly verbatim (even `to: default`
//!   survives); the other renderers go through cloud-init's network_state and *reject*
//!   `to: default` ("Address default is not a valid ip address"); `to: 0.0.0.0/0` works.
//! - BUG: v2 `to: "::/0"` is turned into `::/64` by every non-netplan renderer (cloud-init
//!   normalises v2 routes twice; the second pass sees prefix 0 as "missing" and defaults to
//!   64 for IPv6; IPv4 survives because a netmask 0.0.0.0 is kept). network_data.json
//!   routes (`network: "::", netmask: "::"`) are normalised once and stay `::/0`.
//! - BUG: NetworkManager renderer with v2 input puts *all* routes of an interface under the
//!   first subnet's section, so IPv6 routes land in `[ipv4]` when the interface also has an
//!   IPv4 address; the eni renderer likewise writes them into the `inet` stanza.
//!   network_data.json and network config v1 keep routes per subnet. See
//!   [`RenderedTree::problems`].
//! - Network config v1 (`version: 1`, `type: physical` with `mac_address` and `name`, one
//!   `type: static` subnet per address with its own `routes: [{destination, gateway}]`) is
//!   read with `--kind yaml` too, normalised once, and renders IPv6 routes right in every
//!   renderer (`::/0` stays `::/0`). The eni renderer writes every route as
//!   `post-up route add ... || true` (net-tools' `route`), a subnet `gateway` as ifupdown's
//!   `gateway` (applied with `ip route add`, which fails if a default route exists).
//! - The NetworkManager renderer matches by MAC only (no `interface-name`, no udev rule);
//!   eni and sysconfig write `70-persistent-net.rules` (MAC → name); networkd writes
//!   `Name=` in `[Match]`. At boot cloud-init renames NICs itself before rendering.
//! - The networkd renderer chowns its files to `systemd-network`, so net-convert fails as
//!   non-root; [`net_convert`] then runs the same entry point with that chown disabled.
//! - `netplan generate` requires the top-level `network:` key; cloud-init accepts v2 with or
//!   without it (see [`ubuntu_pipeline`]). Each tool run takes about 0.2–0.3 s.
//! - network_data.json: a link's `name` key is honoured as the device name; without it
//!   cloud-init must map `ethernet_mac_address` to an existing NIC (on the host running
//!   net-convert! pass `-m name,mac`, lowercase MAC, via [`net_convert_with_macs`]).
//!   `ethernet_mac_address` may be upper case (it is lowercased). `type: ipv4` takes
//!   `ip_address` + `netmask` ("255.255.255.0") or `ip_address: "a.b.c.d/24"`; `type: ipv6`
//!   takes `ip_address: "fd00::10/64"`, or `ip_address` + `netmask` either as a prefix
//!   length string ("64") or an IPv6 mask ("ffff:ffff:ffff:ffff::"). Without any prefix,
//!   cloud-init silently assumes /24 (IPv4) or /64 (IPv6). Routes are per network:
//!   `{network, netmask, gateway}`; `services: [{type: dns, address}]` become global DNS.
//!   `type: ipv6` also sets `accept-ra: false` on the link.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Format of the network config fed to `net-convert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// netplan v2 YAML (cloudInitNoCloud `networkData`).
    Netplan,
    /// OpenStack `network_data.json` (cloudInitConfigDrive `networkData`).
    OpenStackJson,
}

impl InputKind {
    pub fn cli_name(self) -> &'static str {
        match self {
            InputKind::Netplan => "yaml",
            InputKind::OpenStackJson => "network_data.json",
        }
    }
}

/// Renderer `net-convert` emits, each with a distro that supports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    Netplan,
    Eni,
    Sysconfig,
    Networkd,
    NetworkManager,
}

impl OutputKind {
    pub const ALL: [OutputKind; 5] = [
        OutputKind::Netplan,
        OutputKind::Eni,
        OutputKind::Sysconfig,
        OutputKind::Networkd,
        OutputKind::NetworkManager,
    ];

    pub fn cli_name(self) -> &'static str {
        match self {
            OutputKind::Netplan => "netplan",
            OutputKind::Eni => "eni",
            OutputKind::Sysconfig => "sysconfig",
            OutputKind::Networkd => "networkd",
            OutputKind::NetworkManager => "network-manager",
        }
    }

    /// A distro whose cloud-init renderer config supports this output kind.
    pub fn distro(self) -> &'static str {
        match self {
            OutputKind::Netplan => "ubuntu",
            OutputKind::Eni => "debian",
            OutputKind::Sysconfig => "centos",
            OutputKind::Networkd => "photon",
            OutputKind::NetworkManager => "fedora",
        }
    }
}

/// A route as the guest would install it; `to` is a CIDR (`0.0.0.0/0` / `::/0` for default).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub to: String,
    pub via: String,
}

impl Route {
    pub fn new(to: &str, via: &str) -> Route {
        let via = norm_ip(via);
        Route {
            to: norm_dest(to, &via),
            via,
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} via {}", self.to, self.via)
    }
}

/// What a renderer wrote: paths relative to the output (or root) directory → contents.
#[derive(Debug, Clone, Default)]
pub struct RenderedTree {
    pub files: BTreeMap<String, String>,
    /// The command that produced it, for messages.
    pub command: String,
    /// stderr of the command (informational lines only; anything else is an error).
    pub stderr: String,
    pub elapsed: Duration,
}

/// The configuration of one device, as found in a [`RenderedTree`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceConfig {
    /// Device name the guest will use, when the renderer says.
    pub name: Option<String>,
    /// The file(s) / stanza(s) configuring the device, with `# <path>` headers.
    pub text: String,
    /// CIDRs (`192.168.1.200/24`, `fd00:50::10/64`), normalised.
    pub addresses: Vec<String>,
    pub routes: Vec<Route>,
    /// Nameservers bound to this device (global ones, e.g. resolv.conf, are not included).
    pub dns: Vec<String>,
    /// DHCPv4 requested.
    pub dhcp4: bool,
}

impl RenderedTree {
    /// Every file, each preceded by `=== <path>`.
    pub fn all_text(&self) -> String {
        let mut s = String::new();
        for (p, c) in &self.files {
            s.push_str(&format!("=== {p}\n{c}"));
            if !c.ends_with('\n') {
                s.push('\n');
            }
        }
        s
    }

    /// The first file whose path ends with `suffix`.
    pub fn file(&self, suffix: &str) -> Option<&str> {
        self.files
            .iter()
            .find(|(p, _)| p.ends_with(suffix))
            .map(|(_, c)| c.as_str())
    }

    fn files_matching<'a>(
        &'a self,
        pred: impl Fn(&str) -> bool + 'a,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.files
            .iter()
            .filter(move |(p, _)| pred(p))
            .map(|(p, c)| (p.as_str(), c.as_str()))
    }

    /// Device name for a MAC according to udev rules the renderer wrote
    /// (`70-persistent-net.rules` from cloud-init, `99-netplan-*.rules` from netplan).
    pub fn udev_name_for_mac(&self, mac: &str) -> Option<String> {
        let mac = mac.to_ascii_lowercase();
        for (_, c) in self.files_matching(|p| p.contains("udev/rules.d/")) {
            for line in c.lines() {
                let Some(addr) = between(line, "ATTR{address}==\"", "\"") else {
                    continue;
                };
                if addr.to_ascii_lowercase() != mac {
                    continue;
                }
                if let Some(name) = between(line, "NAME=\"", "\"") {
                    return Some(name.to_string());
                }
            }
        }
        None
    }

    /// Everything the tree configures for the device with this MAC (case-insensitive).
    /// Formats: netplan YAML, eni (+ udev rules), sysconfig ifcfg/route files, networkd
    /// `.network`/`.link`, NetworkManager keyfiles.
    pub fn device(&self, mac: &str) -> Option<DeviceConfig> {
        let mac = mac.to_ascii_lowercase();
        let mut found = self
            .nm_device(&mac)
            .or_else(|| self.sysconfig_device(&mac))
            .or_else(|| self.networkd_device(&mac))
            .or_else(|| self.eni_device(&mac))
            .or_else(|| self.netplan_device(&mac))?;
        if found.name.is_none() {
            found.name = self.udev_name_for_mac(&mac);
        }
        found.addresses.sort();
        found.addresses.dedup();
        found.routes.sort();
        found.routes.dedup();
        Some(found)
    }

    /// The file(s)/stanza(s) configuring the device with this MAC.
    pub fn section_for_mac(&self, mac: &str) -> Option<String> {
        self.device(mac).map(|d| d.text)
    }

    /// Addresses (normalised CIDRs, sorted) the guest binds to the NIC with this MAC.
    pub fn addresses_bound_to(&self, mac: &str) -> Vec<String> {
        self.device(mac).map(|d| d.addresses).unwrap_or_default()
    }

    /// Routes (sorted) the guest installs on the NIC with this MAC.
    pub fn routes_bound_to(&self, mac: &str) -> Vec<Route> {
        self.device(mac).map(|d| d.routes).unwrap_or_default()
    }

    /// Nameservers configured on the NIC with this MAC (not global resolv.conf entries).
    pub fn dns_bound_to(&self, mac: &str) -> Vec<String> {
        self.device(mac).map(|d| d.dns).unwrap_or_default()
    }

    /// Device name the guest gives the NIC with this MAC.
    pub fn device_name_for_mac(&self, mac: &str) -> Option<String> {
        self.device(mac).and_then(|d| d.name)
    }

    /// Renderings that a guest would not apply as intended (known renderer bugs):
    /// NetworkManager keyfiles with IPv6 entries in `[ipv4]` or IPv4 entries in `[ipv6]`, and
    /// eni route lines in the other family's stanza (an `-A inet6` route in `iface X inet`
    /// runs when the IPv4 side comes up, before the IPv6 address exists, and its `|| true`
    /// hides the failure).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (p, c) in self.files_matching(|p| p.contains("etc/network/interfaces")) {
            for stanza in eni_stanzas(c) {
                let head: Vec<&str> = stanza[0].split_whitespace().collect();
                let (Some(&"iface"), Some(family)) = (head.first(), head.get(2)) else {
                    continue;
                };
                for line in &stanza[1..] {
                    let t: Vec<&str> = line.split_whitespace().collect();
                    let Some(route) = t.iter().position(|w| *w == "route") else {
                        continue;
                    };
                    if !matches!(t.get(route + 1), Some(&"add")) {
                        continue;
                    }
                    let v6 = t.windows(2).any(|w| w == ["-A", "inet6"]);
                    if v6 != (*family == "inet6") {
                        out.push(format!(
                            "{p}: `{line}` is in the {family} stanza of {}",
                            head.get(1).unwrap_or(&"?")
                        ));
                    }
                }
            }
        }
        for (p, c) in self.files_matching(|p| p.ends_with(".nmconnection")) {
            for (sec, k, v) in ini(c) {
                let is_entry = k.starts_with("address") || k.starts_with("route") || k == "gateway";
                if !is_entry || k.ends_with("-metric") || k.contains("_options") {
                    continue;
                }
                let first = v.split([',', '/']).next().unwrap_or("");
                let wrong = match sec.as_str() {
                    "ipv4" => first.contains(':'),
                    "ipv6" => !first.contains(':') && !first.is_empty(),
                    _ => false,
                };
                if wrong {
                    out.push(format!(
                        "{p}: [{sec}] {k}={v}: address family does not match the section"
                    ));
                }
            }
        }
        out
    }

    fn netplan_device(&self, mac: &str) -> Option<DeviceConfig> {
        for (p, c) in self.files_matching(|p| p.contains("netplan/") && p.ends_with(".yaml")) {
            let Ok(doc) = serde_yaml_ng::from_str::<Value>(c) else {
                continue;
            };
            let net = doc.get("network").unwrap_or(&doc);
            let Some(eths) = net.get("ethernets").and_then(Value::as_object) else {
                continue;
            };
            for (key, e) in eths {
                let m = e
                    .pointer("/match/macaddress")
                    .or_else(|| e.get("macaddress"));
                if m.and_then(Value::as_str)
                    .map(str::to_ascii_lowercase)
                    .as_deref()
                    != Some(mac)
                {
                    continue;
                }
                let mut d = DeviceConfig {
                    name: Some(
                        e.get("set-name")
                            .and_then(Value::as_str)
                            .unwrap_or(key)
                            .to_string(),
                    ),
                    text: format!(
                        "# {p}\n{}",
                        serde_yaml_ng::to_string(&serde_json::json!({ key: e }))
                            .unwrap_or_default()
                    ),
                    dhcp4: e.get("dhcp4").and_then(Value::as_bool) == Some(true),
                    ..Default::default()
                };
                for a in e
                    .get("addresses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    match a {
                        Value::String(s) => d.addresses.push(norm_cidr(s)),
                        Value::Object(o) => d.addresses.extend(o.keys().map(|s| norm_cidr(s))),
                        _ => {}
                    }
                }
                for r in e
                    .get("routes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let (Some(to), Some(via)) = (
                        r.get("to").and_then(Value::as_str),
                        r.get("via").and_then(Value::as_str),
                    ) {
                        d.routes.push(Route::new(to, via));
                    }
                }
                for gw in ["gateway4", "gateway6"] {
                    if let Some(g) = e.get(gw).and_then(Value::as_str) {
                        d.routes.push(Route::new("default", g));
                    }
                }
                d.dns = e
                    .pointer("/nameservers/addresses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(norm_ip)
                    .collect();
                return Some(d);
            }
        }
        None
    }

    fn networkd_device(&self, mac: &str) -> Option<DeviceConfig> {
        for (p, c) in self.files_matching(|p| p.ends_with(".network")) {
            let entries = ini(c);
            let matches = entries.iter().any(|(s, k, v)| {
                s == "Match"
                    && (k == "MACAddress" || k == "PermanentMACAddress")
                    && v.split_whitespace().any(|m| m.eq_ignore_ascii_case(mac))
            });
            if !matches {
                continue;
            }
            let mut d = DeviceConfig {
                text: format!("# {p}\n{c}"),
                ..Default::default()
            };
            // Each "[Route]" header (a marker entry with an empty key) starts a route.
            let mut route: Option<(String, String)> = None;
            let flush = |r: &mut Option<(String, String)>, d: &mut DeviceConfig| {
                if let Some((to, via)) = r.take()
                    && !via.is_empty()
                {
                    d.routes.push(Route::new(&to, &via));
                }
            };
            for (s, k, v) in &entries {
                if k.is_empty() {
                    flush(&mut route, &mut d);
                    if s == "Route" {
                        route = Some((String::new(), String::new()));
                    }
                    continue;
                }
                match (s.as_str(), k.as_str()) {
                    ("Match", "Name") => d.name = Some(v.clone()),
                    ("Network", "Address") | ("Address", "Address") => {
                        d.addresses.push(norm_cidr(v))
                    }
                    ("Network", "Gateway") => d.routes.push(Route::new("default", v)),
                    ("Network", "DNS") => d.dns.extend(v.split_whitespace().map(norm_ip)),
                    ("Network", "DHCP") => d.dhcp4 |= v == "yes" || v == "ipv4" || v == "true",
                    ("Route", "Destination") => {
                        if let Some(r) = route.as_mut() {
                            r.0 = v.clone()
                        }
                    }
                    ("Route", "Gateway") => {
                        if let Some(r) = route.as_mut() {
                            r.1 = v.clone()
                        }
                    }
                    _ => {}
                }
            }
            flush(&mut route, &mut d);
            if d.name.is_none() {
                d.name = self.networkd_link_name(mac);
            }
            return Some(d);
        }
        None
    }

    fn networkd_link_name(&self, mac: &str) -> Option<String> {
        for (_, c) in self.files_matching(|p| p.ends_with(".link")) {
            let e = ini(c);
            let matches = e.iter().any(|(s, k, v)| {
                s == "Match"
                    && (k == "MACAddress" || k == "PermanentMACAddress")
                    && v.eq_ignore_ascii_case(mac)
            });
            if matches {
                return e
                    .iter()
                    .find(|(s, k, _)| s == "Link" && k == "Name")
                    .map(|(_, _, v)| v.clone());
            }
        }
        None
    }

    fn nm_device(&self, mac: &str) -> Option<DeviceConfig> {
        for (p, c) in self.files_matching(|p| p.ends_with(".nmconnection")) {
            let entries = ini(c);
            let matches = entries.iter().any(|(s, k, v)| {
                s == "ethernet" && k == "mac-address" && v.eq_ignore_ascii_case(mac)
            });
            if !matches {
                continue;
            }
            let mut d = DeviceConfig {
                text: format!("# {p}\n{c}"),
                ..Default::default()
            };
            for (s, k, v) in &entries {
                let ip_section = s == "ipv4" || s == "ipv6";
                if s == "connection" && k == "interface-name" {
                    d.name = Some(v.clone());
                } else if ip_section
                    && k.starts_with("address")
                    && k[7..].chars().all(|c| c.is_ascii_digit())
                {
                    let mut parts = v.split(',');
                    d.addresses.push(norm_cidr(parts.next().unwrap_or("")));
                    if let Some(gw) = parts.next() {
                        d.routes.push(Route::new("default", gw));
                    }
                } else if ip_section
                    && k.starts_with("route")
                    && k[5..].chars().all(|c| c.is_ascii_digit())
                {
                    let mut parts = v.split(',');
                    let to = parts.next().unwrap_or("");
                    if let Some(gw) = parts.next() {
                        d.routes.push(Route::new(to, gw));
                    }
                } else if ip_section && k == "gateway" {
                    d.routes.push(Route::new("default", v));
                } else if ip_section && k == "dns" {
                    d.dns
                        .extend(v.split(';').filter(|x| !x.is_empty()).map(norm_ip));
                } else if s == "ipv4" && k == "method" {
                    d.dhcp4 = v == "auto";
                }
            }
            return Some(d);
        }
        None
    }

    fn sysconfig_device(&self, mac: &str) -> Option<DeviceConfig> {
        for (p, c) in self.files_matching(|p| p.contains("network-scripts/ifcfg-")) {
            let vars = shell_vars(c);
            if !vars
                .get("HWADDR")
                .is_some_and(|m| m.eq_ignore_ascii_case(mac))
            {
                continue;
            }
            let name = vars.get("DEVICE").cloned();
            let mut d = DeviceConfig {
                name: name.clone(),
                text: format!("# {p}\n{c}"),
                dhcp4: matches!(vars.get("BOOTPROTO").map(String::as_str), Some("dhcp")),
                ..Default::default()
            };
            // IPADDR, IPADDR0.., with NETMASKn or PREFIXn.
            for (k, v) in &vars {
                if let Some(idx) = k.strip_prefix("IPADDR") {
                    let prefix = vars
                        .get(&format!("PREFIX{idx}"))
                        .cloned()
                        .or_else(|| {
                            vars.get(&format!("NETMASK{idx}"))
                                .map(|m| mask_to_prefix(m))
                        })
                        .unwrap_or_else(|| "?".to_string());
                    d.addresses.push(norm_cidr(&format!("{v}/{prefix}")));
                }
                if let Some(idx) = k.strip_prefix("DNS")
                    && idx.chars().all(|c| c.is_ascii_digit())
                {
                    d.dns.push(norm_ip(v));
                }
            }
            if let Some(a) = vars.get("IPV6ADDR") {
                d.addresses.push(norm_cidr(a));
            }
            if let Some(a) = vars.get("IPV6ADDR_SECONDARIES") {
                d.addresses.extend(a.split_whitespace().map(norm_cidr));
            }
            if let Some(g) = vars.get("GATEWAY")
                && vars.get("DEFROUTE").map(String::as_str) != Some("no")
            {
                d.routes.push(Route::new("default", g));
            }
            if let Some(g) = vars.get("IPV6_DEFAULTGW") {
                d.routes
                    .push(Route::new("default", g.split('%').next().unwrap_or(g)));
            }
            if let Some(name) = &name {
                for (rp, rc) in self.files_matching(|q| {
                    q.ends_with(&format!("network-scripts/route-{name}"))
                        || q.ends_with(&format!("network-scripts/route6-{name}"))
                }) {
                    d.text.push_str(&format!("# {rp}\n{rc}"));
                    let rv = shell_vars(rc);
                    for (k, v) in &rv {
                        if let Some(idx) = k.strip_prefix("ADDRESS") {
                            let mask = rv
                                .get(&format!("NETMASK{idx}"))
                                .map(|m| mask_to_prefix(m))
                                .unwrap_or_else(|| "32".into());
                            if let Some(gw) = rv.get(&format!("GATEWAY{idx}")) {
                                d.routes.push(Route::new(&format!("{v}/{mask}"), gw));
                            }
                        }
                    }
                    // "dest via gw [dev x]" lines (route6-* and the ip-route style).
                    for line in rc.lines() {
                        let t: Vec<&str> = line.split_whitespace().collect();
                        if t.len() >= 3 && t[1] == "via" && !line.starts_with('#') {
                            d.routes.push(Route::new(t[0], t[2]));
                        }
                    }
                }
            }
            return Some(d);
        }
        None
    }

    fn eni_device(&self, mac: &str) -> Option<DeviceConfig> {
        let name = self.udev_name_for_mac(mac)?;
        let mut d = DeviceConfig {
            name: Some(name.clone()),
            ..Default::default()
        };
        let mut any = false;
        for (p, c) in self.files_matching(|p| p.contains("etc/network/interfaces")) {
            for stanza in eni_stanzas(c) {
                let head: Vec<&str> = stanza[0].split_whitespace().collect();
                let dev = head.get(1).map(|s| s.split(':').next().unwrap_or(s));
                let is_iface = head.first() == Some(&"iface") && dev == Some(name.as_str());
                let is_auto = matches!(head.first(), Some(&"auto") | Some(&"allow-hotplug"))
                    && head[1..].contains(&name.as_str());
                if !(is_iface || is_auto) {
                    continue;
                }
                any = true;
                d.text.push_str(&format!("# {p}\n{}\n", stanza.join("\n")));
                if !is_iface {
                    continue;
                }
                if head.get(3) == Some(&"dhcp") && head.get(2) == Some(&"inet") {
                    d.dhcp4 = true;
                }
                let mut address: Option<String> = None;
                let mut netmask: Option<String> = None;
                for line in &stanza[1..] {
                    let t: Vec<&str> = line.split_whitespace().collect();
                    match t.first().copied() {
                        Some("address") if t.len() > 1 => address = Some(t[1].to_string()),
                        Some("netmask") if t.len() > 1 => netmask = Some(t[1].to_string()),
                        Some("gateway") if t.len() > 1 => {
                            d.routes.push(Route::new("default", t[1]))
                        }
                        Some("dns-nameservers") => d.dns.extend(t[1..].iter().map(|s| norm_ip(s))),
                        Some("post-up") | Some("up") => {
                            if let Some(r) = eni_route(&t[1..]) {
                                d.routes.push(r)
                            }
                        }
                        _ => {}
                    }
                }
                if let Some(a) = address {
                    let cidr = match (a.contains('/'), netmask) {
                        (true, _) => a,
                        (false, Some(m)) => format!("{a}/{}", mask_to_prefix(&m)),
                        (false, None) => a,
                    };
                    d.addresses.push(norm_cidr(&cidr));
                }
            }
        }
        any.then_some(d)
    }
}

/// Parses `route add [-A inet6] [-net|-host] DEST [netmask M] gw GW ...`.
fn eni_route(t: &[&str]) -> Option<Route> {
    if t.first() != Some(&"route") || t.get(1) != Some(&"add") {
        return None;
    }
    let mut dest: Option<String> = None;
    let mut mask: Option<String> = None;
    let mut gw: Option<String> = None;
    let mut i = 2;
    while i < t.len() {
        match t[i] {
            "-A" => i += 1,
            "-net" | "-host" => {}
            "netmask" => {
                mask = t.get(i + 1).map(|s| s.to_string());
                i += 1;
            }
            "gw" => {
                gw = t.get(i + 1).map(|s| s.to_string());
                i += 1;
            }
            "metric" | "dev" => i += 1,
            "||" => break,
            other if dest.is_none() => dest = Some(other.to_string()),
            _ => {}
        }
        i += 1;
    }
    let dest = dest?;
    let dest = match mask {
        Some(m) if !dest.contains('/') && dest != "default" => {
            format!("{dest}/{}", mask_to_prefix(&m))
        }
        _ => dest,
    };
    Some(Route::new(&dest, &gw?))
}

/// Splits an interfaces(5) file into stanzas (a header line plus its indented options).
fn eni_stanzas(c: &str) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    for line in c.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            if let Some(last) = out.last_mut() {
                last.push(line.trim().to_string());
            }
        } else {
            out.push(vec![line.trim().to_string()]);
        }
    }
    out
}

/// INI-style entries (section, key, value) in file order. Every `[Section]` header is also
/// recorded as a marker entry with an empty key and value, so callers can tell repeated
/// sections (networkd `[Route]`) apart.
fn ini(c: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    for line in c.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_string();
            out.push((section.clone(), String::new(), String::new()));
            continue;
        }
        if let Some((k, v)) = l.split_once('=') {
            out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

/// KEY=value lines of a shell-style file, quotes removed.
fn shell_vars(c: &str) -> BTreeMap<String, String> {
    c.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_string(),
                v.trim().trim_matches('"').trim_matches('\'').to_string(),
            )
        })
        .collect()
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)? + i;
    Some(&s[i..j])
}

/// "255.255.255.0" → "24"; a prefix length stays as is.
fn mask_to_prefix(m: &str) -> String {
    match m.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => u32::from(a).count_ones().to_string(),
        Ok(IpAddr::V6(a)) => u128::from(a).count_ones().to_string(),
        Err(_) => m.to_string(),
    }
}

fn norm_ip(s: &str) -> String {
    s.trim()
        .parse::<IpAddr>()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| s.trim().to_string())
}

fn norm_cidr(s: &str) -> String {
    match s.trim().split_once('/') {
        Some((a, p)) => format!("{}/{}", norm_ip(a), mask_to_prefix(p)),
        None => norm_ip(s),
    }
}

/// `default` → `0.0.0.0/0` or `::/0` by the gateway's family; CIDRs normalised.
fn norm_dest(to: &str, via: &str) -> String {
    if to == "default" || to.is_empty() {
        if via.contains(':') {
            "::/0"
        } else {
            "0.0.0.0/0"
        }
        .to_string()
    } else {
        norm_cidr(to)
    }
}

// ---------------------------------------------------------------------------------------
// Running the tools

/// Finds an executable on PATH or in the sbin directories (netplan lives in /usr/sbin,
/// which is not on a non-root user's PATH).
pub fn find_tool(name: &str, apt_package: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "`{name}` not found: install the apt package `{apt_package}` \
                 (apt-get install -y {apt_package}); these tests must not be skipped"
            )
        })
}

fn collect_files(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in rd {
        let p = e.map_err(|e| e.to_string())?.path();
        if p.is_dir() {
            collect_files(root, &p, out)?;
        } else {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let c = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            out.insert(rel, c);
        }
    }
    Ok(())
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective uid.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The interpreter of the `cloud-init` script (its `#!` line), else `python3`.
fn python_of(script: &Path) -> PathBuf {
    std::fs::read_to_string(script)
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.strip_prefix("#!"))
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .and_then(|w| match w.as_slice() {
                    [env, prog, ..] if env.ends_with("/env") => Some(PathBuf::from(prog)),
                    [interp, ..] => Some(PathBuf::from(interp)),
                    [] => None,
                })
        })
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// Runs `cloud-init devel net-convert` on `network_data`. Links in network_data.json need a
/// `name` (otherwise cloud-init looks the MAC up among *this host's* NICs): use
/// [`net_convert_with_macs`] for unnamed links.
pub fn net_convert(
    network_data: &str,
    input_kind: InputKind,
    output: OutputKind,
) -> Result<RenderedTree, String> {
    net_convert_with_macs(network_data, input_kind, output, &[])
}

/// [`net_convert`] with `-m name,mac` pairs (the NICs the "guest" has).
pub fn net_convert_with_macs(
    network_data: &str,
    input_kind: InputKind,
    output: OutputKind,
    macs: &[(&str, &str)],
) -> Result<RenderedTree, String> {
    let tool = find_tool("cloud-init", "cloud-init")?;
    let tmp = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let input = tmp.path().join(match input_kind {
        InputKind::Netplan => "network-config.yaml",
        InputKind::OpenStackJson => "network_data.json",
    });
    std::fs::write(&input, network_data).map_err(|e| format!("write input: {e}"))?;
    let out_dir = tmp.path().join("out");
    // The networkd renderer chowns its files to `systemd-network`, which fails unless root
    // (PermissionError; or "Unknown user" where that user does not exist). As non-root, run
    // the same cloud-init entry point with that chown disabled; the content is unchanged.
    let patched = output == OutputKind::Networkd && !running_as_root();
    let mut cmd = if patched {
        let mut c = Command::new(python_of(&tool));
        c.arg("-c").arg(
            "import sys, cloudinit.util; cloudinit.util.chownbyname = lambda *a, **k: None; \
             from cloudinit.cmd.main import main; sys.argv[0] = 'cloud-init'; sys.exit(main())",
        );
        c
    } else {
        Command::new(&tool)
    };
    cmd.args(["devel", "net-convert", "--network-data"])
        .arg(&input)
        .args(["--kind", input_kind.cli_name()])
        .args(["--distro", output.distro()])
        .args(["--output-kind", output.cli_name()])
        .arg("--directory")
        .arg(&out_dir);
    for (name, mac) in macs {
        // cloud-init compares against lowercased ethernet_mac_address.
        cmd.arg("--mac")
            .arg(format!("{name},{}", mac.to_ascii_lowercase()));
    }
    let shown = format!(
        "cloud-init devel net-convert{} --kind {} --distro {} --output-kind {}{}",
        if patched {
            " (chown disabled, non-root)"
        } else {
            ""
        },
        input_kind.cli_name(),
        output.distro(),
        output.cli_name(),
        macs.iter()
            .map(|(n, m)| format!(" -m {n},{m}"))
            .collect::<String>()
    );
    let start = Instant::now();
    let res = cmd
        .output()
        .map_err(|e| format!("{shown}: cannot run {}: {e}", tool.display()))?;
    let elapsed = start.elapsed();
    let stderr = String::from_utf8_lossy(&res.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&res.stdout).into_owned();
    if !res.status.success() {
        return Err(format!(
            "{shown} failed ({}):\n{stderr}{stdout}\ninput:\n{network_data}",
            res.status
        ));
    }
    let unexpected: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            !(l.trim().is_empty()
                || l.starts_with("Read input format")
                || l.starts_with("Wrote output format"))
        })
        .collect();
    if !unexpected.is_empty() {
        return Err(format!(
            "{shown} printed warnings:\n{}\ninput:\n{network_data}",
            unexpected.join("\n")
        ));
    }
    let mut files = BTreeMap::new();
    collect_files(&out_dir, &out_dir, &mut files)?;
    if files.is_empty() {
        return Err(format!("{shown} wrote nothing\ninput:\n{network_data}"));
    }
    Ok(RenderedTree {
        files,
        command: shown,
        stderr,
        elapsed,
    })
}

/// Writes `netplan_yaml` to `<root>/etc/netplan/50-cloud-init.yaml` (mode 0600) and runs
/// `netplan generate --root-dir <root>`. Returns the generated files under `<root>/run`
/// (`run/systemd/network/*`, `run/NetworkManager/*`, `run/udev/rules.d/*`), paths relative
/// to the root. Any error *or warning* netplan prints is an Err.
pub fn netplan_generate(netplan_yaml: &str) -> Result<RenderedTree, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let tool = find_tool("netplan", "netplan.io")?;
    let tmp = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let root = tmp.path();
    let conf_dir = root.join("etc/netplan");
    std::fs::create_dir_all(&conf_dir).map_err(|e| format!("mkdir: {e}"))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(conf_dir.join("50-cloud-init.yaml"))
        .map_err(|e| format!("write netplan config: {e}"))?;
    f.write_all(netplan_yaml.as_bytes())
        .map_err(|e| format!("write netplan config: {e}"))?;
    drop(f);
    let shown = "netplan generate --root-dir <tmp>".to_string();
    let start = Instant::now();
    let res = Command::new(&tool)
        .arg("generate")
        .arg("--root-dir")
        .arg(root)
        .output()
        .map_err(|e| format!("{shown}: cannot run {}: {e}", tool.display()))?;
    let elapsed = start.elapsed();
    let stderr = String::from_utf8_lossy(&res.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&res.stdout).into_owned();
    if !res.status.success() || !stderr.trim().is_empty() {
        return Err(format!(
            "{shown} {} :\n{stderr}{stdout}\ninput:\n{netplan_yaml}",
            if res.status.success() {
                "printed warnings"
            } else {
                "failed"
            }
        ));
    }
    let mut files = BTreeMap::new();
    for sub in [
        "run/systemd/network",
        "run/NetworkManager",
        "run/udev/rules.d",
    ] {
        collect_files(root, &root.join(sub), &mut files)?;
    }
    Ok(RenderedTree {
        files,
        command: shown,
        stderr,
        elapsed,
    })
}

/// What an Ubuntu guest does: cloud-init renders `network_data` to
/// `/etc/netplan/50-cloud-init.yaml`, then `netplan generate` consumes it. Accepts netplan v2
/// with or without the top-level `network:` key (cloud-init takes both; netplan itself
/// requires it) and network_data.json. Returns netplan's generated tree.
pub fn ubuntu_pipeline(network_data: &str, input_kind: InputKind) -> Result<RenderedTree, String> {
    let rendered = net_convert(network_data, input_kind, OutputKind::Netplan)?;
    let yaml = rendered
        .file("etc/netplan/50-cloud-init.yaml")
        .ok_or_else(|| format!("cloud-init wrote no netplan file:\n{}", rendered.all_text()))?;
    let mut t = netplan_generate(yaml)?;
    t.command = format!("{} | {}", rendered.command, t.command);
    t.elapsed += rendered.elapsed;
    Ok(t)
}

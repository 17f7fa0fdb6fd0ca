//! Guest NIC names (SPEC §2.4): the VM network's name when the kernel can take it as is,
//! otherwise a derived name; unique within the VM.
use sha2::{Digest, Sha256};

use crate::model::text::push_hex;

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
const MAX_LEN: usize = 15;
/// Names the kernel cannot register: `/proc/sys/net/*/conf/{all,default}` and bonding's file.
const RESERVED: [&str; 4] = ["lo", "all", "default", "bonding_masters"];

/// Whether a VM network name can be used unchanged as the guest NIC name.
pub fn usable_as_is(name: &str) -> bool {
    (1..=MAX_LEN).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        // ethN is the kernel's own namespace: a rename into it races with probing.
        && !name.starts_with("eth")
        && !RESERVED.contains(&name)
}

/// The derived form: lowercased, other characters as `-`, cut to 10, `-`, 4 hex digits.
fn derived(name: &str, attempt: u32) -> String {
    let mut base: String = name
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(10)
        .collect();
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    if attempt > 0 {
        // Only on a clash inside the VM, which a hash prefix makes vanishingly rare.
        hasher.update([0u8]);
        hasher.update(attempt.to_string().as_bytes());
    }
    let digest = hasher.finalize();
    base.push('-');
    push_hex(&mut base, digest[0]);
    push_hex(&mut base, digest[1]);
    base
}

/// Guest names for the given VM network names, in order, unique within the list.
pub fn guest_names<'a>(networks: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let networks: Vec<&str> = networks.into_iter().collect();
    // Names usable as they are first, so that a derived one never takes one of them; the
    // others stay empty until derived, each unique among all before it.
    let mut names: Vec<String> = networks
        .iter()
        .map(|n| {
            if usable_as_is(n) {
                n.to_string()
            } else {
                String::new()
            }
        })
        .collect();
    for (k, n) in networks.iter().enumerate() {
        if names[k].is_empty() {
            names[k] = (0..)
                .map(|attempt| derived(n, attempt))
                .find(|candidate| !names.contains(candidate))
                .expect("some attempt is free");
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex4(name: &str) -> String {
        let d = Sha256::digest(name.as_bytes());
        format!("{:02x}{:02x}", d[0], d[1])
    }

    #[test]
    fn plain_names_are_kept() {
        for n in [
            "external",
            "storage",
            "a",
            "lan_1",
            "net-a",
            "abcdefghijklmno",
        ] {
            assert!(usable_as_is(n), "{n}");
        }
    }

    #[test]
    fn unusable_names_are_derived() {
        assert_eq!(
            guest_names(["default"]),
            vec![format!("default-{}", hex4("default"))]
        );
        for n in [
            "eth1",
            "Ext",
            "1net",
            "abcdefghijklmnop",
            "lo",
            "all",
            "bonding_masters",
            "my.net",
            "",
        ] {
            assert!(!usable_as_is(n), "{n}");
        }
        let long = "ubuntu-rulai-multus-external-nad";
        assert_eq!(
            guest_names([long]),
            vec![format!("ubuntu-rul-{}", hex4(long))]
        );
        assert_eq!(
            guest_names(["My.Net"]),
            vec![format!("my-net-{}", hex4("My.Net"))]
        );
        for name in guest_names(["a-very-long-network-name-indeed", "Eth0", "x.y"]) {
            assert!(name.len() <= MAX_LEN, "{name}");
        }
    }

    #[test]
    fn names_are_unique_within_the_vm() {
        let clash = format!("default-{}", hex4("default"));
        let names = guest_names(["default", clash.as_str()]);
        assert_eq!(names[1], clash, "the usable name keeps its own name");
        assert_ne!(names[0], names[1]);
        assert!(names[0].starts_with("default-"));
    }
}

//! MAC addresses: parsing, formatting and the deterministic derivation of SPEC §2.3.
use std::fmt;

use super::{config::MacPrefix, identity::Identity, text::hex_digits};

/// KubeVirt gives the masquerade guest this MAC; no other NIC may have it.
pub const RESERVED: Mac = Mac(0x02_00_00_00_00_00);

/// A 48-bit MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub u64);

impl Mac {
    /// Parses `aa:bb:cc:dd:ee:ff` (or with `-`), the forms KubeVirt accepts for 48-bit MACs.
    pub fn parse(s: &str) -> Option<Mac> {
        // Byte by byte: each MAC of a request is parsed, and splitting on two separators
        // cost more than the rest of the MAC rule. Hex digits only (`from_str_radix` took a
        // sign too).
        fn hex(b: u8) -> Option<u64> {
            char::from(b).to_digit(16).map(u64::from)
        }
        let b = s.as_bytes();
        if b.len() != 17 {
            return None;
        }
        let mut value = 0u64;
        for i in 0..6 {
            if i > 0 && !matches!(b[3 * i - 1], b':' | b'-') {
                return None;
            }
            value = (value << 8) | (hex(b[3 * i])? << 4) | hex(b[3 * i + 1])?;
        }
        Some(Mac(value))
    }

    fn first_byte(self) -> u8 {
        (self.0 >> 40) as u8
    }

    pub fn is_multicast(self) -> bool {
        self.first_byte() & 1 == 1
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Why this MAC cannot be used for a guest NIC, if it cannot.
    pub fn unusable(self) -> Option<&'static str> {
        if self.is_zero() {
            Some("is all zeros")
        } else if self.is_multicast() {
            Some("is a multicast address (lowest bit of the first byte is set)")
        } else if self == RESERVED {
            Some("is reserved by KubeVirt for the masquerade binding")
        } else {
            None
        }
    }
}

impl Mac {
    /// `aa:bb:cc:dd:ee:ff` on the stack: written on every /mutate, where six `{:02x}`
    /// through the formatter cost more than the rest of the MAC rule.
    fn text_bytes(self) -> [u8; 17] {
        let mut out = [b':'; 17];
        for (i, b) in self.0.to_be_bytes()[2..].iter().enumerate() {
            out[3 * i..3 * i + 2].copy_from_slice(&hex_digits(*b));
        }
        out
    }

    /// The text form as a `String`, in one allocation (`to_string` takes two).
    pub fn text(self) -> String {
        let bytes = self.text_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.text_bytes();
        f.write_str(&String::from_utf8_lossy(&bytes))
    }
}

/// One attempt of the derivation: `attempt` 0 is the first (no counter in the input).
pub fn derive(
    prefix: &MacPrefix,
    salt: &str,
    namespace: &str,
    vm: &str,
    network: &str,
    attempt: u32,
) -> Mac {
    let digest = Identity {
        salt,
        namespace,
        vm,
        network,
    }
    .digest(attempt);
    let prefix = prefix.bytes();
    let mut bytes = [0u8; 6];
    bytes[..prefix.len()].copy_from_slice(prefix);
    bytes[prefix.len()..].copy_from_slice(&digest[..6 - prefix.len()]);
    Mac(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// The first attempt whose MAC is not reserved and for which `taken` is false.
pub fn derive_free(
    prefix: &MacPrefix,
    salt: &str,
    namespace: &str,
    vm: &str,
    network: &str,
    taken: impl FnMut(Mac) -> bool,
) -> Mac {
    // Each attempt is a fresh 24- to 40-bit draw; the bound keeps a pathological `taken`
    // from looping forever (unreachable with fewer than 2^24 MACs on one network).
    first_usable(
        (0..=u32::MAX).map(|n| derive(prefix, salt, namespace, vm, network, n)),
        taken,
    )
    .expect("2^32 attempts cannot all collide")
}

/// The first candidate that is not KubeVirt's reserved MAC and not `taken`.
fn first_usable(
    candidates: impl IntoIterator<Item = Mac>,
    mut taken: impl FnMut(Mac) -> bool,
) -> Option<Mac> {
    candidates
        .into_iter()
        .find(|m| *m != RESERVED && !taken(*m))
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    /// Independent re-computation of the SPEC formula for one known input.
    #[test]
    fn derivation_matches_spec_formula() {
        let mut h = Sha256::new();
        h.update(b"\0default\0ubuntu-vm\0external");
        let d = h.finalize();
        let expected = format!(
            "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            d[0], d[1], d[2], d[3], d[4]
        );
        let got = derive(
            &MacPrefix::default(),
            "",
            "default",
            "ubuntu-vm",
            "external",
            0,
        );
        assert_eq!(got.to_string(), expected);
        let mut h = Sha256::new();
        h.update(b"salt\0ns\0vm\0net\x002");
        let d = h.finalize();
        let prefix: MacPrefix = "0a:58:0a".parse().unwrap();
        let expected = format!("0a:58:0a:{:02x}:{:02x}:{:02x}", d[0], d[1], d[2]);
        assert_eq!(
            derive(&prefix, "salt", "ns", "vm", "net", 2).to_string(),
            expected
        );
    }

    #[test]
    fn collisions_move_to_the_next_attempt() {
        let p = MacPrefix::default();
        let first = derive(&p, "", "a", "b", "c", 0);
        let second = derive(&p, "", "a", "b", "c", 1);
        assert_ne!(first, second);
        assert_eq!(derive_free(&p, "", "a", "b", "c", |m| m == first), second);
        assert_eq!(derive_free(&p, "", "a", "b", "c", |_| false), first);
    }

    #[test]
    fn the_reserved_mac_is_never_handed_out() {
        let other = Mac(0x02_00_00_00_00_01);
        assert_eq!(first_usable([RESERVED, other], |_| false), Some(other));
        assert_eq!(first_usable([RESERVED], |_| false), None);
    }

    #[test]
    fn parse_and_format() {
        let m = Mac::parse("02:AB:cd:00:11:ff").unwrap();
        assert_eq!(m.to_string(), "02:ab:cd:00:11:ff");
        assert_eq!(Mac::parse("02-ab-cd-00-11-ff"), Some(m));
        assert_eq!(Mac::parse("02-ab:cd-00:11-ff"), Some(m));
        for bad in [
            "",
            "02:ab:cd:00:11",
            "02:ab:cd:00:11:ff:00",
            "0g:ab:cd:00:11:ff",
            "2:ab:cd:00:11:ff",
            "+2:ab:cd:00:11:ff",
            "02:ab:cd:00:11:f",
            "02:ab:cd:00:11.ff",
            "02ab:cd:00:11:ff:",
            "02:ab:cd:00:11:ff\n",
            "02:ab:cd:00:11:fé",
        ] {
            assert_eq!(Mac::parse(bad), None, "{bad}");
        }
        assert!(Mac::parse("01:00:5e:00:00:01").unwrap().is_multicast());
        assert!(
            Mac::parse("00:00:00:00:00:00")
                .unwrap()
                .unusable()
                .is_some()
        );
        assert!(RESERVED.unusable().is_some());
        assert!(m.unusable().is_none());
    }
}

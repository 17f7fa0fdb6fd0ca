//! Small values written into a `String` without the formatter, and CIDRs read without
//! ipnet's parser: each `/mutate` writes MACs, addresses, indexes and prefix lengths, and
//! through `core::fmt` an IPv4 address alone costs more than the rest of its line of network
//! config; each decision reads the requested addresses.
use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr},
};

use ipnet::IpNet;

/// `b` as two lowercase hex digits (`{b:02x}`), as bytes.
pub fn hex_digits(b: u8) -> [u8; 2] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]]
}

/// Appends `b` as two lowercase hex digits (`{b:02x}`).
pub fn push_hex(out: &mut String, b: u8) {
    for d in hex_digits(b) {
        out.push(char::from(d));
    }
}

/// Appends `n` in decimal (`{n}`).
pub fn push_decimal(out: &mut String, n: u64) {
    // u64::MAX has 20 digits.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for d in &digits[at..] {
        out.push(char::from(*d));
    }
}

fn push_v4(out: &mut String, ip: Ipv4Addr) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_decimal(out, u64::from(octet));
    }
}

/// Appends `ip` as `Display` writes it (IPv6 through the formatter: its shortest form has
/// rules of its own, and IPv6 NICs are the fewer).
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => push_v4(out, v4),
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Appends `net` as `Display` writes it: `address/prefix`.
pub fn push_net(out: &mut String, net: &IpNet) {
    push_ip(out, net.addr());
    out.push('/');
    push_decimal(out, u64::from(net.prefix_len()));
}

/// `s` as [`IpNet`]'s `FromStr` reads it. ipnet's parser tries IPv4, then IPv6, through
/// boxed alternatives that back up on failure; an IPv4 CIDR in the form std reads (no leading
/// zeros in octets) is read here, everything else by ipnet, so what is accepted and what it
/// means is ipnet's either way.
pub fn parse_net(s: &str) -> Option<IpNet> {
    let fast = s.split_once('/').and_then(|(addr, prefix)| {
        let addr: Ipv4Addr = addr.parse().ok()?;
        // ipnet reads one or two digits, below 33.
        if !(1..=2).contains(&prefix.len()) || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        IpNet::new(IpAddr::V4(addr), prefix.parse().ok()?).ok()
    });
    fast.or_else(|| s.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn written(f: impl FnOnce(&mut String)) -> String {
        let mut out = String::from(">");
        f(&mut out);
        out
    }

    proptest! {
        #[test]
        fn each_writes_what_display_writes(n: u64, b: u8, v4: u32, v6: u128, p4 in 0u8..=32, p6 in 0u8..=128) {
            prop_assert_eq!(written(|o| push_decimal(o, n)), format!(">{n}"));
            prop_assert_eq!(written(|o| push_hex(o, b)), format!(">{b:02x}"));
            for ip in [IpAddr::from(v4.to_be_bytes()), IpAddr::from(v6.to_be_bytes())] {
                prop_assert_eq!(written(|o| push_ip(o, ip)), format!(">{ip}"));
                let net = IpNet::new(ip, if ip.is_ipv4() { p4 } else { p6 }).unwrap();
                prop_assert_eq!(written(|o| push_net(o, &net)), format!(">{net}"));
            }
        }
    }

    proptest! {
        #[test]
        fn parse_net_reads_what_ipnet_reads(
            s in prop_oneof![
                any::<String>(),
                "[0-9]{1,4}(\\.[0-9]{1,4}){0,4}(/[+0-9]{0,4})?",
                "[0-9a-f:.]{0,40}/[0-9]{0,4}",
            ]
        ) {
            prop_assert_eq!(parse_net(&s), s.parse::<IpNet>().ok(), "{:?}", s);
        }
    }

    #[test]
    fn edges() {
        for s in [
            "10.0.0.5/24",
            "010.0.0.5/24",
            "10.0.0.5/08",
            "10.0.0.5/33",
            "10.0.0.5/+8",
            "10.0.0.5/",
            "::1/128",
            "10.0.0.5",
        ] {
            assert_eq!(parse_net(s), s.parse::<IpNet>().ok(), "{s}");
        }
        for n in [0, 9, 10, 255, u64::MAX] {
            assert_eq!(written(|o| push_decimal(o, n)), format!(">{n}"));
        }
        let ip: IpAddr = "0.0.0.0".parse().unwrap();
        assert_eq!(written(|o| push_ip(o, ip)), ">0.0.0.0");
        let net: IpNet = "255.255.255.255/32".parse().unwrap();
        assert_eq!(written(|o| push_net(o, &net)), ">255.255.255.255/32");
    }
}

//! Address pools (SPEC §2.10): the NAD annotation `kubevirt-net-webhook.io/address-pool`, a
//! comma-separated list of ranges `FIRST-LAST`, CIDRs and single addresses, IPv4 and/or IPv6.
//!
//! A pool is kept as its ranges (`u128` bounds), never as a list of addresses: a /16 or an
//! IPv6 /64 costs a few dozen bytes. Each family is its own pool ([`Block`]): its ranges in
//! the order written, each in ascending order, so that index `i` of the pool is one address.
use std::{fmt, net::IpAddr};

use super::text::parse_net;
use ipnet::IpNet;

/// Why a pool annotation cannot be used. The texts are shown to users (as warnings, and in
/// denials when a VM needs the pool), after the NAD's name and the annotation key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Nothing but commas and spaces.
    #[error(
        "is empty; write comma-separated ranges like 10.0.0.10-10.0.0.99 or CIDRs like 10.0.0.0/24"
    )]
    Empty,
    /// One entry of the list is wrong.
    #[error("entry {entry:?} {problem}")]
    Entry { entry: String, problem: Problem },
}

/// What is wrong with one entry of a pool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error(
        "is not an address range FIRST-LAST, a CIDR or an address (write like 10.0.0.10-10.0.0.99, 10.0.0.0/24 or fd00::/64)"
    )]
    Syntax,
    #[error("mixes IPv4 and IPv6; write one range per family")]
    MixedFamilies,
    #[error("starts after it ends; write the lower address first")]
    Reversed,
    #[error("has host bits set; write the CIDR as {0}")]
    HostBits(IpNet),
    #[error(
        "is not inside the NetworkAttachmentDefinition's subnet ({0}); use addresses inside it"
    )]
    OutsideSubnet(String),
    #[error(
        "needs a prefix length: the NetworkAttachmentDefinition's IPAM has no {0} subnet, so write this part of the pool as a CIDR (like 10.0.0.0/24), or give the IPAM a subnet"
    )]
    NoSubnet(Family),
    #[error("overlaps entry {0:?}; list every address once")]
    Overlaps(String),
    #[error("makes the IPv6 pool larger than 2^128 - 1 addresses; use a smaller range")]
    TooLarge,
}

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() { Self::V4 } else { Self::V6 }
    }

    fn of_net(net: &IpNet) -> Self {
        Self::of(net.addr())
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// An address as a number (IPv4 in the low 32 bits), for range arithmetic.
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The inverse of [`to_u128`] (an IPv4 value above `u32::MAX` is cut to its low 32 bits).
pub fn from_u128(value: u128, family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4((value as u32).into()),
        Family::V6 => IpAddr::V6(value.into()),
    }
}

/// One range of a pool, both ends included, with the subnet its addresses are written in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub first: u128,
    pub last: u128,
    /// The NAD's subnet holding the range, or the entry's own CIDR when the NAD's IPAM has
    /// no subnet of the family: gives the prefix length and the network/broadcast addresses.
    pub subnet: IpNet,
    /// The entry as written.
    pub entry: String,
}

impl Span {
    /// How many addresses the range holds (at least 1; `None` only for all of IPv6).
    fn size(&self) -> Option<u128> {
        (self.last - self.first).checked_add(1)
    }

    pub fn contains(&self, value: u128) -> bool {
        (self.first..=self.last).contains(&value)
    }
}

/// One family of a pool: its ranges, in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub family: Family,
    pub spans: Vec<Span>,
    size: u128,
}

impl Block {
    /// How many addresses the pool of this family has (reserved ones included).
    pub fn size(&self) -> u128 {
        self.size
    }

    /// The range holding pool index `index` and the address there; `index < size`.
    pub fn at(&self, mut index: u128) -> Option<(usize, u128)> {
        for (i, span) in self.spans.iter().enumerate() {
            let size = span.last - span.first; // one less than the size: no overflow
            if index <= size {
                return Some((i, span.first + index));
            }
            index -= size + 1;
        }
        None
    }

    /// The pool index of the first address of range `span`.
    pub fn start_of(&self, span: usize) -> u128 {
        self.spans[..span]
            .iter()
            .map(|s| s.last - s.first + 1)
            .sum()
    }

    /// The range holding `ip`, if the pool has it.
    pub fn span_of(&self, ip: IpAddr) -> Option<&Span> {
        if Family::of(ip) != self.family {
            return None;
        }
        let value = to_u128(ip);
        self.spans.iter().find(|s| s.contains(value))
    }

    /// Whether `value` is the network address, or for IPv4 the broadcast address, of the
    /// subnet of `span` (the addresses §2.5 denies as "not a host address").
    pub fn is_network_or_broadcast(&self, span: &Span, value: u128) -> bool {
        match span.subnet {
            IpNet::V4(n) if n.prefix_len() <= 30 => {
                value == u128::from(u32::from(n.network()))
                    || value == u128::from(u32::from(n.broadcast()))
            }
            IpNet::V6(n) if n.prefix_len() <= 126 => value == u128::from(n.network()),
            _ => false,
        }
    }

    /// `value` written as the annotation takes it: the address with its subnet's prefix.
    pub fn net(&self, span: &Span, value: u128) -> IpNet {
        IpNet::new(from_u128(value, self.family), span.subnet.prefix_len())
            .expect("the prefix comes from a subnet of the same family")
    }

    /// The ranges as written, for messages.
    pub fn describe(&self) -> String {
        self.spans
            .iter()
            .map(|s| s.entry.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A NAD's address pool: at most one [`Block`] per family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pool {
    pub v4: Option<Block>,
    pub v6: Option<Block>,
}

impl Pool {
    /// Parses the annotation text of a NAD whose IPAM has `subnets`: every entry must lie
    /// inside one of them when there are some of its family.
    pub fn parse(text: &str, subnets: &[IpNet]) -> Result<Self, Error> {
        let mut spans: Vec<(Family, Span)> = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let fail = |problem| Error::Entry {
                entry: entry.to_string(),
                problem,
            };
            let (family, first, last, own) = bounds(entry).map_err(fail)?;
            let family_subnets: Vec<&IpNet> = subnets
                .iter()
                .filter(|s| Family::of_net(s) == family)
                .collect();
            let subnet = if family_subnets.is_empty() {
                own.ok_or(fail(Problem::NoSubnet(family)))?
            } else {
                **family_subnets
                    .iter()
                    .find(|s| {
                        let s = s.trunc();
                        s.contains(&from_u128(first, family))
                            && s.contains(&from_u128(last, family))
                    })
                    .ok_or_else(|| {
                        fail(Problem::OutsideSubnet(
                            family_subnets
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", "),
                        ))
                    })?
            };
            spans.push((
                family,
                Span {
                    first,
                    last,
                    subnet: subnet.trunc(),
                    entry: entry.to_string(),
                },
            ));
        }
        if spans.is_empty() {
            return Err(Error::Empty);
        }
        let mut pool = Pool::default();
        for family in [Family::V4, Family::V6] {
            let mine: Vec<Span> = spans
                .iter()
                .filter(|(f, _)| *f == family)
                .map(|(_, s)| s.clone())
                .collect();
            if mine.is_empty() {
                continue;
            }
            let mut sorted: Vec<&Span> = mine.iter().collect();
            sorted.sort_by_key(|s| s.first);
            for pair in sorted.windows(2) {
                if pair[1].first <= pair[0].last {
                    return Err(Error::Entry {
                        entry: pair[1].entry.clone(),
                        problem: Problem::Overlaps(pair[0].entry.clone()),
                    });
                }
            }
            let mut size: u128 = 0;
            for s in &mine {
                size = s
                    .size()
                    .and_then(|n| size.checked_add(n))
                    .ok_or_else(|| Error::Entry {
                        entry: s.entry.clone(),
                        problem: Problem::TooLarge,
                    })?;
            }
            let block = Some(Block {
                family,
                spans: mine,
                size,
            });
            match family {
                Family::V4 => pool.v4 = block,
                Family::V6 => pool.v6 = block,
            }
        }
        Ok(pool)
    }

    /// The blocks, IPv4 first: the order addresses are written in.
    pub fn blocks(&self) -> impl Iterator<Item = &Block> {
        self.v4.iter().chain(self.v6.iter())
    }

    /// The block of `ip`'s family.
    pub fn block(&self, family: Family) -> Option<&Block> {
        match family {
            Family::V4 => self.v4.as_ref(),
            Family::V6 => self.v6.as_ref(),
        }
    }

    /// Whether `ip` is one of the pool's addresses.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.block(Family::of(ip))
            .is_some_and(|b| b.span_of(ip).is_some())
    }
}

/// Family, first and last address of one entry, and its own CIDR when written as one.
fn bounds(entry: &str) -> Result<(Family, u128, u128, Option<IpNet>), Problem> {
    if let Some((first, last)) = entry.split_once('-') {
        let first: IpAddr = first.trim().parse().map_err(|_| Problem::Syntax)?;
        let last: IpAddr = last.trim().parse().map_err(|_| Problem::Syntax)?;
        if first.is_ipv4() != last.is_ipv4() {
            return Err(Problem::MixedFamilies);
        }
        let (a, b) = (to_u128(first), to_u128(last));
        if a > b {
            return Err(Problem::Reversed);
        }
        return Ok((Family::of(first), a, b, None));
    }
    if entry.contains('/') {
        let net = parse_net(entry).ok_or(Problem::Syntax)?;
        if net.addr() != net.network() {
            return Err(Problem::HostBits(net.trunc()));
        }
        let (first, last) = match net {
            IpNet::V4(n) => (
                u128::from(u32::from(n.network())),
                u128::from(u32::from(n.broadcast())),
            ),
            IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
        };
        return Ok((Family::of_net(&net), first, last, Some(net)));
    }
    let ip: IpAddr = entry.parse().map_err(|_| Problem::Syntax)?;
    let own = IpNet::new(ip, if ip.is_ipv4() { 32 } else { 128 }).expect("full-length prefix");
    Ok((Family::of(ip), to_u128(ip), to_u128(ip), Some(own)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_cidrs_and_addresses_in_the_order_written() {
        let pool = Pool::parse(
            " 10.0.0.200-10.0.0.209 , 10.0.0.16/30,10.0.0.5, fd00::10-fd00::1f",
            &nets(&["10.0.0.0/24", "fd00::/64"]),
        )
        .unwrap();
        let v4 = pool.v4.as_ref().unwrap();
        assert_eq!(v4.size(), 10 + 4 + 1);
        let addr = |i| from_u128(v4.at(i).unwrap().1, Family::V4);
        assert_eq!(addr(0), ip("10.0.0.200"));
        assert_eq!(addr(9), ip("10.0.0.209"));
        assert_eq!(addr(10), ip("10.0.0.16"));
        assert_eq!(addr(14), ip("10.0.0.5"));
        assert_eq!(v4.at(15), None);
        assert_eq!(v4.start_of(2), 14);
        // Written with the NAD subnet's prefix, not the entry's.
        let (span, value) = v4.at(10).unwrap();
        assert_eq!(v4.net(&v4.spans[span], value).to_string(), "10.0.0.16/24");
        assert_eq!(
            v4.describe(),
            "10.0.0.200-10.0.0.209, 10.0.0.16/30, 10.0.0.5"
        );
        let v6 = pool.v6.as_ref().unwrap();
        assert_eq!(
            (v6.size(), v6.spans[0].subnet.to_string()),
            (16, "fd00::/64".into())
        );
        // The IPv6 range needs a prefix: the NAD has no IPv6 subnet.
        let e = Pool::parse("fd00::10-fd00::1f", &nets(&["10.0.0.0/24"])).unwrap_err();
        assert!(
            matches!(
                &e,
                Error::Entry {
                    problem: Problem::NoSubnet(Family::V6),
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("no IPv6 subnet"), "{e}");
        let dual = Pool::parse("fd00::/120, 10.0.0.0/24", &[]).unwrap();
        assert_eq!(
            dual.blocks().map(|b| b.family).collect::<Vec<_>>(),
            [Family::V4, Family::V6]
        );
        assert_eq!(dual.v6.as_ref().unwrap().size(), 256);
        assert!(dual.contains(ip("fd00::ff")) && !dual.contains(ip("fd00::100")));
    }

    #[test]
    fn a_large_pool_is_ranges_not_addresses() {
        let pool = Pool::parse("10.20.0.0/16, fd00:20::/64", &[]).unwrap();
        assert_eq!(pool.v4.as_ref().unwrap().size(), 65_536);
        let v6 = pool.v6.as_ref().unwrap();
        assert_eq!(v6.size(), 1u128 << 64);
        assert_eq!(
            from_u128(v6.at((1u128 << 64) - 1).unwrap().1, Family::V6),
            ip("fd00:20::ffff:ffff:ffff:ffff")
        );
        assert_eq!(v6.spans.len(), 1);
        // All of IPv6 does not fit a u128 count.
        assert!(matches!(
            Pool::parse("::/0", &[]),
            Err(Error::Entry {
                problem: Problem::TooLarge,
                ..
            })
        ));
        assert_eq!(
            Pool::parse("0.0.0.0/0", &[]).unwrap().v4.unwrap().size(),
            1 << 32
        );
    }

    #[test]
    fn network_broadcast_and_prefixes() {
        let pool = Pool::parse("10.0.0.0/30, 10.0.1.7/32, fd00::/127, fd00:1::/64", &[]).unwrap();
        let v4 = pool.v4.as_ref().unwrap();
        let s = &v4.spans[0];
        assert!(v4.is_network_or_broadcast(s, to_u128(ip("10.0.0.0"))));
        assert!(v4.is_network_or_broadcast(s, to_u128(ip("10.0.0.3"))));
        assert!(!v4.is_network_or_broadcast(s, to_u128(ip("10.0.0.1"))));
        assert!(!v4.is_network_or_broadcast(&v4.spans[1], to_u128(ip("10.0.1.7"))));
        let v6 = pool.v6.as_ref().unwrap();
        assert!(
            !v6.is_network_or_broadcast(&v6.spans[0], to_u128(ip("fd00::"))),
            "/127: both are hosts"
        );
        assert!(v6.is_network_or_broadcast(&v6.spans[1], to_u128(ip("fd00:1::"))));
        assert!(
            !v6.is_network_or_broadcast(&v6.spans[1], to_u128(ip("fd00:1::ffff:ffff:ffff:ffff")))
        );
    }

    #[test]
    fn errors_name_the_entry_and_the_fix() {
        let subnet = nets(&["10.0.0.0/24"]);
        for (text, needles) in [
            ("", vec!["is empty", "10.0.0.10-10.0.0.99"]),
            (" , ", vec!["is empty"]),
            ("10.0.0.300", vec!["\"10.0.0.300\"", "FIRST-LAST"]),
            ("10.0.0.1-", vec!["\"10.0.0.1-\"", "FIRST-LAST"]),
            ("10.0.0.9-10.0.0.1", vec!["lower address first"]),
            ("10.0.0.1-fd00::1", vec!["mixes IPv4 and IPv6"]),
            ("10.0.0.5/24", vec!["host bits", "10.0.0.0/24"]),
            (
                "10.0.1.0/28",
                vec!["\"10.0.1.0/28\"", "not inside", "10.0.0.0/24"],
            ),
            ("10.0.0.250-10.0.1.5", vec!["not inside"]),
            (
                "10.0.0.0/25, 10.0.0.100-10.0.0.130",
                vec![
                    "\"10.0.0.100-10.0.0.130\"",
                    "overlaps entry \"10.0.0.0/25\"",
                ],
            ),
            ("10.0.0.5, 10.0.0.5", vec!["overlaps"]),
        ] {
            let e = Pool::parse(text, &subnet).unwrap_err().to_string();
            for n in needles {
                assert!(e.contains(n), "{text:?}: {n:?} not in {e}");
            }
        }
        // Adjacent ranges do not overlap.
        assert!(Pool::parse("10.0.0.0/25, 10.0.0.128/25", &subnet).is_ok());
        // A NAD with two IPv4 subnets: an entry may be in either, not across both.
        let two = nets(&["10.0.0.0/24", "10.0.1.0/24"]);
        assert!(Pool::parse("10.0.1.10-10.0.1.20, 10.0.0.5", &two).is_ok());
        assert!(Pool::parse("10.0.0.200-10.0.1.20", &two).is_err());
    }
}

//! Violations and ratcheting (SPEC §2.11). Every denial names a stable [`Rule`] and a subject
//! (the interface, network, NAD, address or MAC it is about), so that an UPDATE can be told
//! apart from what the stored object already had, and the audit log, the metrics and `audit`
//! can name the rule.
//!
//! Two violations are the same when their rule and subject are equal. A subject is written
//! so that it changes when the user changes what the violation is about: a bridge binding is
//! `interface "x" on NAD ns/n` (moving the interface to another incompatible NAD is a new
//! violation), a conflict is the network and the address or MAC (taking another taken
//! address is a new one). The README lists them per rule.
use std::cell::OnceCell;

use foldhash::{HashSet, HashSetExt};

/// A rule the webhook enforces, by its stable id (kebab-case, as in the README's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    UnpairedName,
    DuplicateName,
    ForeignNad,
    MissingNad,
    BridgeBinding,
    InvalidAnnotation,
    UnknownNetwork,
    PodNetworkAddress,
    NotAHostAddress,
    AddressOutsideSubnet,
    DuplicateAddress,
    AddressConflict,
    GatewayOutsideSubnet,
    InvalidMac,
    UnusableMac,
    DuplicateMac,
    MacConflict,
    SharedTemplateMac,
    SharedTemplateAddress,
    PoolFull,
    NetworkDataTooLarge,
    TooLarge,
}

impl Rule {
    /// Every rule, in the order of the README's table.
    pub const ALL: [Rule; 22] = [
        Rule::UnpairedName,
        Rule::DuplicateName,
        Rule::ForeignNad,
        Rule::MissingNad,
        Rule::BridgeBinding,
        Rule::InvalidAnnotation,
        Rule::UnknownNetwork,
        Rule::PodNetworkAddress,
        Rule::NotAHostAddress,
        Rule::AddressOutsideSubnet,
        Rule::DuplicateAddress,
        Rule::AddressConflict,
        Rule::GatewayOutsideSubnet,
        Rule::InvalidMac,
        Rule::UnusableMac,
        Rule::DuplicateMac,
        Rule::MacConflict,
        Rule::SharedTemplateMac,
        Rule::SharedTemplateAddress,
        Rule::PoolFull,
        Rule::NetworkDataTooLarge,
        Rule::TooLarge,
    ];

    /// The stable id, as in `auditAnnotations`, metrics, `audit` and the README.
    pub fn id(self) -> &'static str {
        self.describe().0
    }

    /// The SPEC section that states the rule.
    pub fn section(self) -> &'static str {
        self.describe().1
    }

    /// What the rule means, in a line.
    pub fn summary(self) -> &'static str {
        self.describe().2
    }

    /// The rule of an id.
    pub fn of_id(id: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.id() == id)
    }

    fn describe(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Rule::UnpairedName => (
                "unpaired-name",
                "2.1",
                "an interface without a network of the same name, or a network without an interface",
            ),
            Rule::DuplicateName => (
                "duplicate-name",
                "2.1",
                "two interfaces, or two networks, with one name",
            ),
            Rule::ForeignNad => (
                "foreign-nad",
                "2.7",
                "a NAD the VM's namespace may not use (nadNamespaceIsolation)",
            ),
            Rule::MissingNad => (
                "missing-nad",
                "2.2",
                "a NAD that does not exist (only with missingNetworkAttachment: deny)",
            ),
            Rule::BridgeBinding => (
                "bridge-binding",
                "2.2",
                "the bridge binding on a NAD whose CNI type cannot carry it (macvlan, ipvlan)",
            ),
            Rule::InvalidAnnotation => (
                "invalid-annotation",
                "2.4, 2.5",
                "a webhook annotation that cannot be read (networks, network-data)",
            ),
            Rule::UnknownNetwork => (
                "unknown-network",
                "2.5",
                "the networks annotation names a network the VM does not have",
            ),
            Rule::PodNetworkAddress => (
                "pod-network-address",
                "2.5",
                "an address requested for the pod network",
            ),
            Rule::NotAHostAddress => (
                "not-a-host-address",
                "2.5",
                "a requested address that is its subnet's network or broadcast address",
            ),
            Rule::AddressOutsideSubnet => (
                "address-outside-subnet",
                "2.5",
                "a requested address outside the NAD's subnet",
            ),
            Rule::DuplicateAddress => (
                "duplicate-address",
                "2.5",
                "one address requested for two networks of the same VM",
            ),
            Rule::AddressConflict => (
                "address-conflict",
                "2.5, 2.10",
                "an address another VM holds on the same NAD",
            ),
            Rule::GatewayOutsideSubnet => (
                "gateway-outside-subnet",
                "2.5",
                "a requested gateway the guest cannot reach",
            ),
            Rule::InvalidMac => ("invalid-mac", "2.3", "a macAddress that is not a MAC"),
            Rule::UnusableMac => (
                "unusable-mac",
                "2.3",
                "a multicast, all-zero or reserved MAC",
            ),
            Rule::DuplicateMac => (
                "duplicate-mac",
                "2.3",
                "one MAC on two interfaces of the same VM",
            ),
            Rule::MacConflict => (
                "mac-conflict",
                "2.3",
                "a MAC another VM uses on the same NAD",
            ),
            Rule::SharedTemplateMac => (
                "shared-template-mac",
                "2.8",
                "a macAddress in a template every replica shares",
            ),
            Rule::SharedTemplateAddress => (
                "shared-template-address",
                "2.8",
                "a static address in a template every replica shares",
            ),
            Rule::PoolFull => (
                "pool-full",
                "2.10",
                "a NAD's address pool has no free address for the VM",
            ),
            Rule::NetworkDataTooLarge => (
                "network-data-too-large",
                "2.4",
                "the requested addresses need more cloud-init network config than KubeVirt allows inline",
            ),
            Rule::TooLarge => (
                "too-large",
                "3",
                "more interfaces, networks, volumes or annotation entries than the webhook reviews",
            ),
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// One thing wrong with an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: Rule,
    /// What it is about, e.g. `interface "ext" on NAD ns/macvlan`; with `rule`, what makes two
    /// violations the same.
    pub subject: String,
    /// The message for the user: what, where, and how to fix it.
    pub message: String,
}

/// The stored object's violations, as (rule, subject) pairs.
pub(super) type Keys = HashSet<(Rule, String)>;

/// The stored object's violations, evaluated the first time a rule asks: most UPDATEs have
/// no violation at all and never pay for a second evaluation.
pub(super) struct Stored<'s> {
    evaluate: &'s dyn Fn() -> Keys,
    keys: OnceCell<Keys>,
}

impl<'s> Stored<'s> {
    pub(super) fn new(evaluate: &'s dyn Fn() -> Keys) -> Self {
        Self {
            evaluate,
            keys: OnceCell::new(),
        }
    }

    fn has(&self, rule: Rule, subject: &str) -> bool {
        // A pair of owned strings is the key; the lookup builds one only when asked.
        self.keys
            .get_or_init(self.evaluate)
            .contains(&(rule, subject.to_string()))
    }
}

/// What the rules find while they run: warnings, and violations sorted into those the UPDATE
/// brings (denied) and those the stored object had too (ratcheted).
pub(super) struct Findings<'s> {
    pub warnings: Vec<String>,
    pub denials: Vec<Violation>,
    pub ratcheted: Vec<Violation>,
    /// Every (rule, subject) found, ratcheted or not, item by item for grouped violations:
    /// what the stored object's evaluation hands to the new one.
    pub keys: Keys,
    stored: Option<Stored<'s>>,
}

impl<'s> Findings<'s> {
    /// `stored`: the stored object's violations, on UPDATE.
    pub(super) fn new(stored: Option<Stored<'s>>) -> Self {
        Self {
            warnings: Vec::new(),
            denials: Vec::new(),
            ratcheted: Vec::new(),
            keys: Keys::new(),
            stored,
        }
    }

    fn preexisting(&self, rule: Rule, subject: &str) -> bool {
        self.stored.as_ref().is_some_and(|s| s.has(rule, subject))
    }

    /// A violation of `rule` about `subject`.
    pub(super) fn deny(&mut self, rule: Rule, subject: String, message: String) {
        let old = self.preexisting(rule, &subject);
        let violation = Violation {
            rule,
            subject: subject.clone(),
            message,
        };
        self.keys.insert((rule, subject));
        if old {
            self.ratcheted.push(violation);
        } else {
            self.denials.push(violation);
        }
    }

    /// One violation of `rule` about several `items` (unpaired names, say): those the stored
    /// object had too and the new ones each become one violation, whose message `render`
    /// writes from its items, so that a denial names only what is new.
    pub(super) fn deny_each(
        &mut self,
        rule: Rule,
        items: Vec<String>,
        render: impl Fn(&[String]) -> String,
    ) {
        let (old, new): (Vec<String>, Vec<String>) = items
            .into_iter()
            .partition(|item| self.preexisting(rule, item));
        for (items, ratcheted) in [(new, false), (old, true)] {
            if items.is_empty() {
                continue;
            }
            let violation = Violation {
                rule,
                subject: items.join(", "),
                message: render(&items),
            };
            self.keys.extend(items.into_iter().map(|item| (rule, item)));
            if ratcheted {
                self.ratcheted.push(violation);
            } else {
                self.denials.push(violation);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_kebab_case() {
        let mut seen = std::collections::BTreeSet::new();
        for rule in Rule::ALL {
            let id = rule.id();
            assert!(seen.insert(id), "{id} twice");
            assert!(
                id.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{id}"
            );
            assert_eq!(Rule::of_id(id), Some(rule));
        }
    }

    #[test]
    fn a_violation_the_stored_object_had_is_ratcheted_and_a_new_one_denied() {
        let evaluate = || Keys::from_iter([(Rule::BridgeBinding, "old".to_string())]);
        let mut f = Findings::new(Some(Stored::new(&evaluate)));
        f.deny(Rule::BridgeBinding, "old".into(), "m1".into());
        f.deny(Rule::BridgeBinding, "new".into(), "m2".into());
        // Same subject, another rule: not the same violation.
        f.deny(Rule::MissingNad, "old".into(), "m3".into());
        let subjects = |v: &[Violation]| v.iter().map(|v| v.message.clone()).collect::<Vec<_>>();
        assert_eq!(subjects(&f.ratcheted), ["m1"]);
        assert_eq!(subjects(&f.denials), ["m2", "m3"]);
    }

    #[test]
    fn grouped_items_are_split_so_a_denial_names_only_the_new_ones() {
        let evaluate = || Keys::from_iter([(Rule::UnpairedName, "a".to_string())]);
        let mut f = Findings::new(Some(Stored::new(&evaluate)));
        f.deny_each(Rule::UnpairedName, vec!["a".into(), "b".into()], |items| {
            items.join("+")
        });
        assert_eq!(f.denials[0].message, "b");
        assert_eq!(f.ratcheted[0].message, "a");
        assert!(f.keys.contains(&(Rule::UnpairedName, "a".into())));
    }

    #[test]
    fn the_stored_object_is_evaluated_only_when_a_rule_finds_something() {
        let calls = std::cell::Cell::new(0);
        let evaluate = || {
            calls.set(calls.get() + 1);
            Keys::new()
        };
        let f = Findings::new(Some(Stored::new(&evaluate)));
        assert_eq!(calls.get(), 0);
        let mut f = f;
        f.deny(Rule::PoolFull, "x".into(), "m".into());
        f.deny(Rule::PoolFull, "y".into(), "m".into());
        assert_eq!(calls.get(), 1);
    }
}

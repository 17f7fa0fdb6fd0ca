//! The identity digest of SPEC §2.3, shared by every value the webhook derives for one NIC of
//! one guest: its MAC (§2.3) and its pool address (§2.10).
//!
//! ```text
//! input  = salt + "\0" + namespace + "\0" + vmName + "\0" + networkName [+ "\0" + n]
//! digest = SHA-256(input)
//! ```
//! `n` (the attempt) is absent on attempt 0 and written in decimal after.
use sha2::{Digest, Sha256};

/// Who a derived value is for: the cluster salt and the NIC's guest and network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity<'a> {
    pub salt: &'a str,
    pub namespace: &'a str,
    pub vm: &'a str,
    pub network: &'a str,
}

impl Identity<'_> {
    /// SHA-256 of the input of attempt `attempt` (0: no counter in the input).
    pub fn digest(&self, attempt: u32) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for (i, part) in [self.salt, self.namespace, self.vm, self.network]
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                hasher.update([0u8]);
            }
            hasher.update(part.as_bytes());
        }
        if attempt > 0 {
            hasher.update([0u8]);
            hasher.update(attempt.to_string().as_bytes());
        }
        hasher.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_the_spec_concatenation() {
        let id = Identity {
            salt: "salt",
            namespace: "ns",
            vm: "vm",
            network: "net",
        };
        let expected: [u8; 32] = Sha256::digest(b"salt\0ns\0vm\0net").into();
        assert_eq!(id.digest(0), expected);
        let expected: [u8; 32] = Sha256::digest(b"salt\0ns\0vm\0net\x0012").into();
        assert_eq!(id.digest(12), expected);
        let empty_salt = Identity { salt: "", ..id };
        let expected: [u8; 32] = Sha256::digest(b"\0ns\0vm\0net").into();
        assert_eq!(empty_salt.digest(0), expected);
    }
}

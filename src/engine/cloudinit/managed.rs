//! Which network config is the webhook's, and whose (SPEC §2.4, §2.9). The webhook rewrites
//! only its own config, never the user's; its own carries the VM's identity, so a copy (a
//! clone, a restore, a copied manifest) is told from the original.
//!
//! - NoCloud (netplan): the first line is [`marker`], `# managed by kubevirt-net-webhook for
//!   NAMESPACE/NAME`.
//! - ConfigDrive (`network_data.json`, no comments): the VM annotation
//!   `kubevirt-net-webhook.io/managed-network-data` holds `NAMESPACE/NAME sha256:DIGEST` of what was
//!   written; config that no longer matches its digest was edited by the user.
use sha2::{Digest, Sha256};

use crate::model::{
    text::push_hex,
    vm::{CloudInitKind, CloudInitSource},
};

/// The start of the first line of netplan config the webhook wrote.
pub const MARKER: &str = "# managed by kubevirt-net-webhook";

/// The user-data of a cloud-init volume the webhook creates. cloud-init applies network
/// config only on a new instance by default, and KubeVirt's NoCloud instance-id never
/// changes: `updates` makes a changed config apply at the next boot.
pub const USER_DATA: &str =
    "#cloud-config\nupdates:\n  network:\n    when: [boot-new-instance, boot]\n";

/// What earlier versions of the webhook wrote as user-data: theirs to upgrade.
const LEGACY_USER_DATA: &str = "#cloud-config";

/// The marker line for the VM `namespace/name`.
pub fn marker(namespace: &str, name: &str) -> String {
    let mut line = String::with_capacity(MARKER.len() + 6 + namespace.len() + name.len());
    for part in [MARKER, " for ", namespace, "/", name] {
        line.push_str(part);
    }
    line
}

/// The ConfigDrive annotation value for `data` written for `identity`.
pub fn digest_annotation(identity: &str, data: &str) -> String {
    let digest = Sha256::digest(data.as_bytes());
    let mut value = format!("{identity} sha256:");
    for b in digest {
        push_hex(&mut value, b);
    }
    value
}

/// What the first cloud-init volume holds as network config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Existing {
    /// No network config.
    None,
    /// The webhook's; `owner` is the VM it was written for (`None`: an older version's,
    /// which did not say).
    Managed { owner: Option<String> },
    /// The user's, in this field: never touched.
    User(&'static str),
}

/// Classifies the network config of a cloud-init volume. `annotation` is the VM's
/// `kubevirt-net-webhook.io/managed-network-data`; `fresh` is what the webhook would write now (an
/// older version's ConfigDrive config is recognised by being exactly that).
pub fn classify(
    kind: CloudInitKind,
    source: &CloudInitSource,
    annotation: Option<&str>,
    fresh: Option<&str>,
) -> Existing {
    if source.network_data_secret_ref.is_some() {
        return Existing::User("networkDataSecretRef");
    }
    if source.network_data_base64.is_some() {
        return Existing::User("networkDataBase64");
    }
    let Some(data) = source.network_data.as_deref() else {
        return Existing::None;
    };
    match kind {
        CloudInitKind::NoCloud => match data.lines().next() {
            Some(first) if first.starts_with(MARKER) => Existing::Managed {
                owner: first
                    .strip_prefix(MARKER)
                    .and_then(|rest| rest.strip_prefix(" for "))
                    .map(|owner| owner.trim().to_string()),
            },
            _ => Existing::User("networkData"),
        },
        CloudInitKind::ConfigDrive => {
            let owned = annotation.and_then(|a| {
                let (owner, _) = a.split_once(' ')?;
                (digest_annotation(owner, data) == a).then(|| owner.to_string())
            });
            match owned {
                Some(owner) => Existing::Managed { owner: Some(owner) },
                None if fresh == Some(data) => Existing::Managed { owner: None },
                None => Existing::User("networkData"),
            }
        }
    }
}

/// How a volume's user-data relates to network config updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserData {
    /// None: the webhook adds its own.
    Missing,
    /// What an older version of the webhook wrote: replaced by [`USER_DATA`].
    Legacy,
    /// Has an `updates` key (the webhook's, or the user's own).
    Updates,
    /// The user's, without `updates`: a changed network config is not applied at boot.
    NoUpdates,
    /// In a Secret: cannot be read here.
    Unknown,
}

pub fn user_data(source: &CloudInitSource) -> UserData {
    if source.user_data_secret_ref.is_some() {
        return UserData::Unknown;
    }
    let decoded;
    let text = match (&source.user_data, &source.user_data_base64) {
        (Some(text), _) => text.as_ref(),
        (None, Some(b64)) => {
            use base64::Engine as _;
            match base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
                Ok(bytes) => {
                    decoded = String::from_utf8_lossy(&bytes).into_owned();
                    decoded.as_str()
                }
                Err(_) => return UserData::Unknown,
            }
        }
        (None, None) => return UserData::Missing,
    };
    // Only the plain field: the webhook never wrote base64.
    if source.user_data.is_some() && text.trim() == LEGACY_USER_DATA {
        UserData::Legacy
    } else if text.lines().any(|l| l.starts_with("updates:")) {
        UserData::Updates
    } else {
        UserData::NoUpdates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nocloud(data: &str) -> CloudInitSource<'_> {
        CloudInitSource {
            network_data: Some(data.into()),
            ..Default::default()
        }
    }

    #[test]
    fn netplan_markers_name_their_vm() {
        let mine = format!("{}\nversion: 2\n", marker("a", "vm"));
        assert_eq!(
            classify(CloudInitKind::NoCloud, &nocloud(&mine), None, None),
            Existing::Managed {
                owner: Some("a/vm".into())
            }
        );
        let legacy = format!("{MARKER}\nversion: 2\n");
        assert_eq!(
            classify(CloudInitKind::NoCloud, &nocloud(&legacy), None, None),
            Existing::Managed { owner: None }
        );
        assert_eq!(
            classify(CloudInitKind::NoCloud, &nocloud("version: 2\n"), None, None),
            Existing::User("networkData")
        );
    }

    #[test]
    fn config_drive_is_ours_while_it_matches_its_digest() {
        let data = r#"{"links":[]}"#;
        let annotation = digest_annotation("a/vm", data);
        let source = nocloud(data);
        assert_eq!(
            classify(CloudInitKind::ConfigDrive, &source, Some(&annotation), None),
            Existing::Managed {
                owner: Some("a/vm".into())
            }
        );
        let edited = nocloud(r#"{"links":[1]}"#);
        assert_eq!(
            classify(CloudInitKind::ConfigDrive, &edited, Some(&annotation), None),
            Existing::User("networkData")
        );
        assert_eq!(
            classify(CloudInitKind::ConfigDrive, &source, None, Some(data)),
            Existing::Managed { owner: None }
        );
    }

    #[test]
    fn user_data_kinds() {
        let with = |t: &str| CloudInitSource {
            user_data: Some(t.to_string().into()),
            ..Default::default()
        };
        assert_eq!(user_data(&with(USER_DATA)), UserData::Updates);
        assert_eq!(user_data(&with("#cloud-config\n")), UserData::Legacy);
        assert_eq!(
            user_data(&with("#cloud-config\npackages: [nginx]\n")),
            UserData::NoUpdates
        );
        assert_eq!(user_data(&CloudInitSource::default()), UserData::Missing);
        let b64 = CloudInitSource {
            user_data_base64: Some("I2Nsb3VkLWNvbmZpZwp1cGRhdGVzOiB7fQo=".into()),
            ..Default::default()
        };
        assert_eq!(user_data(&b64), UserData::Updates);
    }
}

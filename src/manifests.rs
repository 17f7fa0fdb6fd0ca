//! Reading Kubernetes manifests from files, directories and stdin: YAML or JSON,
//! multi-document, `kind: List` flattened. Every document keeps where it came from.
use std::{
    io::Read,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use serde_json::Value;

/// Errors reading manifests; each names the file and, where it applies, the document.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read.
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// A document is not valid YAML/JSON, or not a Kubernetes object.
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One object and where it came from (`file.yaml, document 2`).
#[derive(Debug, Clone)]
pub struct Document {
    pub origin: String,
    pub value: Value,
}

impl Document {
    pub fn kind(&self) -> &str {
        self.value.get("kind").and_then(Value::as_str).unwrap_or("")
    }

    pub fn api_version(&self) -> &str {
        self.value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// `namespace/name` for messages, with `default_namespace` when the object has none.
    pub fn display_name(&self, default_namespace: &str) -> String {
        let meta = |k: &str| {
            self.value
                .pointer(&format!("/metadata/{k}"))
                .and_then(Value::as_str)
        };
        format!(
            "{}/{}",
            meta("namespace").unwrap_or(default_namespace),
            meta("name").or(meta("generateName")).unwrap_or("<unnamed>")
        )
    }
}

/// Reads documents from text; `origin` names the source in messages.
pub fn parse_str(text: &str, origin: &str) -> Result<Vec<Document>> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let at = format!("{origin}, document {}", i + 1);
        let value = Value::deserialize(doc).map_err(|e| Error::Parse {
            origin: at.clone(),
            message: e.to_string(),
        })?;
        match value {
            Value::Null => {} // an empty document, e.g. after a trailing `---`
            Value::Object(_) => flatten(value, &at, &mut out)?,
            _ => {
                return Err(Error::Parse {
                    origin: at,
                    message:
                        "not a Kubernetes object (expected a mapping with apiVersion and kind)"
                            .into(),
                });
            }
        }
    }
    Ok(out)
}

fn flatten(value: Value, at: &str, out: &mut Vec<Document>) -> Result<()> {
    let kind = value.get("kind").and_then(Value::as_str);
    if kind.is_none() || value.get("apiVersion").and_then(Value::as_str).is_none() {
        return Err(Error::Parse {
            origin: at.to_string(),
            message: "object has no apiVersion or kind".into(),
        });
    }
    if kind == Some("List") {
        let Some(Value::Array(items)) = value.get("items") else {
            return Err(Error::Parse {
                origin: at.to_string(),
                message: "List has no items".into(),
            });
        };
        for (j, item) in items.iter().enumerate() {
            flatten(item.clone(), &format!("{at}, item {}", j + 1), out)?;
        }
        return Ok(());
    }
    out.push(Document {
        origin: at.to_string(),
        value,
    });
    Ok(())
}

fn manifest_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let read_err = |source| Error::Read {
        path: dir.display().to_string(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(read_err)?;
    entries.sort();
    for path in entries {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue; // kubelet's `..data` links and editor files
        }
        if path.is_dir() {
            manifest_files(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads a file, a directory (recursively: `*.yaml`, `*.yml`, `*.json`) or stdin (`-`).
pub fn read_path(path: &Path) -> Result<Vec<Document>> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|source| Error::Read {
                path: "<stdin>".into(),
                source,
            })?;
        return parse_str(&text, "<stdin>");
    }
    let meta = std::fs::metadata(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })?;
    let files = if meta.is_dir() {
        let mut files = Vec::new();
        manifest_files(path, &mut files)?;
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut out = Vec::new();
    for file in files {
        let shown = file.display().to_string();
        let text = std::fs::read_to_string(&file).map_err(|source| Error::Read {
            path: shown.clone(),
            source,
        })?;
        out.extend(parse_str(&text, &shown)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_and_lists() {
        let docs = parse_str(
            "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: A}\n- {apiVersion: v1, kind: B}\n---\n---\n{\"apiVersion\": \"v1\", \"kind\": \"C\"}\n",
            "f.yaml",
        )
        .unwrap();
        let kinds: Vec<&str> = docs.iter().map(Document::kind).collect();
        assert_eq!(kinds, ["A", "B", "C"]);
        assert_eq!(docs[2].origin, "f.yaml, document 3");
    }

    #[test]
    fn errors_name_file_and_document() {
        let e = parse_str("apiVersion: v1\nkind: A\n---\nkey: [unclosed\n", "f.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f.yaml, document 2"), "{e}");
        let e = parse_str("- 1\n- 2\n", "g.yaml").unwrap_err().to_string();
        assert!(
            e.contains("g.yaml, document 1") && e.contains("not a Kubernetes object"),
            "{e}"
        );
        let e = parse_str("metadata: {name: x}\n", "h.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no apiVersion or kind"), "{e}");
        let e = read_path(Path::new("/nonexistent/x.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/x.yaml"), "{e}");
    }
}

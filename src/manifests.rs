//! Reading Kubernetes manifests from files, directories and stdin: YAML or JSON,
//! multi-document, `kind: List` flattened. Every document keeps where it came from.
//!
//! Inputs are bounded ([`Limits`]): a directory walk follows each directory once (symlink
//! loops end there) and reads each file once however many links lead to it; a file (or
//! stdin) and all files of one input have a size limit; and flow collections (`[...]`,
//! `{...}`) may not nest deeper than [`MAX_FLOW_DEPTH`], because the YAML parser's time is
//! quadratic in that depth. Memory is then bounded too: parsing takes up to ~80 times the
//! input size for input made of tiny scalars (YAML events plus the JSON values), so at most
//! that times [`Limits::max_total_bytes`] per input.
use std::{
    collections::HashSet,
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
    /// One file (or stdin) is larger than [`Limits::max_file_bytes`].
    #[error("{path}: larger than {limit_mib} MiB, the limit for one input file")]
    FileTooLarge { path: String, limit_mib: usize },
    /// The files of one input add up to more than [`Limits::max_total_bytes`].
    #[error(
        "{input}: more than {limit_mib} MiB of manifests in all (the limit for one input), reached at {path}"
    )]
    InputTooLarge {
        input: String,
        path: String,
        limit_mib: usize,
    },
    /// Flow collections nest deeper than [`MAX_FLOW_DEPTH`].
    #[error(
        "{origin}, line {line}: flow collections ([...] or {{...}}) nested deeper than {limit} levels"
    )]
    TooDeep {
        origin: String,
        line: usize,
        limit: usize,
    },
}

/// Deepest nesting of flow collections (`[...]`, `{...}`, so also JSON) accepted. libyaml
/// takes time quadratic in it, and the deserializer refuses more than 128 levels of any
/// nesting anyway; Kubernetes objects stay far below (a CRD schema in JSON: ~40).
pub const MAX_FLOW_DEPTH: usize = 128;

/// Size limits of [`read_path_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// One file, or stdin: 8 MiB. The API server stores objects of at most 1.5 MiB (etcd's
    /// default request limit) and takes AdmissionReviews of 7 MiB, so this leaves room.
    pub max_file_bytes: usize,
    /// All files read for one input path (a directory walk): 32 MiB.
    pub max_total_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 8 << 20,
            max_total_bytes: 32 << 20,
        }
    }
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
    if let Some(line) = flow_depth_exceeded(text, MAX_FLOW_DEPTH) {
        return Err(Error::TooDeep {
            origin: origin.to_string(),
            line,
            limit: MAX_FLOW_DEPTH,
        });
    }
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

/// The files of a directory walk, each directory and each file once.
#[derive(Debug, Default)]
struct Walk {
    dirs: HashSet<PathBuf>,
    files: HashSet<PathBuf>,
    found: Vec<PathBuf>,
}

fn manifest_files(dir: &Path, walk: &mut Walk) -> Result<()> {
    let read_err = |source| Error::Read {
        path: dir.display().to_string(),
        source,
    };
    // A directory seen before (a symlink loop, or two links to one directory) adds nothing.
    let canonical = std::fs::canonicalize(dir).map_err(read_err)?;
    if !walk.dirs.insert(canonical) {
        return Ok(());
    }
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
            manifest_files(&path, walk)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            // A link that cannot be resolved (dangling, a loop) is kept: reading it reports why.
            let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if walk.files.insert(key) {
                walk.found.push(path);
            }
        }
    }
    Ok(())
}

/// Reads at most `limit` bytes of UTF-8 text.
fn read_limited(reader: impl Read, shown: &str, limit: usize) -> Result<String> {
    let read_err = |source| Error::Read {
        path: shown.to_string(),
        source,
    };
    let mut bytes = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() > limit {
        return Err(Error::FileTooLarge {
            path: shown.to_string(),
            limit_mib: limit >> 20,
        });
    }
    String::from_utf8(bytes)
        .map_err(|e| read_err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// Reads a file, a directory (recursively: `*.yaml`, `*.yml`, `*.json`) or stdin (`-`),
/// within the default [`Limits`].
pub fn read_path(path: &Path) -> Result<Vec<Document>> {
    read_path_with(path, &Limits::default())
}

/// The manifest files at `path`: the file itself, or a directory's, recursively.
fn files_of(path: &Path) -> Result<Vec<std::path::PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut walk = Walk::default();
    manifest_files(path, &mut walk)?;
    Ok(walk.found)
}

/// [`read_path`] with other limits.
pub fn read_path_with(path: &Path, limits: &Limits) -> Result<Vec<Document>> {
    if path == Path::new("-") {
        let text = read_limited(std::io::stdin().lock(), "<stdin>", limits.max_file_bytes)?;
        return parse_str(&text, "<stdin>");
    }
    let files = files_of(path)?;
    let mut out = Vec::new();
    let mut total = 0usize;
    for file in files {
        let shown = file.display().to_string();
        let opened = std::fs::File::open(&file).map_err(|source| Error::Read {
            path: shown.clone(),
            source,
        })?;
        let text = read_limited(opened, &shown, limits.max_file_bytes)?;
        total += text.len();
        if total > limits.max_total_bytes {
            return Err(Error::InputTooLarge {
                input: path.display().to_string(),
                path: shown,
                limit_mib: limits.max_total_bytes >> 20,
            });
        }
        out.extend(parse_str(&text, &shown)?);
    }
    Ok(out)
}

/// [`read_path_with`] one file at a time: `visit` gets each file's documents, which are
/// dropped before the next file is read, so a whole cluster's dump never sits in memory at
/// once (`audit -f`). Stdin (`-`) is one file.
pub fn visit_path_with<E: From<Error>>(
    path: &Path,
    limits: &Limits,
    mut visit: impl FnMut(Vec<Document>) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    if path == Path::new("-") {
        return visit(read_path_with(path, limits)?);
    }
    for file in files_of(path)? {
        visit(read_path_with(&file, limits)?)?;
    }
    Ok(())
}

/// Where flow collections first nest deeper than `limit` (1-based line), found in one linear
/// pass that knows just enough YAML: comments, quoted scalars at node starts, block scalars
/// (`|`, `>`) by indentation, and that a `[` or `{` inside a block-context plain scalar is
/// text. Where unsure it counts a bracket rather than skip it, so it may over-count odd text
/// but never misses nesting that the parser would see.
fn flow_depth_exceeded(text: &str, limit: usize) -> Option<usize> {
    // Block scalar being skipped: the indentation its content must exceed, and the content
    // indentation once known.
    let mut block: Option<(isize, Option<usize>)> = None;
    let mut depth = 0usize;
    // In flow context, whether the next token starts a node (where a quote opens a scalar).
    let mut flow_node_start = true;
    for (number, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let bytes = line.as_bytes();
        let indent = bytes.iter().take_while(|&&b| b == b' ').count();
        let blank = bytes.iter().all(|&b| b == b' ' || b == b'\t');
        let document_marker = (line.starts_with("---") || line.starts_with("..."))
            && matches!(bytes.get(3), None | Some(b' ' | b'\t'));
        if let Some((parent, content)) = block {
            if document_marker {
                block = None;
            } else if blank {
                continue;
            } else {
                match content {
                    Some(c) if indent >= c => continue,
                    None if indent as isize > parent => {
                        block = Some((parent, Some(indent)));
                        continue;
                    }
                    _ => block = None,
                }
            }
        }
        let mut i = if document_marker { 3 } else { 0 };
        // Block context: a node may start here (line start, after `- `, `? `, `: `).
        let mut node_start = true;
        // Only indentation and `- `/`? ` indicators so far on this line.
        let mut prefix_only = !document_marker;
        // The column of the node that owns a block scalar starting on this line.
        let mut owner: Option<usize> = None;
        let mut token_col = indent;
        let mut quote: Option<u8> = None;
        let mut after_quoted = false;
        let mut prev_space = true;
        if depth == 0 {
            flow_node_start = true;
        }
        while i < bytes.len() {
            let c = bytes[i];
            let next = bytes.get(i + 1).copied();
            if let Some(q) = quote {
                if q == b'"' && c == b'\\' {
                    i += 2;
                    continue;
                }
                if c == q {
                    if q == b'\'' && next == Some(b'\'') {
                        i += 2;
                        continue;
                    }
                    quote = None;
                    after_quoted = true;
                }
                i += 1;
                continue;
            }
            if c == b' ' || c == b'\t' {
                prev_space = true;
                i += 1;
                continue;
            }
            if c == b'#' && prev_space {
                break; // a comment
            }
            let separated = matches!(next, None | Some(b' ' | b'\t'));
            let was_after_quoted = std::mem::take(&mut after_quoted);
            prev_space = false;
            if depth > 0 {
                match c {
                    b'[' | b'{' => {
                        depth += 1;
                        if depth > limit {
                            return Some(number + 1);
                        }
                        flow_node_start = true;
                    }
                    b']' | b'}' => {
                        depth -= 1;
                        flow_node_start = false;
                        after_quoted = true;
                    }
                    b',' => flow_node_start = true,
                    b':' if separated
                        || was_after_quoted
                        || matches!(next, Some(b',' | b'[' | b']' | b'{' | b'}')) =>
                    {
                        flow_node_start = true;
                    }
                    b'?' if flow_node_start && separated => {}
                    b'\'' | b'"' if flow_node_start => quote = Some(c),
                    b'!' | b'&' if flow_node_start => {
                        // A tag or an anchor: the node starts after it.
                        while i < bytes.len()
                            && !matches!(bytes[i], b' ' | b'\t' | b',' | b'[' | b']' | b'{' | b'}')
                        {
                            i += 1;
                        }
                        continue;
                    }
                    _ => flow_node_start = false,
                }
                if depth == 0 {
                    node_start = false;
                    prefix_only = false;
                }
            } else {
                match c {
                    b'[' | b'{' if node_start => {
                        depth = 1;
                        if depth > limit {
                            return Some(number + 1);
                        }
                        flow_node_start = true;
                    }
                    b'-' | b'?' if prefix_only && separated => {
                        owner = Some(i);
                        token_col = i + 2;
                    }
                    b':' if separated => {
                        owner = Some(token_col);
                        node_start = true;
                        prefix_only = false;
                    }
                    b'|' | b'>' if node_start && is_block_header(&line[i + 1..]) => {
                        let parent = match owner {
                            Some(col) => col as isize,
                            // The value of a key on an earlier line: more indented than it.
                            None => i as isize - 1,
                        };
                        let explicit = line[i + 1..]
                            .bytes()
                            .find(u8::is_ascii_digit)
                            .map(|d| (parent.max(0) as usize) + usize::from(d - b'0'));
                        block = Some((parent, explicit));
                        break;
                    }
                    b'\'' | b'"' if node_start => {
                        quote = Some(c);
                        token_col = i;
                        node_start = false;
                        prefix_only = false;
                    }
                    b'!' | b'&' if node_start => {
                        while i < bytes.len() && !matches!(bytes[i], b' ' | b'\t') {
                            i += 1;
                        }
                        continue;
                    }
                    _ => {
                        if node_start {
                            token_col = i;
                        }
                        node_start = false;
                        prefix_only = false;
                    }
                }
            }
            i += 1;
        }
    }
    None
}

/// Whether `rest` (after `|` or `>`) is a block scalar header: optional indentation and
/// chomping indicators, then only whitespace or a comment.
fn is_block_header(rest: &str) -> bool {
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() && i < 2 && matches!(bytes[i], b'1'..=b'9' | b'+' | b'-') {
        i += 1;
    }
    let tail = &rest[i..];
    let trimmed = tail.trim_start_matches([' ', '\t']);
    trimmed.is_empty() || (trimmed.starts_with('#') && trimmed.len() < tail.len())
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

    fn deep(n: usize) -> String {
        format!(
            "apiVersion: v1\nkind: A\nx: {}{}\n",
            "[".repeat(n),
            "]".repeat(n)
        )
    }

    #[test]
    fn flow_nesting_is_limited() {
        assert_eq!(
            flow_depth_exceeded(&deep(MAX_FLOW_DEPTH), MAX_FLOW_DEPTH),
            None
        );
        assert_eq!(
            flow_depth_exceeded(&deep(MAX_FLOW_DEPTH + 1), MAX_FLOW_DEPTH),
            Some(3)
        );
        let e = parse_str(&deep(40_000), "deep.yaml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "deep.yaml, line 3: flow collections ([...] or {...}) nested deeper than 128 levels"
        );
        // Across lines, in mappings, after tags and anchors, in JSON.
        let multi = format!("x: !!seq &a {}\n", "{a: [\n".repeat(70));
        assert_eq!(flow_depth_exceeded(&multi, MAX_FLOW_DEPTH), Some(65));
        let json = format!("{}\"k\":1{}", "{\"a\":".repeat(200), "}".repeat(200));
        assert!(flow_depth_exceeded(&json, MAX_FLOW_DEPTH).is_some());
        // A quote inside a plain scalar hides nothing.
        let sneaky = format!("a: it's\nb: {}\n", "[".repeat(200));
        assert_eq!(flow_depth_exceeded(&sneaky, MAX_FLOW_DEPTH), Some(2));
        let sneaky = format!("a: [x'y, {}\n", "[".repeat(200));
        assert!(flow_depth_exceeded(&sneaky, MAX_FLOW_DEPTH).is_some());
        // Nor a block scalar whose content ended.
        let sneaky = format!("  key:\n    |\n  b: {}\n", "[".repeat(200));
        assert_eq!(flow_depth_exceeded(&sneaky, MAX_FLOW_DEPTH), Some(3));
        let sneaky = format!("--- |\n text\n---\nb: {}\n", "[".repeat(200));
        assert_eq!(flow_depth_exceeded(&sneaky, MAX_FLOW_DEPTH), Some(4));
    }

    #[test]
    fn brackets_in_text_are_not_nesting() {
        let many = "[".repeat(300);
        for text in [
            // Quoted, in comments, in plain scalars, in block scalars of every form.
            format!("a: \"{many}\"\nb: '{many}'\n# {many}\nc: x {many}\nd: x[{many}\n"),
            format!("userData: |\n  #cloud-config\n  {many}\n\n  {many}\ne: 1\n"),
            format!("- |2-\n   {many}\n- >\n {many}\n- key: |\n    {many}\n  k2: 1\n"),
            format!("a: [\"{many}\", '{many}', x]\n"),
            format!("{{\"a\": \"{many}\\\"{many}\"}}"),
        ] {
            assert_eq!(flow_depth_exceeded(&text, MAX_FLOW_DEPTH), None, "{text}");
            serde_yaml_ng::from_str::<serde_json::Value>(&text)
                .unwrap_or_else(|e| panic!("{e}: {text}"));
        }
        // The test cases and examples all pass.
        for dir in [
            concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/testdata/cases"),
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples"),
        ] {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "yaml") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    assert_eq!(flow_depth_exceeded(&text, 8), None, "{}", path.display());
                }
            }
        }
    }

    #[test]
    fn inputs_have_size_limits() {
        let dir = tempfile::tempdir().unwrap();
        let vm = "---\napiVersion: v1\nkind: A\nmetadata: {name: a}\n";
        std::fs::write(dir.path().join("a.yaml"), vm.repeat(100)).unwrap();
        std::fs::write(dir.path().join("b.yaml"), vm.repeat(100)).unwrap();
        let limits = Limits {
            max_file_bytes: vm.len() * 100,
            max_total_bytes: vm.len() * 150,
        };
        let e = read_path_with(dir.path(), &limits).unwrap_err().to_string();
        assert!(e.contains("b.yaml") && e.contains("in all"), "{e}");
        let small = Limits {
            max_file_bytes: vm.len() * 99,
            ..limits
        };
        let e = read_path_with(&dir.path().join("a.yaml"), &small)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{}:", dir.path().join("a.yaml").display())),
            "{e}"
        );
        assert!(e.contains("limit for one input file"), "{e}");
        let fine = Limits {
            max_file_bytes: vm.len() * 100,
            max_total_bytes: vm.len() * 200,
        };
        assert_eq!(read_path_with(dir.path(), &fine).unwrap().len(), 200);
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

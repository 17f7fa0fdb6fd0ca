//! The README says what the code does: its table of rule ids (SPEC §2.11) lists exactly the
//! rules of `engine::Rule::ALL`, in that order, with the same SPEC sections and meanings.
use kubevirt_net_webhook::engine::Rule;

/// The rows of the README's rule-id table: (id, SPEC, what it means), backticks removed.
fn readme_rules() -> Vec<(String, String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let header = "| id | SPEC | what it means |";
    let start = readme
        .find(header)
        .expect("the README has the rule-id table");
    readme[start..]
        .lines()
        .skip(2) // header and separator
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<String> = l.split('|').map(|c| c.trim().replace('`', "")).collect();
            (cells[1].clone(), cells[2].clone(), cells[3].clone())
        })
        .collect()
}

#[test]
fn the_readme_rule_table_matches_the_code() {
    let code: Vec<(String, String, String)> = Rule::ALL
        .iter()
        .map(|r| (r.id().into(), r.section().into(), r.summary().into()))
        .collect();
    assert_eq!(readme_rules(), code);
}

// --- Every README: links resolve, commands name what exists, the runnable ones run --------

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_kubevirt-net-webhook");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every README.md of the repository (not under target/ or .git), and the runbooks.
fn readmes() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if !["target", ".git", "proptest-regressions"].contains(&name.as_str()) {
                    walk(&path, out);
                }
            } else if name == "README.md" || path.parent().unwrap().ends_with("deploy/runbooks") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo(), &mut out);
    out.sort();
    assert!(out.len() >= 6, "{out:?}");
    out
}

/// The lines outside fenced code blocks, and the fenced blocks as (info string, lines).
fn split_markdown(text: &str) -> (Vec<&str>, Vec<(String, Vec<&str>)>) {
    let (mut prose, mut blocks) = (Vec::new(), Vec::new());
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in text.lines() {
        let fence = line.trim_start().starts_with("```");
        match (&mut current, fence) {
            (None, true) => current = Some((line.trim_start()[3..].trim().to_string(), vec![])),
            (Some(_), true) => blocks.push(current.take().unwrap()),
            (Some((_, lines)), false) => lines.push(line),
            (None, false) => prose.push(line),
        }
    }
    (prose, blocks)
}

/// GitHub's anchor of a heading: lower case, punctuation other than `-` and `_` dropped,
/// spaces as `-`; a repeated heading gets `-1`, `-2`, ...
fn anchors(text: &str) -> Vec<String> {
    let (prose, _) = split_markdown(text);
    let mut seen: Vec<String> = Vec::new();
    for line in prose {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let title = rest.trim_start_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.iter().filter(|s| **s == slug).count();
        seen.push(slug.clone());
        if n > 0 {
            seen.push(format!("{slug}-{n}"));
        }
    }
    seen
}

/// The targets of the Markdown links `[text](target)` in prose (inline code left out).
fn links(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '`' {
            in_code = !in_code;
        } else if !in_code && chars[i] == ']' && chars.get(i + 1) == Some(&'(') {
            let end = chars[i + 2..]
                .iter()
                .position(|c| *c == ')')
                .map(|p| p + i + 2);
            if let Some(end) = end {
                out.push(chars[i + 2..end].iter().collect());
                i = end;
            }
        }
        i += 1;
    }
    out
}

#[test]
fn every_readme_link_resolves_to_a_file_and_heading() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in readmes() {
        let text = std::fs::read_to_string(&file).unwrap();
        let rel = file.strip_prefix(repo()).unwrap().display().to_string();
        let (prose, _) = split_markdown(&text);
        for line in prose {
            for target in links(line) {
                if target.starts_with("http://") || target.starts_with("https://") {
                    continue;
                }
                checked += 1;
                let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
                let resolved = if path.is_empty() {
                    file.clone()
                } else {
                    file.parent().unwrap().join(path)
                };
                if !resolved.exists() {
                    problems.push(format!("{rel}: link {target}: no such file"));
                    continue;
                }
                if !anchor.is_empty() {
                    let Ok(target_text) = std::fs::read_to_string(&resolved) else {
                        problems.push(format!("{rel}: link {target}: an anchor into a directory"));
                        continue;
                    };
                    if !anchors(&target_text).iter().any(|a| a == anchor) {
                        problems.push(format!("{rel}: link {target}: no heading #{anchor}"));
                    }
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} links");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A shell command line split into simple commands (on `|`, `&&`, `||`, `;`, `&`), each
/// as words with quotes removed; comments dropped.
fn simple_commands(line: &str) -> Vec<Vec<String>> {
    let mut commands = vec![Vec::new()];
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut has_word = false;
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    let mut depth = 0; // $( ... )
    let mut optional = 0; // a usage line's [ ... ]
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.push(c),
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    has_word = true;
                }
                '$' if chars.get(i + 1) == Some(&'(') => {
                    depth += 1;
                    word.push_str("$(");
                    i += 1;
                }
                ')' if depth > 0 => {
                    depth -= 1;
                    word.push(')');
                }
                '#' if depth == 0 && !has_word && word.is_empty() => break,
                '[' if depth == 0 && word.is_empty() => {
                    optional += 1;
                    word.push(c);
                }
                ']' if optional > 0 => {
                    optional -= 1;
                    word.push(c);
                }
                '|' if optional > 0 => word.push(c),
                ' ' | '\t' if depth == 0 => {
                    if has_word || !word.is_empty() {
                        commands.last_mut().unwrap().push(std::mem::take(&mut word));
                        has_word = false;
                    }
                }
                '|' | '&' | ';' if depth == 0 => {
                    if has_word || !word.is_empty() {
                        commands.last_mut().unwrap().push(std::mem::take(&mut word));
                        has_word = false;
                    }
                    if chars.get(i + 1) == Some(&c) {
                        i += 1;
                    }
                    commands.push(Vec::new());
                }
                _ => word.push(c),
            },
        }
        i += 1;
    }
    if has_word || !word.is_empty() {
        commands.last_mut().unwrap().push(word);
    }
    commands.retain(|c| !c.is_empty());
    commands
}

/// The command lines of a `sh` block (continuations joined, comment lines dropped) or the
/// `$ ` lines of a `console` block.
fn command_lines(info: &str, lines: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in lines {
        let line = match info {
            "console" => match line.strip_prefix("$ ") {
                Some(l) => l,
                None => continue,
            },
            _ => line,
        };
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            continue;
        }
        current.push_str(line);
        if !current.trim().is_empty() {
            out.push(std::mem::take(&mut current));
        }
        current.clear();
    }
    out
}

/// The subcommand's `--help`, for its flags.
fn help(subcommand: &str) -> String {
    let args: &[&str] = if subcommand.is_empty() {
        &["--help"]
    } else {
        &[subcommand, "--help"]
    };
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "kubevirt-net-webhook {subcommand} --help failed"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What is wrong with one simple command of a README.
fn check_command(words: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut words: Vec<&str> = words.iter().map(String::as_str).collect();
    while words
        .first()
        .is_some_and(|w| (w.contains('=') && !w.starts_with('-')) || *w == "sudo" || *w == "export")
    {
        words.remove(0);
    }
    let Some(program) = words.first().copied() else {
        return problems;
    };
    let repo_path = |w: &str| {
        [
            "deploy/",
            "tests/",
            "examples/",
            "certs/",
            "benches/",
            "src/",
            ".ci/",
        ]
        .iter()
        .any(|p| w.starts_with(p))
    };
    // kubectl's `deploy/NAME` is a resource; its files follow -f, -k and kustomize.
    let paths: Vec<&str> = if program == "kubectl" {
        words
            .windows(2)
            .filter(|w| ["-f", "-k", "kustomize"].contains(&w[0]))
            .map(|w| w[1])
            .collect()
    } else {
        words.clone()
    };
    for w in &paths {
        if repo_path(w) && !repo().join(w.trim_end_matches('/')).exists() {
            problems.push(format!("{w}: no such file or directory"));
        }
    }
    let webhook_args = |args: &[&str], problems: &mut Vec<String>| {
        let Some(sub) = args.first() else { return };
        let subcommands = help("");
        if !subcommands.contains(&format!("  {sub}")) {
            problems.push(format!("kubevirt-net-webhook {sub}: no such subcommand"));
            return;
        }
        let text = help(sub);
        for a in &args[1..] {
            // A usage line's optional `[--flag VALUE]` counts too.
            let flag = a.trim_matches(['[', ']']).split('=').next().unwrap();
            if flag.starts_with("--") && !text.contains(flag) {
                problems.push(format!("kubevirt-net-webhook {sub}: no flag {flag}"));
            }
        }
    };
    match program {
        "cargo" => {
            let sub = words.get(1).copied().unwrap_or("");
            if !["run", "test", "build", "bench", "fmt", "clippy"].contains(&sub) {
                problems.push(format!("cargo {sub}: not a command the READMEs should use"));
            }
            for (flag, dir) in [
                ("--example", "examples"),
                ("--bench", "benches"),
                ("--test", "tests"),
            ] {
                for (i, w) in words.iter().enumerate() {
                    if *w == flag {
                        let target = format!("{dir}/{}.rs", words[i + 1]);
                        if !repo().join(&target).exists() {
                            problems.push(format!("{flag} {}: no {target}", words[i + 1]));
                        }
                    }
                }
            }
            if sub == "run"
                && !words.contains(&"--example")
                && let Some(i) = words.iter().position(|w| *w == "--")
            {
                webhook_args(&words[i + 1..], &mut problems);
            }
        }
        p if p.ends_with("kubevirt-net-webhook") => webhook_args(&words[1..], &mut problems),
        p if repo_path(p) => {
            let path = repo().join(p);
            use std::os::unix::fs::PermissionsExt as _;
            if path
                .metadata()
                .is_ok_and(|m| m.permissions().mode() & 0o111 == 0)
            {
                problems.push(format!("{p}: not executable"));
            }
        }
        "kubectl" => {
            for (i, w) in words.iter().enumerate() {
                let dir = match *w {
                    "-k" | "kustomize" => words.get(i + 1).copied(),
                    _ => None,
                };
                if let Some(dir) = dir.filter(|d| repo_path(d) || *d == "deploy/" || *d == "deploy")
                {
                    let out = Command::new("kubectl")
                        .args(["kustomize", dir])
                        .current_dir(repo())
                        .output()
                        .expect("kubectl");
                    if !out.status.success() {
                        problems.push(format!(
                            "kubectl kustomize {dir}: {}",
                            String::from_utf8_lossy(&out.stderr)
                        ));
                    }
                }
            }
        }
        "curl" | "grep" | "openssl" | "base64" | "podman" | "docker" | "ln" | "cp" | "python3"
        | "promtool" | "cat" | "/usr/bin/time" | "head" | "tail" | "kill" | "go" | "k3s"
        | "rustup" => {}
        other => problems.push(format!("{other}: a program tests/docs.rs does not know")),
    }
    problems
}

#[test]
fn every_readme_command_names_what_exists() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in readmes() {
        let text = std::fs::read_to_string(&file).unwrap();
        let rel = file.strip_prefix(repo()).unwrap().display().to_string();
        for (info, lines) in split_markdown(&text).1 {
            if !["sh", "console"].contains(&info.as_str()) {
                continue;
            }
            for line in command_lines(&info, &lines) {
                for command in simple_commands(&line) {
                    checked += 1;
                    for p in check_command(&command) {
                        problems.push(format!("{rel}: `{line}`: {p}"));
                    }
                }
            }
        }
    }
    assert!(checked > 40, "only {checked} commands");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Runs a README's `sh` block with bash in the repository, `cargo run --` being the built
/// binary; returns stdout and stderr.
fn run_block(file: &str, containing: &str) -> (String, String) {
    let text = std::fs::read_to_string(repo().join(file)).unwrap();
    let (_, blocks) = split_markdown(&text);
    let (_, lines) = blocks
        .into_iter()
        .find(|(info, lines)| info == "sh" && lines.iter().any(|l| l.contains(containing)))
        .unwrap_or_else(|| panic!("{file}: no sh block with {containing:?}"));
    // `cargo test` inside a test would wait for this test's own build lock: left out.
    let script: Vec<String> = lines
        .iter()
        .filter(|l| !l.trim_start().starts_with("cargo test"))
        .map(|l| l.replace("cargo run --", BIN))
        .collect();
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script.join("\n")])
        .current_dir(repo())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "{file}: the block failed:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

#[test]
fn the_runnable_readme_commands_run() {
    // The quick start's first command (the second is the whole test suite).
    let text = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let quick = text
        .lines()
        .find(|l| l.starts_with("cargo run -- review -f examples/static-ip-vm.yaml"))
        .expect("the quick start");
    let out = Command::new("bash")
        .args(["-c", &quick.replace("cargo run --", BIN)])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 allowed, 0 denied"));
    assert!(text.contains("tests/apiserver/build.sh && cargo test --locked\n"));
    // The promtool checks of deploy/README.md, by hand.
    let (stdout, _) = run_block("deploy/README.md", "promtool test rules");
    assert!(stdout.contains("SUCCESS: 12 rules found"), "{stdout}");
    assert!(stdout.contains("Unit Testing:"), "{stdout}");
}

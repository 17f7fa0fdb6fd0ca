//! Client-chosen strings in log lines. The plain log format writes `%` fields as they are, so
//! a `metadata.name` holding a newline or an ESC sequence could forge log lines or drive the
//! reader's terminal, and a 1 MB uid would make a 1 MB line. [`Escaped`] writes such a string
//! with control and bidirectional-override characters escaped and cut to [`MAX_CHARS`].
use std::fmt;

/// Longest logged value, in characters: the longest Kubernetes name (a DNS subdomain).
pub const MAX_CHARS: usize = 253;

/// Displays a client-chosen string safely for a log line: control characters (C0, DEL, C1),
/// Unicode bidirectional controls and the backslash are escaped (`\n`, `\u{1b}`, `\\`), and
/// anything after [`MAX_CHARS`] characters is replaced by `…(N more bytes)`.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

/// Characters that reorder or hide text when displayed (Trojan Source, CVE-2021-42574).
fn is_bidi_or_invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// Printable ASCII but the backslash: written as it is.
fn is_plain(byte: u8) -> bool {
    (b' '..=b'~').contains(&byte) && byte != b'\\'
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The usual value (a Kubernetes name, a uid) needs nothing: one write, no decoding.
        // ASCII has a byte per character, so such a value is cut only beyond MAX_CHARS bytes.
        if self.0.len() <= MAX_CHARS && self.0.bytes().all(is_plain) {
            return f.write_str(self.0);
        }
        write_escaped(self.0, f)
    }
}

/// Any value: escapes and the cut, character by character.
fn write_escaped(value: &str, f: &mut impl fmt::Write) -> fmt::Result {
    // Runs of plain characters go out in one write, not a character at a time: under the
    // JSON log format every write goes through serde_json's escaping on its own.
    let mut plain = 0;
    for (count, (at, c)) in value.char_indices().enumerate() {
        if count == MAX_CHARS {
            f.write_str(&value[plain..at])?;
            return write!(f, "…({} more bytes)", value.len() - at);
        }
        let short = match c {
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            c if c.is_control() || is_bidi_or_invisible(c) => None,
            _ => continue,
        };
        f.write_str(&value[plain..at])?;
        match short {
            Some(text) => f.write_str(text)?,
            None => write!(f, "\\u{{{:x}}}", u32::from(c))?,
        }
        plain = at + c.len_utf8();
    }
    f.write_str(&value[plain..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let shown = Escaped("vm\nINFO forged line \u{1b}[31mred\u{7f}\u{9b}\t\\").to_string();
        assert_eq!(
            shown,
            "vm\\nINFO forged line \\u{1b}[31mred\\u{7f}\\u{9b}\\t\\\\"
        );
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(
            Escaped("a\u{202e}b\u{2066}").to_string(),
            "a\\u{202e}b\\u{2066}"
        );
        assert_eq!(Escaped("ubuntu-vm").to_string(), "ubuntu-vm");
        assert_eq!(Escaped("größe-ü").to_string(), "größe-ü");
    }

    /// The plain ASCII shortcut writes what the character-by-character path writes, up to
    /// and past the cut, and leaves the backslash and DEL to it.
    #[test]
    fn the_ascii_shortcut_agrees_with_the_general_path() {
        let printable: String = (b' '..=b'~').map(char::from).collect();
        let mut values = vec![
            String::new(),
            "ubuntu-vm".to_string(),
            printable.clone(),
            "a\\b".to_string(),
            "a\u{7f}b".to_string(),
        ];
        for len in [MAX_CHARS - 1, MAX_CHARS, MAX_CHARS + 1, 1000] {
            values.push(printable.chars().cycle().take(len).collect());
        }
        for value in &values {
            let mut general = String::new();
            write_escaped(value, &mut general).unwrap();
            assert_eq!(Escaped(value).to_string(), general, "{value:?}");
        }
        assert_eq!(Escaped("a\\b").to_string(), "a\\\\b");
    }

    #[test]
    fn long_values_are_cut_with_a_marker() {
        let uid = "x".repeat(1_000_000);
        let shown = Escaped(&uid).to_string();
        assert_eq!(
            shown,
            format!(
                "{}…({} more bytes)",
                "x".repeat(MAX_CHARS),
                1_000_000 - MAX_CHARS
            )
        );
        let exact = "y".repeat(MAX_CHARS);
        assert_eq!(Escaped(&exact).to_string(), exact);
        // An escape just before the cut, and the plain run before it, both kept.
        let edge = format!("{}\n{}", "x".repeat(MAX_CHARS - 1), "y".repeat(10));
        assert_eq!(
            Escaped(&edge).to_string(),
            format!("{}\\n…(10 more bytes)", "x".repeat(MAX_CHARS - 1))
        );
        // Multi-byte characters are never split.
        let wide = "é".repeat(300);
        let shown = Escaped(&wide).to_string();
        assert!(shown.starts_with(&"é".repeat(MAX_CHARS)), "{shown}");
        assert!(shown.ends_with("…(94 more bytes)"), "{shown}");
    }
}

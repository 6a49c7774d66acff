//! Quoting untrusted text in messages, and counting in them.
//!
//! Names read from files (pickle globals, state-dict keys, record names, safetensors headers)
//! end up in error messages printed on a terminal. A name holding terminal escape sequences
//! could clear the screen, retitle the window or print a fake "weights OK", so every message
//! that quotes file content passes it through [`escape_controls`] first.
use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal raw: C0 and C1 controls, DEL, and the Unicode format
/// characters that reorder or hide text (bidirectional overrides and isolates, zero-width
/// marks, the BOM).
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// `s` with every control or text-reordering character written as an escape (`\n`, `\x1b`,
/// `\u{202e}`), so that printing it shows the characters instead of obeying them. Text
/// without such characters is returned as is.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`escape_controls`] for bytes that may not be UTF-8 (invalid sequences become U+FFFD).
pub fn escape_bytes(b: &[u8]) -> String {
    escape_controls(&String::from_utf8_lossy(b)).into_owned()
}

/// `n` and the noun for it: `count(1, "row", "rows")` is "1 row", `count(6, ...)` "6 rows".
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_take_the_singular_for_one_only() {
        assert_eq!((count(1, "row", "rows"), count(0, "row", "rows")), ("1 row".into(), "0 rows".into()));
        assert_eq!(count(6, "entry", "entries"), "6 entries");
    }

    #[test]
    fn controls_are_escaped_and_plain_text_is_borrowed() {
        assert!(matches!(escape_controls("layer1.0.conv1.weight"), Cow::Borrowed(_)));
        assert_eq!(escape_controls("a\x1b[2Jb\x07"), "a\\x1b[2Jb\\x07");
        assert_eq!(escape_controls("x\ny\r\tz"), "x\\ny\\r\\tz");
        assert_eq!(escape_controls("\u{9b}31m \u{202e}evil"), "\\x9b31m \\u{202e}evil");
        assert_eq!(escape_controls("é ü ß 漢"), "é ü ß 漢");
        assert_eq!(escape_bytes(b"\xff\x1b"), "\u{fffd}\\x1b");
    }
}

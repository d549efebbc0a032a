//! Text from the wire made safe to print: control characters, non-UTF-8 bytes and the Unicode
//! characters that reorder or hide text are shown as escapes (`\x1b`, `\u{202e}`), so a request
//! line cannot clear a terminal, retitle it, or break a Nagios line. Applied when rendering, never
//! on the per-packet path. JSON output does not need it: serde escapes control characters itself.

use std::borrow::Cow;

/// Characters shown as an escape instead of themselves.
fn needs_escape(c: char) -> bool {
    c.is_control() // C0, DEL and C1 (U+0080–U+009F: a lone U+009B is CSI on some terminals)
        || c == '\\'
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

fn push_escaped(out: &mut String, c: char) {
    use std::fmt::Write as _;
    match c {
        '\\' => out.push_str("\\\\"),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// `text` with every control or invisible-formatting character escaped; borrowed when clean.
pub(crate) fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_are_shown_not_obeyed() {
        let hostile = "/h\x1b]0;TITLE\x07\x1b[2J";
        let e = escape(hostile);
        assert_eq!(e, "/h\\x1b]0;TITLE\\x07\\x1b[2J");
        assert!(!e.chars().any(|c| c.is_control()));
    }

    #[test]
    fn clean_text_is_borrowed_and_unchanged() {
        assert!(matches!(escape("GET /health → 200"), Cow::Borrowed("GET /health → 200")));
    }

    #[test]
    fn newlines_c1_bidi_and_backslashes() {
        assert_eq!(escape("a\r\nb"), "a\\x0d\\x0ab");
        assert_eq!(escape("\u{9b}2J"), "\\u{9b}2J");
        assert_eq!(escape("x\u{202e}y"), "x\\u{202e}y");
        // A literal backslash cannot be mistaken for an escape.
        assert_eq!(escape("\\x1b"), "\\\\x1b");
    }
}

//! Bounded text. Everything a server or a model sends is untrusted: these helpers cap its size
//! (on a UTF-8 boundary) before it is kept, and mask the variable parts of error messages so
//! failures with the same cause share one signature.

use regex::Regex;
use std::sync::LazyLock;

/// The most of a reply soakd keeps (`requests.output`).
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;
/// The most of an error text soakd keeps (`requests.error`, event details).
pub const MAX_ERROR_BYTES: usize = 4 * 1024;

/// `s` cut to at most `max` bytes on a character boundary, with a marker when cut.
pub fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[{} bytes cut]", &s[..end], s.len() - end)
}

/// Appends to `buf` without letting it grow past `max` bytes; returns false once full.
pub fn push_bounded(buf: &mut String, piece: &str, max: usize) -> bool {
    let room = max.saturating_sub(buf.len());
    if piece.len() <= room {
        buf.push_str(piece);
        return true;
    }
    let mut end = room;
    while !piece.is_char_boundary(end) {
        end -= 1;
    }
    buf.push_str(&piece[..end]);
    false
}

/// An error text with numbers, hex ids, UUIDs and paths masked, so that two errors with the
/// same cause get the same signature. A leading `HTTP 503:` keeps its status. Bounded to 256
/// bytes.
pub fn signature(error: &str) -> String {
    static RULES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
        [
            (r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", "<uuid>"),
            (r"(?:[A-Za-z]:)?(?:/[\w.@+-]+){2,}/?", "<path>"),
            (r"\b0x[0-9a-fA-F]+\b", "<hex>"),
            (r"\b[0-9a-fA-F]*[0-9][0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*\b", "<hex>"),
            (r"\b[0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*[0-9][0-9a-fA-F]*\b", "<hex>"),
            (r"\d+(?:\.\d+)?", "<n>"),
            (r"\s+", " "),
        ]
        .into_iter()
        .map(|(re, to)| (Regex::new(re).expect("valid signature regex"), to))
        .collect()
    });
    let error = error.trim();
    let (status, rest) = match error.get(..9) {
        Some(p) if p.starts_with("HTTP ") && p.ends_with(':') && p[5..8].bytes().all(|b| b.is_ascii_digit()) => {
            (p, &error[9..])
        }
        _ => ("", error),
    };
    let mut s = rest.to_string();
    for (re, to) in RULES.iter() {
        s = re.replace_all(&s, *to).into_owned();
    }
    bounded(&format!("{status}{s}"), 256)
}

/// `s` with control characters (terminal escape sequences among them) shown as `�`, on one line.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == '\n' || c == '\t' {
                ' '
            } else if c.is_control() {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// `s` safe inside Markdown text and table cells, and in the HTML a Markdown renderer makes of it.
pub fn markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in printable(s).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '|' | '`' | '*' | '_' | '[' | ']' | '\\' | '#' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_cuts_on_a_char_boundary() {
        let s = "ééé"; // 6 bytes
        let cut = bounded(s, 3);
        assert!(cut.starts_with('é') && !cut.starts_with("éé"));
        assert!(cut.ends_with("[4 bytes cut]"));
        assert_eq!(bounded("short", 10), "short");
    }

    #[test]
    fn push_bounded_stops_at_the_cap() {
        let mut buf = String::new();
        assert!(push_bounded(&mut buf, "abc", 5));
        assert!(!push_bounded(&mut buf, "déf", 5));
        assert_eq!(buf, "abcd", "é does not fit in the 1 byte left");
        assert!(push_bounded(&mut buf, "x", 5));
        assert!(!push_bounded(&mut buf, "y", 5));
        assert_eq!(buf, "abcdx");
    }

    #[test]
    fn untrusted_text_is_made_safe() {
        assert_eq!(printable("a\x1b[31mred\x07\nb"), "a\u{FFFD}[31mred\u{FFFD} b");
        assert_eq!(
            markdown("<script>x|y</script> *b* & `c`"),
            "&lt;script&gt;x\\|y&lt;/script&gt; \\*b\\* &amp; \\`c\\`"
        );
    }

    #[test]
    fn signatures_mask_variable_parts() {
        let a = signature("The model has crashed without additional information. (Exit code: 18446744072635812000)");
        let b = signature("The model has crashed without additional information. (Exit code: 6)");
        assert_eq!(a, b);
        assert_eq!(a, "The model has crashed without additional information. (Exit code: <n>)");
        assert_eq!(
            signature("failed to open /Users/me/models/qwen/model.safetensors at offset 4096"),
            "failed to open <path> at offset <n>"
        );
        assert_eq!(signature("request 1f0e2d3c-aaaa-bbbb-cccc-0123456789ab failed"), "request <uuid> failed");
        assert_eq!(signature("code 00000008:kIOGPU"), "code <n>:kIOGPU");
        assert_eq!(
            signature("HTTP 400: {\"error\":\"Model is unloaded.\"}"),
            "HTTP 400: {\"error\":\"Model is unloaded.\"}"
        );
        assert_eq!(signature("HTTP 503: retry in 5 s"), "HTTP 503: retry in <n> s");
    }
}

//! Error contents in the shape of ipyparallel's `wrap_exception`, for failures the controller
//! itself reports (hub_error, scheduler failures, dead engines).

use serde_json::{json, Value};

/// Content `{"status": "error", "ename", "evalue", "traceback", "engine_info": {}}`.
///
/// `engine_info` is empty on purpose: the stock client treats a failure *with* engine info as
/// "IOPub output will follow" and would wait forever for it.
pub fn error_content(ename: &str, evalue: &str) -> Value {
    json!({
        "status": "error",
        "ename": ename,
        "evalue": evalue,
        "traceback": [
            "Traceback (most recent call last):\n",
            "  (raised by the oxipp controller)\n",
            format!("{ename}: {evalue}"),
        ],
        "engine_info": {},
    })
}

/// Python's `repr()` of a `str`, used wherever stock messages embed `{x!r}` (and what
/// `str(KeyError(msg))` shows: stock evalues for KeyErrors carry the quotes).
///
/// Single quotes unless the text contains a single quote and no double
/// quote; `\\`, `\n`, `\r`, `\t` and non-printable characters escaped.
pub fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !py_printable(c) => {
                let n = u32::from(c);
                if n < 0x100 {
                    out.push_str(&format!("\\x{n:02x}"));
                } else if n < 0x10000 {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Approximation of `str.isprintable()`: control, separator (other than
/// ASCII space) and format characters are escaped by `repr()`.
fn py_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(u32::from(c),
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB
        | 0xD800..=0xDFFF | 0xE000..=0xF8FF | 0xF0000..=0x10FFFF)
}

/// Python's `repr()` of a list of strings, e.g. `['a', 'b']`.
pub fn py_repr_list<S: AsRef<str>>(items: &[S]) -> String {
    let inner: Vec<String> = items.iter().map(|s| py_repr(s.as_ref())).collect();
    format!("[{}]", inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_matches_python() {
        assert_eq!(py_repr("abc"), "'abc'");
        assert_eq!(py_repr("uuid 'x' in use"), "\"uuid 'x' in use\"");
        assert_eq!(py_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(py_repr_list(&["a", "b"]), "['a', 'b']");
    }

    #[test]
    fn controller_errors_have_empty_engine_info() {
        let c = error_content("TaskTimeout", "");
        assert_eq!(c["engine_info"], json!({}));
        assert_eq!(c["status"], "error");
    }
}

//! `$glob` patterns with Python `fnmatch` semantics, and their translation
//! to SQLite `GLOB`.
//!
//! Stock DictDB uses `fnmatch.fnmatch`, which on POSIX is case-sensitive,
//! lets `*` cross `/`, has no escape character, and treats an unclosed `[`
//! literally. Generic glob crates differ on several of those points, so the
//! (small) matcher lives here.

/// One pattern element; every element except `Star` consumes one character.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Lit(char),
    Any,
    Star,
    /// Inclusive ranges; a single character is a range of one.
    Set {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pattern {
    toks: Vec<Tok>,
}

/// Parse the inside of a `[...]` the way `fnmatch.translate` builds its
/// regex class: left to right, `x-y` is a range when a character follows
/// the dash, and an inverted range is dropped together with its endpoints.
fn parse_set(body: &[char]) -> Vec<(char, char)> {
    let mut ranges = Vec::new();
    let mut p = 0;
    while p < body.len() {
        if p + 2 < body.len() && body[p + 1] == '-' {
            let (lo, hi) = (body[p], body[p + 2]);
            if lo <= hi {
                ranges.push((lo, hi));
            }
            p += 3;
        } else {
            ranges.push((body[p], body[p]));
            p += 1;
        }
    }
    ranges
}

impl Pattern {
    pub(crate) fn new(pat: &str) -> Pattern {
        let chars: Vec<char> = pat.chars().collect();
        let mut toks = Vec::new();
        let n = chars.len();
        let mut i = 0;
        while i < n {
            let c = chars[i];
            i += 1;
            match c {
                '*' => {
                    if toks.last() != Some(&Tok::Star) {
                        toks.push(Tok::Star);
                    }
                }
                '?' => toks.push(Tok::Any),
                '[' => {
                    let mut j = i;
                    if j < n && chars[j] == '!' {
                        j += 1;
                    }
                    if j < n && chars[j] == ']' {
                        j += 1;
                    }
                    while j < n && chars[j] != ']' {
                        j += 1;
                    }
                    if j >= n {
                        toks.push(Tok::Lit('['));
                    } else {
                        let negated = chars[i] == '!';
                        let start = if negated { i + 1 } else { i };
                        let ranges = parse_set(&chars[start..j]);
                        toks.push(Tok::Set { negated, ranges });
                        i = j + 1;
                    }
                }
                c => toks.push(Tok::Lit(c)),
            }
        }
        Pattern { toks }
    }

    /// Whole-string match (`fnmatchcase`): the classic single-star
    /// backtracking algorithm, exact because every other token consumes
    /// exactly one character.
    pub(crate) fn matches(&self, text: &str) -> bool {
        let s: Vec<char> = text.chars().collect();
        let p = &self.toks;
        let (mut si, mut pi) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            if pi < p.len() {
                match &p[pi] {
                    Tok::Star => {
                        star = Some((pi, si));
                        pi += 1;
                        continue;
                    }
                    tok if tok_matches(tok, s[si]) => {
                        si += 1;
                        pi += 1;
                        continue;
                    }
                    _ => {}
                }
            }
            match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            }
        }
        p[pi..].iter().all(|t| *t == Tok::Star)
    }

    /// An equivalent SQLite `GLOB` pattern, or `None` when one cannot be
    /// written exactly (SQLite sets cannot express some placements of `]`,
    /// `^` and `-`, and NUL ends SQLite's pattern); callers then filter in
    /// Rust instead. `Some(None)` means "can never match".
    pub(crate) fn to_sqlite_glob(&self) -> Option<Option<String>> {
        let mut out = String::with_capacity(self.toks.len() + 8);
        for tok in &self.toks {
            match tok {
                Tok::Lit('\0') => return None,
                Tok::Lit(c @ ('*' | '?' | '[')) => {
                    out.push('[');
                    out.push(*c);
                    out.push(']');
                }
                Tok::Lit(c) => out.push(*c),
                Tok::Any => out.push('?'),
                Tok::Star => out.push('*'),
                Tok::Set { negated, ranges } => {
                    if ranges.is_empty() {
                        if *negated {
                            out.push('?');
                            continue;
                        }
                        return Some(None);
                    }
                    out.push_str(&sqlite_set(*negated, ranges)?);
                }
            }
        }
        Some(Some(out))
    }
}

fn tok_matches(tok: &Tok, c: char) -> bool {
    match tok {
        Tok::Lit(l) => *l == c,
        Tok::Any => true,
        Tok::Star => false,
        Tok::Set { negated, ranges } => {
            ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
        }
    }
}

/// SQLite reads a set as: optional `^`, then a literal `]` if first, then
/// items where `a-b` is a range only after a character and before a
/// non-`]`. So: `]` goes first, a literal `-` right after it (still
/// literal there), a literal `^` last.
fn sqlite_set(negated: bool, ranges: &[(char, char)]) -> Option<String> {
    let special = |c: char| matches!(c, ']' | '^' | '-' | '\0');
    let mut close = false;
    let mut dash = false;
    let mut caret = false;
    let mut body = String::new();
    for &(lo, hi) in ranges {
        if lo == hi {
            match lo {
                ']' => close = true,
                '-' => dash = true,
                '^' => caret = true,
                '\0' => return None,
                c => body.push(c),
            }
        } else {
            if special(lo) || special(hi) {
                return None;
            }
            body.push(lo);
            body.push('-');
            body.push(hi);
        }
    }
    if !negated && !close && !dash && body.is_empty() {
        // only `^`: a plain character outside a set
        return Some("^".to_owned());
    }
    let mut out = String::from("[");
    if negated {
        out.push('^');
    }
    if close {
        out.push(']');
    }
    if dash {
        out.push('-');
    }
    out.push_str(&body);
    if caret {
        out.push('^');
    }
    out.push(']');
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn m(pat: &str, s: &str) -> bool {
        Pattern::new(pat).matches(s)
    }

    #[test]
    fn fnmatch_basics() {
        assert!(m("*", ""));
        assert!(m("a*", "abc"));
        assert!(m("*c", "abc"));
        assert!(m("a*c", "a/b/c"), "* crosses slashes");
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(!m("ABC", "abc"), "case-sensitive");
        assert!(m("*\n*", "x\ny"), "* matches newlines");
        assert!(m("a\\b", "a\\b"), "backslash is literal");
        assert!(m("*a*b*c*", "xxaxxbxxcxx"));
        assert!(!m("*a*b*c*", "xxcxxbxxaxx"));
    }

    #[test]
    fn fnmatch_sets() {
        assert!(m("[abc]", "b"));
        assert!(!m("[abc]", "d"));
        assert!(m("[!abc]", "d"));
        assert!(!m("[!abc]", "a"));
        assert!(m("[a-c]x", "bx"));
        assert!(m("[]]", "]"));
        assert!(m("[!]]", "a"));
        assert!(!m("[!]]", "]"));
        assert!(m("[a-]", "-"));
        assert!(m("[-a]", "-"));
        assert!(m("[^a]", "^"), "^ is not negation in fnmatch");
        assert!(!m("[^a]", "b"));
        assert!(m("[", "["), "unclosed [ is literal");
        assert!(m("[ab", "[ab"));
        assert!(!m("[z-a]", "m"), "inverted range never matches");
        assert!(!m("[z-a]", "z"));
        assert!(m("[!z-a]", "q"), "negated empty set matches any char");
        assert!(m("[xz-ab]", "b") && m("[xz-ab]", "x") && !m("[xz-ab]", "z"));
        assert!(m("[a-c-e]", "-") && m("[a-c-e]", "e") && !m("[a-c-e]", "d"));
    }

    /// The 73 texts the fixture's bitmasks refer to.
    pub(crate) fn fixture_texts() -> Vec<String> {
        let alpha: Vec<char> = "ab-^]![c".chars().collect();
        let mut texts = vec![String::new()];
        texts.extend(alpha.iter().map(|c| c.to_string()));
        for x in &alpha {
            for y in &alpha {
                texts.push(format!("{x}{y}"));
            }
        }
        texts
    }

    /// `(pattern, mask)` pairs computed by CPython's `fnmatch.fnmatchcase`.
    pub(crate) fn fixture_cases() -> Vec<(String, u128)> {
        include_str!("../tests/data/fnmatch_cases.tsv")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (p, m) = l.split_once('\t').expect("pattern<TAB>mask");
                (p.to_owned(), u128::from_str_radix(m, 16).expect("hex mask"))
            })
            .collect()
    }

    #[test]
    fn agrees_with_cpython_fnmatch() {
        let texts = fixture_texts();
        let cases = fixture_cases();
        assert!(cases.len() > 2500);
        for (pat, want) in cases {
            let p = Pattern::new(&pat);
            let got = texts
                .iter()
                .enumerate()
                .filter(|(_, t)| p.matches(t))
                .fold(0u128, |m, (i, _)| m | 1 << i);
            assert_eq!(got, want, "pattern {pat:?}");
        }
    }

    #[test]
    fn sqlite_translation_shapes() {
        let t = |p: &str| Pattern::new(p).to_sqlite_glob();
        assert_eq!(t("a*b?"), Some(Some("a*b?".into())));
        assert_eq!(t("[*]x[?]"), Some(Some("[*]x[?]".into())));
        assert_eq!(t("[!a-c]"), Some(Some("[^a-c]".into())));
        assert_eq!(t("[^a]"), Some(Some("[a^]".into())));
        assert_eq!(t("[^]"), Some(Some("^".into())));
        assert_eq!(t("[]-]"), Some(Some("[]-]".into())));
        assert_eq!(t("[z-a]"), Some(None));
        assert_eq!(t("[!z-a]"), Some(Some("?".into())));
        assert_eq!(t("["), Some(Some("[[]".into())));
        assert_eq!(t("[]-a]"), None, "range from ] is not expressible");
    }
}

//! PCRE subsignatures, `[Offset:]Trigger/regex/[flags]`, run as ClamAV's
//! libclamav/matcher-pcre.c runs them, on the `regex-automata` engine.
//!
//! The regex engine has no backtracking, so some PCRE features cannot be
//! expressed; signatures using them are counted as unsupported, never
//! approximated:
//! * lookahead/lookbehind `(?=`, `(?!`, `(?<=`, `(?<!` → `ldb_pcre_lookaround`;
//! * backreferences `\1`..`\9`, `\g`, `\k` → `ldb_pcre_backreference`;
//! * atomic groups, possessive quantifiers, recursion, conditionals, `\K`,
//!   `\G`, `\R`, `\h`, `\v`, `\X`, `\C`, `\N`, `\Q..\E`, octal escapes, and
//!   anything else the regex parser refuses → `ldb_pcre_syntax`.
//!
//! Differences handled by translation: PCRE's `$` and `\Z` (end, or before
//! a final newline, unless the `E` flag or multiline) become `(?:\n?\z)`;
//! `\e` becomes `\x1B`; bytes above 0x7f become `\xHH`. Matching is on
//! bytes (no Unicode), leftmost-first like PCRE's backtracking order.

use super::expr::{self, Expr};
use crate::ndb::{NdbLineError, Offset};
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, meta::Regex};

/// Objects larger than this are not searched with PCRE (ClamAV's default
/// `PCREMaxFileSize`, 100 MiB): such subsignatures count no match.
pub const MAX_FILESIZE: u64 = 100 << 20;
/// Compiled size limit for one regex.
const SIZE_LIMIT: usize = 4 << 20;

/// A compiled PCRE subsignature. In the compiled-set cache it is its
/// regex's source and options; reading it back builds the regex again.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(into = "PcreRepr", try_from = "PcreRepr")]
pub struct PcreSub {
    pub trigger: Expr,
    pub offset: Offset,
    pub global: bool,
    pub rolling: bool,
    pub encompass: bool,
    /// `A`: anchored at the search start.
    pub anchored: bool,
    source: RegexSource,
    regex: Regex,
}

/// What a PCRE subsignature's regex is built from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct RegexSource {
    /// The pattern in the regex crate's syntax.
    translated: Box<str>,
    ci: bool,
    dotall: bool,
    multi: bool,
    ext: bool,
    ungreedy: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct PcreRepr {
    trigger: Expr,
    offset: Offset,
    global: bool,
    rolling: bool,
    encompass: bool,
    anchored: bool,
    source: RegexSource,
}

impl From<PcreSub> for PcreRepr {
    fn from(p: PcreSub) -> PcreRepr {
        PcreRepr {
            trigger: p.trigger,
            offset: p.offset,
            global: p.global,
            rolling: p.rolling,
            encompass: p.encompass,
            anchored: p.anchored,
            source: p.source,
        }
    }
}

impl TryFrom<PcreRepr> for PcreSub {
    type Error = String;

    fn try_from(r: PcreRepr) -> Result<PcreSub, String> {
        let regex = build_regex(&r.source).map_err(|e| format!("PCRE subsignature: {e:?}"))?;
        Ok(PcreSub {
            trigger: r.trigger,
            offset: r.offset,
            global: r.global,
            rolling: r.rolling,
            encompass: r.encompass,
            anchored: r.anchored,
            source: r.source,
            regex,
        })
    }
}

fn build_regex(src: &RegexSource) -> Result<Regex, NdbLineError> {
    Regex::builder()
        .syntax(
            syntax::Config::new()
                .unicode(false)
                .utf8(false)
                .case_insensitive(src.ci)
                .dot_matches_new_line(src.dotall)
                .multi_line(src.multi)
                .ignore_whitespace(src.ext)
                .swap_greed(src.ungreedy)
                .nest_limit(100),
        )
        .configure(
            Regex::config()
                .utf8_empty(false)
                .nfa_size_limit(Some(SIZE_LIMIT))
                .onepass_size_limit(Some(SIZE_LIMIT))
                .hybrid_cache_capacity(2 << 20)
                // No fully compiled DFA: building one per expression was
                // 36 % of loading 10,000 logical signatures (1,500 with
                // PCRE); the lazy DFA matches as fast on the few windows a
                // trigger selects (BENCHMARKS.md, "Loading at realistic scale").
                .dfa(false),
        )
        .build(&src.translated)
        .map_err(|e| {
            tracing::debug!(pattern = %src.translated, error = %e, "PCRE not expressible");
            if e.size_limit().is_some() {
                unsupported("ldb_pcre_too_big")
            } else {
                unsupported("ldb_pcre_syntax")
            }
        })
}

fn bad(msg: impl Into<String>) -> NdbLineError {
    NdbLineError::Malformed(msg.into())
}

fn unsupported(k: &'static str) -> NdbLineError {
    NdbLineError::Unsupported(k)
}

/// Rewrite a PCRE pattern into the regex crate's syntax, or say why not.
fn translate(pat: &[u8], dollar_end_only: bool, multiline: bool) -> Result<String, NdbLineError> {
    let mut out = String::with_capacity(pat.len() + 8);
    let mut i = 0;
    let mut in_class = false;
    let end_anchor = if dollar_end_only || multiline {
        None
    } else {
        Some("(?:\\n?\\z)")
    };
    while i < pat.len() {
        let c = pat[i];
        match c {
            b'\\' => {
                let Some(&e) = pat.get(i + 1) else {
                    return Err(bad("PCRE: trailing backslash"));
                };
                match e {
                    b'1'..=b'9' | b'g' | b'k' => return Err(unsupported("ldb_pcre_backreference")),
                    b'K' | b'G' | b'R' | b'h' | b'H' | b'v' | b'V' | b'X' | b'C' | b'N' | b'Q'
                    | b'E' | b'0' | b'c' | b'o' => return Err(unsupported("ldb_pcre_syntax")),
                    b'e' => out.push_str("\\x1B"),
                    b'Z' if !in_class => out.push_str("(?:\\n?\\z)"),
                    _ if e >= 0x80 => out.push_str(&format!("\\x{e:02X}")),
                    _ => {
                        out.push('\\');
                        out.push(e as char);
                    }
                }
                i += 2;
                continue;
            }
            b'[' if !in_class => {
                in_class = true;
                out.push('[');
                i += 1;
                if pat.get(i) == Some(&b'^') {
                    out.push('^');
                    i += 1;
                }
                // A ']' first in a class is literal in PCRE.
                if pat.get(i) == Some(&b']') {
                    out.push_str("\\]");
                    i += 1;
                }
                continue;
            }
            b'[' if in_class => {
                // POSIX classes like [:alpha:] pass through; a bare '[' is literal.
                if pat.get(i + 1) == Some(&b':') {
                    out.push('[');
                } else {
                    out.push_str("\\[");
                }
            }
            b']' if in_class => {
                in_class = false;
                out.push(']');
            }
            b'(' if !in_class => {
                let rest = &pat[i + 1..];
                if rest.starts_with(b"?=")
                    || rest.starts_with(b"?!")
                    || rest.starts_with(b"?<=")
                    || rest.starts_with(b"?<!")
                {
                    return Err(unsupported("ldb_pcre_lookaround"));
                }
                if rest.starts_with(b"?>")
                    || rest.starts_with(b"?R")
                    || rest.starts_with(b"?(")
                    || rest.starts_with(b"?|")
                    || rest.starts_with(b"*")
                    || rest.first().is_some_and(|_| {
                        rest.starts_with(b"?")
                            && rest
                                .get(1)
                                .is_some_and(|b| b.is_ascii_digit() || *b == b'&')
                    })
                {
                    return Err(unsupported("ldb_pcre_syntax"));
                }
                // An inline flag group turning on multiline changes what `$` means.
                if rest.first() == Some(&b'?') && end_anchor.is_some() {
                    let flags: Vec<u8> = rest[1..]
                        .iter()
                        .take_while(|b| b.is_ascii_alphabetic() || **b == b'-')
                        .copied()
                        .collect();
                    let on = flags.split(|&b| b == b'-').next().unwrap_or(&[]);
                    if on.contains(&b'm') {
                        return Err(unsupported("ldb_pcre_syntax"));
                    }
                }
                out.push('(');
            }
            b'$' if !in_class => match end_anchor {
                Some(a) => out.push_str(a),
                None => out.push('$'),
            },
            b'+' if !in_class && i > 0 && matches!(pat[i - 1], b'*' | b'+' | b'?' | b'}') => {
                // Possessive quantifier (`a++`, `a*+`, `a?+`, `a{2}+`).
                if pat.get(i.wrapping_sub(2)) != Some(&b'\\') {
                    return Err(unsupported("ldb_pcre_syntax"));
                }
                out.push('+');
            }
            _ if c >= 0x80 => out.push_str(&format!("\\x{c:02X}")),
            _ => out.push(c as char),
        }
        i += 1;
    }
    Ok(out)
}

/// Parse a PCRE subsignature; `own` is its index (the trigger must only
/// refer to earlier subsignatures).
pub fn parse(sub: &[u8], own: usize) -> Result<PcreSub, NdbLineError> {
    // `[Offset:]Trigger/regex/flags`: ':' outside the regex splits the offset.
    let toks = super::tokenize(sub, b':', 0, 5);
    let (offset_tok, sig) = match toks.len() {
        1 => (None, toks[0]),
        2 => (Some(toks[0]), toks[1]),
        _ => return Err(bad("PCRE subsignature: too many ':' fields")),
    };
    let first = sig
        .iter()
        .position(|&b| b == b'/')
        .ok_or_else(|| bad("PCRE: no '/'"))?;
    let last = sig
        .iter()
        .rposition(|&b| b == b'/')
        .ok_or_else(|| bad("PCRE: no '/'"))?;
    if first == last {
        return Err(bad("PCRE subsignature: mismatched '/' delimiter"));
    }
    if sub.first() == Some(&b'/') {
        return Err(bad("PCRE subsignature must have a logical trigger"));
    }
    let (trigger, pattern, flags) = (&sig[..first], &sig[first + 1..last], &sig[last + 1..]);
    if trigger.is_empty() || pattern.is_empty() {
        return Err(bad("PCRE: trigger or pattern cannot be empty"));
    }
    let trigger = expr::parse(trigger)?;
    let top = trigger.max_id() as usize;
    if top >= own {
        return Err(bad(format!(
            "PCRE subsignature {own}: trigger refers to subsignature {top} (not an earlier one)"
        )));
    }
    let offset = match offset_tok {
        None => Offset::Any,
        Some(o) => super::offset(o)?,
    };
    let (mut ci, mut dotall, mut multi, mut ext, mut anchored, mut endonly, mut ungreedy) =
        (false, false, false, false, false, false, false);
    let (mut global, mut rolling, mut encompass) = (false, false, false);
    for &f in flags {
        match f {
            b'i' => ci = true,
            b's' => dotall = true,
            b'm' => multi = true,
            b'x' => ext = true,
            b'A' => anchored = true,
            b'E' => endonly = true,
            b'U' => ungreedy = true,
            b'g' => global = true,
            b'r' => rolling = true,
            b'e' => encompass = true,
            _ => {
                return Err(bad(format!(
                    "PCRE: unknown option {:?}",
                    (f as char).to_string()
                )));
            }
        }
    }
    let source = RegexSource {
        translated: translate(pattern, endonly, multi)?.into(),
        ci,
        dotall,
        multi,
        ext,
        ungreedy,
    };
    let regex = build_regex(&source)?;
    Ok(PcreSub {
        trigger,
        offset,
        global,
        rolling,
        encompass,
        anchored,
        source,
        regex,
    })
}

impl PcreSub {
    /// Start offsets of the matches in `data`, in the order ClamAV reports
    /// them; at most `limit`.
    pub fn matches(&self, data: &[u8], limit: usize) -> Vec<u64> {
        let mut found = Vec::new();
        let length = data.len() as u64;
        if length > MAX_FILESIZE {
            return found;
        }
        let (adjbuffer, adjshift, any) = match self.offset {
            Offset::Any => (0u64, 0u64, true),
            Offset::Abs { start, span } => (start, span, false),
            Offset::Eof { back, span } => match length.checked_sub(back) {
                Some(s) => (s, span, false),
                // ClamAV's unsigned subtraction wraps past the end: no search.
                None => return found,
            },
            // Refused when the subsignature is parsed (`ldb::offset`).
            Offset::Ep { .. }
            | Offset::Section { .. }
            | Offset::SectionWhole { .. }
            | Offset::LastSection { .. } => return found,
        };
        let anchored = self.anchored || (!self.rolling && adjshift == 0 && !any);
        if adjbuffer >= length {
            return found;
        }
        let adjlength = if self.encompass && adjshift != 0 {
            adjshift.min(length - adjbuffer)
        } else {
            length - adjbuffer
        };
        let hay = &data[adjbuffer as usize..(adjbuffer + adjlength) as usize];
        let mut offset = 0usize;
        loop {
            let input = Input::new(hay).range(offset..).anchored(if anchored {
                Anchored::Yes
            } else {
                Anchored::No
            });
            let Some(m) = self.regex.find(input) else {
                break;
            };
            if !self.encompass && adjshift != 0 && m.start() as u64 > adjshift {
                break;
            }
            found.push(adjbuffer + m.start() as u64);
            if found.len() >= limit {
                break;
            }
            // Next search from the end of this match (at least one byte on).
            offset = if m.end() > offset {
                m.end()
            } else {
                offset + 1
            };
            if !self.global || offset >= hay.len() {
                break;
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starts(sub: &str, data: &[u8]) -> Vec<u64> {
        parse(sub.as_bytes(), 1).unwrap().matches(data, 1000)
    }

    #[test]
    fn first_match_or_all_with_global() {
        assert_eq!(starts("0/ab+c/", b"xxabbc abc"), vec![2]);
        assert_eq!(starts("0/ab+c/g", b"xxabbc abc"), vec![2, 7]);
        assert!(starts("0/ABC/", b"abc").is_empty());
        assert_eq!(starts("0/ABC/i", b"xabc"), vec![1]);
    }

    #[test]
    fn offsets_anchor_and_bound_the_search() {
        // An exact offset anchors the match there.
        assert_eq!(starts("2:0/abc/", b"xxabc"), vec![2]);
        assert!(starts("1:0/abc/", b"xxabc").is_empty());
        // With a span: the match may start up to span bytes later.
        assert_eq!(starts("1,3:0/abc/", b"xxabc"), vec![2]);
        assert!(starts("1,3:0/abc/", b"xxxxxabc").is_empty());
        // Encompass: the whole match must lie in offset..offset+span.
        assert!(starts("0,4:0/abc/e", b"xxabc").is_empty());
        assert_eq!(starts("0,5:0/abc/e", b"xxabc"), vec![2]);
        // Rolling: not anchored at an exact offset.
        assert_eq!(starts("1:0/abc/r", b"xxabc"), vec![2]);
        assert_eq!(starts("EOF-3:0/abc/", b"xxabc"), vec![2]);
        // `^` is the start of the searched region.
        assert_eq!(starts("2,5:0/^abc/", b"xxabc"), vec![2]);
    }

    #[test]
    fn pcre_dollar_matches_before_a_final_newline() {
        assert_eq!(starts("0/abc$/", b"xabc\n"), vec![1]);
        assert!(starts("0/abc$/E", b"xabc\n").is_empty());
        assert_eq!(starts("0/abc$/m", b"abc\nabc"), vec![0]);
        assert_eq!(starts("0/^abc/mg", b"abc\nabc"), vec![0, 4]);
        assert!(starts("0/a.c/", b"a\nc").is_empty());
        assert_eq!(starts("0/a.c/s", b"a\nc"), vec![0]);
    }

    #[test]
    fn bytes_not_unicode() {
        assert_eq!(starts("0/\\xff\\x00./", b"\x01\xff\x00\xfe"), vec![1]);
        assert_eq!(starts("0/\\w+/", b"\xe9abc"), vec![1]);
    }

    #[test]
    fn unsupported_features_are_counted_by_kind() {
        let k = |s: &str| match parse(s.as_bytes(), 1) {
            Err(NdbLineError::Unsupported(k)) => k,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(k("0/a(?=b)/"), "ldb_pcre_lookaround");
        assert_eq!(k("0/(?<!x)a/"), "ldb_pcre_lookaround");
        assert_eq!(k("0/(a)\\1/"), "ldb_pcre_backreference");
        assert_eq!(k("0/(?>a)/"), "ldb_pcre_syntax");
        assert_eq!(k("0/a++/"), "ldb_pcre_syntax");
        assert_eq!(k("0/\\Ka/"), "ldb_pcre_syntax");
    }

    #[test]
    fn malformed_pcre_subsignatures() {
        for s in ["0/abc", "/abc/", "0//", "1/abc/", "0/abc/q", "x/abc/"] {
            assert!(
                matches!(parse(s.as_bytes(), 1), Err(NdbLineError::Malformed(_))),
                "{s}"
            );
        }
    }
}

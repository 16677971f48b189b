//! The logical expression of a logical signature, parsed and evaluated as
//! ClamAV's `cli_ac_chklsig` (libclamav/matcher-ac.c) does it.
//!
//! ClamAV's grammar has no operator precedence: the first `&` or `|` at
//! depth 0 splits the expression, so `0&1|2` is `0&(1|2)`. A subsignature
//! index may carry a count condition (`0=2`, `0>1`, `0<3`); a parenthesised
//! group whose top operator sits directly inside the parentheses may carry a
//! condition on the summed match count and, after a comma, a minimum number
//! of distinct subsignatures (`(0|1|2)>3,2`). Quirks kept on purpose:
//! `0=0` is true (with no match), a group condition does not pass its
//! subsignature ids up, and both sides of `&`/`|` are always evaluated.

use crate::ndb::NdbLineError;

/// Most subsignatures a logical signature may have (ClamAV's `MAX_LDB_SUBSIGS`).
pub const MAX_SUBSIGS: usize = 64;
/// Deepest nesting accepted (bounds recursion on hostile input).
const MAX_DEPTH: usize = 64;

/// A count comparison: `=`, `<` or `>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Cmp {
    Eq,
    Lt,
    Gt,
}

impl Cmp {
    fn from_byte(b: u8) -> Option<Cmp> {
        match b {
            b'=' => Some(Cmp::Eq),
            b'<' => Some(Cmp::Lt),
            b'>' => Some(Cmp::Gt),
            _ => None,
        }
    }

    /// Whether `val` passes `self n`.
    pub fn holds(self, val: u32, n: u32) -> bool {
        match self {
            Cmp::Eq => val == n,
            Cmp::Lt => val < n,
            Cmp::Gt => val > n,
        }
    }
}

/// A parsed logical expression.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Expr {
    /// Subsignature `id`, true when it matched (or when its count passes `cmp`).
    Sub { id: u8, cmp: Option<(Cmp, u32)> },
    /// `l & r` or `l | r`; `blk`: the group condition `(l op r)cmp n[,distinct]`.
    Op {
        and: bool,
        l: Box<Expr>,
        r: Box<Expr>,
        blk: Option<(Cmp, u32, u32)>,
    },
}

fn bad(msg: impl Into<String>) -> NdbLineError {
    NdbLineError::Malformed(msg.into())
}

/// Leading decimal digits of `s` as a number (`sscanf("%u")` without the sign).
fn leading_u32(s: &[u8]) -> Option<u32> {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 {
        return None;
    }
    let mut v: u32 = 0;
    for &b in &s[..n] {
        v = v.wrapping_mul(10).wrapping_add(u32::from(b - b'0'));
    }
    Some(v)
}

/// Parse a logical expression.
pub fn parse(s: &[u8]) -> Result<Expr, NdbLineError> {
    parse_at(s, 0)
}

fn parse_at(s: &[u8], depth: usize) -> Result<Expr, NdbLineError> {
    if depth > MAX_DEPTH {
        return Err(bad("logical expression nested too deeply"));
    }
    let len = s.len();
    if len == 0 {
        return Err(bad("empty logical (sub)expression"));
    }
    let mut pth = 0usize;
    let (mut op, mut opoff) = (None::<u8>, 0usize);
    let (mut op1, mut op1off) = (None::<u8>, 0usize);
    let (mut md, mut modoff) = (None::<u8>, 0usize);
    let mut blkend = 0usize;
    let mut blkmod: Option<u8> = None;
    let (mut modval1, mut modval2) = (0u32, 0u32);
    let mut i = 0usize;
    while i < len {
        match s[i] {
            b'(' => pth += 1,
            b')' => {
                if pth == 0 {
                    return Err(bad("logical expression: missing opening parenthesis"));
                }
                pth -= 1;
                md = Some(b')');
                modoff = i;
            }
            b'>' | b'<' | b'=' => {
                md = Some(s[i]);
                modoff = i;
            }
            b'&' | b'|' => {
                if pth == 0 {
                    op = Some(s[i]);
                    opoff = i;
                } else if pth == 1 {
                    op1 = Some(s[i]);
                    op1off = i;
                }
            }
            _ => {}
        }
        if op.is_some() {
            break;
        }
        if op1.is_some() && pth == 0 {
            blkend = i;
            if let Some(&m) = s.get(i + 1).filter(|b| matches!(b, b'>' | b'<' | b'=')) {
                blkmod = Some(m);
                let rest = s.get(i + 2..).unwrap_or(&[]);
                modval1 = leading_u32(rest).ok_or_else(|| {
                    bad(format!(
                        "logical expression: missing number after '{}'",
                        m as char
                    ))
                })?;
                let nd = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                if rest.get(nd) == Some(&b',')
                    && let Some(v2) = leading_u32(&rest[nd + 1..])
                {
                    modval2 = v2;
                }
                i += 2;
                while i + 1 < len && (s[i + 1].is_ascii_digit() || s[i + 1] == b',') {
                    i += 1;
                }
            }
            if i + 1 == len {
                break;
            }
            blkmod = None;
        }
        i += 1;
    }
    if pth != 0 {
        return Err(bad("logical expression: missing closing parenthesis"));
    }
    if op.is_none() && op1.is_none() {
        if s[0] == b'(' {
            if len < 2 {
                return Err(bad("logical expression: lone parenthesis"));
            }
            return parse_at(&s[1..len - 1], depth + 1);
        }
        let id = leading_u32(s)
            .ok_or_else(|| bad(format!("logical expression: cannot parse {:?}", lossy(s))))?;
        if id as usize >= MAX_SUBSIGS {
            return Err(bad(format!(
                "logical expression: subsignature {id} (at most {MAX_SUBSIGS})"
            )));
        }
        let cmp = match md {
            Some(m) => {
                let c = Cmp::from_byte(m).ok_or_else(|| bad("logical expression: bad modifier"))?;
                let n = leading_u32(s.get(modoff + 1..).unwrap_or(&[])).ok_or_else(|| {
                    bad(format!(
                        "logical expression: missing number after '{}'",
                        m as char
                    ))
                })?;
                Some((c, n))
            }
            None => None,
        };
        return Ok(Expr::Sub { id: id as u8, cmp });
    }
    let mut lstart = 0usize;
    let mut rend = len;
    let (op, opoff) = match op {
        Some(o) => (o, opoff),
        None => {
            lstart = 1;
            rend = blkend;
            // op1 is Some here.
            (op1.unwrap_or(b'&'), op1off)
        }
    };
    if opoff == 0 {
        return Err(bad("logical expression: missing left argument"));
    }
    if opoff + 1 == len {
        return Err(bad("logical expression: missing right argument"));
    }
    let l = parse_at(s.get(lstart..opoff).unwrap_or(&[]), depth + 1)?;
    let r = parse_at(s.get(opoff + 1..rend).unwrap_or(&[]), depth + 1)?;
    let blk = match blkmod {
        Some(m) => Some((
            Cmp::from_byte(m).ok_or_else(|| bad("logical expression: bad modifier"))?,
            modval1,
            modval2,
        )),
        None => None,
    };
    Ok(Expr::Op {
        and: op == b'&',
        l: Box::new(l),
        r: Box::new(r),
        blk,
    })
}

fn lossy(s: &[u8]) -> String {
    String::from_utf8_lossy(s).into_owned()
}

impl Expr {
    /// The highest subsignature index used.
    pub fn max_id(&self) -> u8 {
        match self {
            Expr::Sub { id, .. } => *id,
            Expr::Op { l, r, .. } => l.max_id().max(r.max_id()),
        }
    }

    /// The largest count any condition compares with (0 when none): counts
    /// above it cannot change the result.
    pub fn max_count(&self) -> u32 {
        match self {
            Expr::Sub { cmp, .. } => cmp.map_or(0, |(_, n)| n),
            Expr::Op { l, r, blk, .. } => l
                .max_count()
                .max(r.max_count())
                .max(blk.map_or(0, |(_, n, _)| n)),
        }
    }

    /// Evaluate against per-subsignature match counts (missing = 0).
    pub fn matches(&self, counts: &[u32]) -> bool {
        let (mut cnt, mut ids) = (0u32, 0u64);
        self.eval(counts, &mut cnt, &mut ids)
    }

    fn eval(&self, counts: &[u32], cnt: &mut u32, ids: &mut u64) -> bool {
        match self {
            Expr::Sub { id, cmp } => {
                let val = counts.get(*id as usize).copied().unwrap_or(0);
                let ok = match cmp {
                    Some((c, n)) => c.holds(val, *n),
                    None => val > 0,
                };
                if ok {
                    *cnt = cnt.wrapping_add(val);
                    *ids |= 1u64 << (*id as u32 % 64);
                }
                ok
            }
            Expr::Op { and, l, r, blk } => {
                let (mut lcnt, mut lids, mut rcnt, mut rids) = (0u32, 0u64, 0u32, 0u64);
                let lv = l.eval(counts, &mut lcnt, &mut lids);
                let rv = r.eval(counts, &mut rcnt, &mut rids);
                let ret = if *and { lv && rv } else { lv || rv };
                match blk {
                    None => {
                        if ret {
                            *cnt = cnt.wrapping_add(lcnt.wrapping_add(rcnt));
                            *ids |= lids | rids;
                        }
                        ret
                    }
                    Some((c, n1, n2)) => {
                        let (tcnt, tids) = if ret {
                            (lcnt.wrapping_add(rcnt), lids | rids)
                        } else {
                            (0, 0)
                        };
                        if !c.holds(tcnt, *n1) {
                            return false;
                        }
                        if *n2 != 0 && tids.count_ones() < *n2 {
                            return false;
                        }
                        *cnt = cnt.wrapping_add(tcnt);
                        true
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(e: &str, counts: &[u32]) -> bool {
        parse(e.as_bytes()).unwrap().matches(counts)
    }

    #[test]
    fn plain_and_or_and_parentheses() {
        assert!(eval("0", &[1]) && !eval("0", &[0]));
        assert!(eval("0&1", &[1, 2]) && !eval("0&1", &[1, 0]));
        assert!(eval("0|1", &[0, 2]) && !eval("0|1", &[0, 0]));
        assert!(eval("(0|1)&2", &[0, 1, 1]) && !eval("(0|1)&2", &[1, 1, 0]));
        assert!(eval("((0&1)|(2&3))", &[0, 0, 1, 1]));
    }

    #[test]
    fn no_precedence_first_operator_splits() {
        // 0&1|2 is 0&(1|2): with only 2 matched it is false (C would say true).
        assert!(!eval("0&1|2", &[0, 0, 1]));
        assert!(eval("0&1|2", &[1, 0, 1]));
        assert_eq!(parse(b"0&1|2").unwrap().max_id(), 2);
    }

    #[test]
    fn counts_on_single_subsignatures() {
        assert!(eval("0=2", &[2]) && !eval("0=2", &[3]));
        assert!(eval("0>1", &[2]) && !eval("0>1", &[1]));
        assert!(eval("0<2", &[1]) && !eval("0<2", &[2]));
        // ClamAV quirk: 0=0 holds when subsignature 0 never matched.
        assert!(eval("0=0&1", &[0, 1]));
        // ",Y" on a single subsignature is ignored.
        assert!(eval("0>1,5", &[2]));
    }

    #[test]
    fn group_counts_and_distinct() {
        // Sum of counts of the matched members.
        assert!(eval("(0|1|2)>3", &[2, 2, 0]) && !eval("(0|1|2)>3", &[2, 1, 0]));
        assert!(eval("(0|1|2)=4", &[2, 2, 0]));
        // Distinct members matched.
        assert!(eval("(0|1|2)>1,2", &[1, 1, 0]) && !eval("(0|1|2)>1,2", &[5, 0, 0]));
        // A failed group condition makes the expression false.
        assert!(!eval("(0|1)>5&2", &[1, 1, 1]));
        assert!(eval("(0|1)>1&2", &[1, 1, 1]));
        // A group condition `<` holds when nothing matched.
        assert!(eval("(0|1)<1", &[0, 0]));
    }

    #[test]
    fn max_count_is_the_largest_compared_number() {
        assert_eq!(parse(b"0&1").unwrap().max_count(), 0);
        assert_eq!(parse(b"0=3&(1|2)>7,2").unwrap().max_count(), 7);
        assert_eq!(parse(b"0<9|1").unwrap().max_count(), 9);
    }

    #[test]
    fn malformed_expressions_are_errors() {
        for e in [
            "", "(0", "0)", "&1", "0&", "x", "0=", "(0|1)=", "64", "0&(1|)", "()",
        ] {
            assert!(
                matches!(parse(e.as_bytes()), Err(NdbLineError::Malformed(_))),
                "{e:?} should be malformed"
            );
        }
        // Deep nesting is refused, not a stack overflow.
        let deep = format!("{}0{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse(deep.as_bytes()).is_err());
    }
}

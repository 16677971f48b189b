//! Byte-compare subsignatures, `Ref(>>offset#options#comparisons)`, as
//! ClamAV's libclamav/matcher-byte-comp.c parses and evaluates them.
//!
//! Evaluation reads `len` bytes at (start of the last match of
//! subsignature `Ref` that ends within ClamAV's first scan buffer) +
//! offset, turns them into a number (binary little or big endian, ASCII
//! hex or decimal, or automatic hex/decimal) and checks one or two
//! comparisons. Hex little-endian (`hl`) fields are counted as
//! unsupported (`ldb_bytecmp_hex_le`): ClamAV's nibble shuffling for them is
//! not reproduced.

use crate::ndb::NdbLineError;

/// ClamAV reads a file in buffers of `SCANBUFF` (131072) bytes and
/// evaluates byte compares against the first one only: a field that ends
/// past it never matches there (measured with clamscan 1.4: a field ending
/// at byte 131072 matches, one ending at 131073 does not). moat does the
/// same, so that signatures behave as their authors tested them.
pub const CLAMAV_FIRST_BUFFER: u64 = 131_072;

/// How the extracted bytes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Encoding {
    /// `i`: binary integer of 1, 2, 4 or 8 bytes.
    Binary { little: bool },
    /// `h`: ASCII hex (big endian only here).
    Hex,
    /// `d`: ASCII decimal.
    Decimal,
    /// `a`: ASCII hex when it starts with `0x`, else decimal.
    Auto,
    /// `h` or `a` without an endianness: ClamAV never matches these.
    Never,
}

/// A parsed byte-compare subsignature.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ByteCmp {
    /// The subsignature whose last match start is the base offset.
    pub reference: u8,
    pub offset: i64,
    pub encoding: Encoding,
    /// `e`: the whole field must be the number.
    pub exact: bool,
    pub len: u32,
    pub comparisons: Vec<(u8, i64)>,
}

fn bad(msg: impl Into<String>) -> NdbLineError {
    NdbLineError::Malformed(msg.into())
}

/// `strtol(s, &end, 0)` over a whole token: decimal, `0x` hex or `0` octal.
fn c_long(s: &[u8]) -> Option<i64> {
    let (neg, body) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if body.len() > 2 && (body.starts_with(b"0x") || body.starts_with(b"0X"))
    {
        (16, &body[2..])
    } else if body.len() > 1 && body[0] == b'0' {
        (8, &body[1..])
    } else {
        (10, body)
    };
    let v = i64::from_str_radix(std::str::from_utf8(digits).ok()?, radix).ok()?;
    Some(if neg { -v } else { v })
}

/// Whether a subsignature looks like a byte compare (as readdb.c decides).
pub fn looks_like(sub: &[u8]) -> bool {
    let hashes = sub.iter().filter(|&&b| b == b'#').count();
    sub.contains(&b'(') && hashes >= 2
}

/// Parse `Ref(>>offset#options#comparisons)`.
pub fn parse(sub: &[u8]) -> Result<ByteCmp, NdbLineError> {
    let open = sub
        .iter()
        .position(|&b| b == b'(')
        .ok_or_else(|| bad("byte compare: no '('"))?;
    let reference = std::str::from_utf8(&sub[..open])
        .ok()
        .and_then(|s| s.parse::<u8>().ok())
        .filter(|&r| (r as usize) < super::expr::MAX_SUBSIGS)
        .ok_or_else(|| bad("byte compare: bad reference subsignature"))?;
    let close = sub[open..]
        .iter()
        .position(|&b| b == b')')
        .map(|p| open + p)
        .ok_or_else(|| bad("byte compare: no ')'"))?;
    let inner = &sub[open + 1..close];
    let toks: Vec<&[u8]> = inner.split(|&b| b == b'#').collect();
    if toks.len() != 3 {
        return Err(bad("byte compare: expected offset#options#comparisons"));
    }
    let off = toks[0];
    let offset = if let Some(rest) = off.strip_prefix(b">>") {
        c_long(rest).ok_or_else(|| bad("byte compare: bad offset"))?
    } else if let Some(rest) = off.strip_prefix(b"<<") {
        -c_long(rest).ok_or_else(|| bad("byte compare: bad offset"))?
    } else if off.is_empty() || off[0] == b'0' {
        0
    } else {
        return Err(bad("byte compare: offset must start with >> or <<"));
    };
    let opts = toks[1];
    let nopt = opts.iter().take_while(|b| !b.is_ascii_digit()).count();
    let (mut hex, mut dec, mut bin, mut auto, mut le, mut be, mut exact) =
        (false, false, false, false, false, false, false);
    for &o in &opts[..nopt] {
        let ok = match o {
            b'h' => {
                !(dec || bin || auto) && {
                    hex = true;
                    true
                }
            }
            b'd' => {
                !(hex || bin || auto || le) && {
                    dec = true;
                    be = true;
                    true
                }
            }
            b'i' => {
                !(hex || dec || auto) && {
                    bin = true;
                    true
                }
            }
            b'a' => {
                !(hex || dec || bin) && {
                    auto = true;
                    true
                }
            }
            b'l' => {
                !(be || dec) && {
                    le = true;
                    true
                }
            }
            b'b' => {
                !le && {
                    be = true;
                    true
                }
            }
            b'e' => {
                exact = true;
                true
            }
            _ => false,
        };
        if !ok {
            return Err(bad("byte compare: invalid options"));
        }
    }
    let len = c_long(&opts[nopt..])
        .filter(|&l| l > 0 && l <= u32::MAX as i64)
        .ok_or_else(|| bad("byte compare: bad byte length"))? as u32;
    if bin && (len > 8 || 8 % len != 0) {
        return Err(bad("byte compare: binary length must be 1, 2, 4 or 8"));
    }
    if hex && len > 18 {
        return Err(bad("byte compare: hex length over 18"));
    }
    let encoding = if bin {
        Encoding::Binary { little: le }
    } else if dec {
        Encoding::Decimal
    } else if (hex || auto) && le {
        return Err(NdbLineError::Unsupported("ldb_bytecmp_hex_le"));
    } else if (hex || auto) && be {
        if hex { Encoding::Hex } else { Encoding::Auto }
    } else {
        Encoding::Never
    };
    let comps: Vec<&[u8]> = toks[2].split(|&b| b == b',').collect();
    if comps.len() > 2 {
        return Err(bad("byte compare: at most two comparisons"));
    }
    let mut comparisons = Vec::with_capacity(comps.len());
    for c in comps {
        let (&sym, val) = c
            .split_first()
            .ok_or_else(|| bad("byte compare: empty comparison"))?;
        if !matches!(sym, b'<' | b'>' | b'=') {
            return Err(bad("byte compare: comparison must be <, > or ="));
        }
        let v = c_long(val).ok_or_else(|| bad("byte compare: bad comparison value"))?;
        comparisons.push((sym, v));
    }
    Ok(ByteCmp {
        reference,
        offset,
        encoding,
        exact,
        len,
        comparisons,
    })
}

/// `strtol` on a bounded buffer: optional leading spaces and sign, an
/// optional `0x` for hex; returns the value and how many bytes were used.
fn strntol(b: &[u8], radix: u32) -> Option<(i64, usize)> {
    let mut i = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    let mut neg = false;
    if let Some(&s) = b.get(i)
        && (s == b'-' || s == b'+')
    {
        neg = s == b'-';
        i += 1;
    }
    if radix == 16
        && b.get(i) == Some(&b'0')
        && matches!(b.get(i + 1), Some(b'x' | b'X'))
        && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
    {
        i += 2;
    }
    let start = i;
    let mut v: i64 = 0;
    while let Some(d) = b.get(i).and_then(|&c| (c as char).to_digit(radix)) {
        v = v.checked_mul(i64::from(radix))?.checked_add(i64::from(d))?;
        i += 1;
    }
    if i == start {
        // No digits: strtol returns 0 with end at the buffer start.
        return Some((0, 0));
    }
    Some((if neg { -v } else { v }, i))
}

impl ByteCmp {
    /// Where the field lies for a referenced match starting at `base` in an
    /// object of `total` bytes; `None` when outside it or past ClamAV's
    /// first scan buffer ([`CLAMAV_FIRST_BUFFER`]; ClamAV also refuses a
    /// field at offset 0).
    pub fn field(&self, base: u64, total: u64) -> Option<(u64, usize)> {
        let at = i128::from(base) + i128::from(self.offset);
        let end = total.min(CLAMAV_FIRST_BUFFER);
        if at <= 0 || at + i128::from(self.len) > i128::from(end) {
            return None;
        }
        Some((at as u64, self.len as usize))
    }

    /// Whether the comparison holds with the referenced match starting at `base`.
    pub fn check(&self, data: &[u8], base: u64) -> bool {
        match self.field(base, data.len() as u64) {
            Some((at, len)) => self.check_field(&data[at as usize..at as usize + len]),
            None => false,
        }
    }

    /// Whether the comparison holds on the extracted field.
    pub fn check_field(&self, field: &[u8]) -> bool {
        if field.len() != self.len as usize {
            return false;
        }
        let value = match self.encoding {
            Encoding::Never => return false,
            Encoding::Binary { little } => {
                let mut v: u64 = 0;
                if little {
                    for &b in field.iter().rev() {
                        v = (v << 8) | u64::from(b);
                    }
                } else {
                    for &b in field {
                        v = (v << 8) | u64::from(b);
                    }
                }
                v as i64
            }
            Encoding::Hex | Encoding::Decimal | Encoding::Auto => {
                let pad = field.iter().take_while(|c| c.is_ascii_whitespace()).count();
                let trimmed = &field[pad..];
                let radix = match self.encoding {
                    Encoding::Hex => 16,
                    Encoding::Decimal => 10,
                    _ => {
                        if trimmed.len() >= 3
                            && (trimmed.starts_with(b"0x") || trimmed.starts_with(b"0X"))
                        {
                            16
                        } else {
                            10
                        }
                    }
                };
                let Some((v, used)) = strntol(trimmed, radix) else {
                    return false;
                };
                if self.exact && (used != trimmed.len() || pad != 0) {
                    return false;
                }
                v
            }
        };
        self.comparisons.iter().all(|&(sym, n)| match sym {
            b'>' => value > n,
            b'<' => value < n,
            _ => value == n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_clamav_examples() {
        let b = parse(b"0(>>4#ib2#>512)").unwrap();
        assert_eq!(b.reference, 0);
        assert_eq!(b.offset, 4);
        assert_eq!(b.encoding, Encoding::Binary { little: false });
        assert_eq!(b.len, 2);
        assert_eq!(b.comparisons, vec![(b'>', 512)]);
        let b = parse(b"1(<<6#hb2#=0x1c,<100)").unwrap();
        assert_eq!(b.offset, -6);
        assert_eq!(b.encoding, Encoding::Hex);
        assert_eq!(b.comparisons, vec![(b'=', 0x1c), (b'<', 100)]);
        assert_eq!(
            parse(b"0(>>0#de4#=10)").unwrap().encoding,
            Encoding::Decimal
        );
        assert!(parse(b"0(>>0#de4#=10)").unwrap().exact);
        assert_eq!(
            parse(b"0(>>0#hl4#=10)"),
            Err(NdbLineError::Unsupported("ldb_bytecmp_hex_le"))
        );
        for m in [
            &b"x(>>4#ib2#>512)"[..],
            b"0(>>4#ib3#>512)",
            b"0(>>4#dl2#>512)",
            b"0(>>4#ib2#!5)",
            b"0(>>4#ib2#>1,>2,>3)",
            b"0(4#ib2#>1)",
            b"0(>>4#ib2)",
            b"0(>>4#ib0#=1)",
        ] {
            assert!(
                matches!(parse(m), Err(NdbLineError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(m)
            );
        }
    }

    #[test]
    fn binary_fields_little_and_big_endian() {
        let data = b"XXXXABCD\x01\x02\x03\x04";
        let le = parse(b"0(>>4#il4#=0x04030201)").unwrap();
        let be = parse(b"0(>>4#ib4#=0x01020304)").unwrap();
        assert!(le.check(data, 4) && be.check(data, 4));
        assert!(!le.check(data, 5), "field past the end");
        // Only within ClamAV's first 128 KiB scan buffer.
        let mut big = vec![0u8; 200_000];
        let at = (CLAMAV_FIRST_BUFFER - 6) as usize;
        big[at + 4..at + 6].copy_from_slice(&[0x3b, 0x2a]);
        let be2 = parse(b"0(>>4#ib2#=0x3b2a)").unwrap();
        assert!(be2.check(&big, at as u64), "a field ending at 131072");
        big[at + 5..at + 7].copy_from_slice(&[0x3b, 0x2a]);
        assert!(!be2.check(&big, at as u64 + 1), "a field ending at 131073");
        let two = parse(b"0(>>0#ib2#>0x4141,<0x4143)").unwrap();
        assert!(two.check(b"_AB", 1) && !two.check(b"_AC", 1));
        // Offset 0 never matches (ClamAV needs a positive offset).
        assert!(!parse(b"0(>>0#ib1#=65)").unwrap().check(b"A", 0));
    }

    #[test]
    fn ascii_fields_hex_decimal_auto_and_exact() {
        let d = parse(b"0(>>1#db4#>1000)").unwrap();
        assert!(d.check(b"N1234", 0) && !d.check(b"N0999", 0));
        let d5 = parse(b"0(>>1#db5#>1000)").unwrap();
        assert!(d5.check(b"N 2000", 0), "leading space trimmed");
        assert!(
            !parse(b"0(>>1#de5#>1000)").unwrap().check(b"N 2000", 0),
            "exact: no padding"
        );
        let de = parse(b"0(>>1#de4#=12)").unwrap();
        assert!(!de.check(b"N12xx", 0) && de.check(b"N0012", 0));
        let h = parse(b"0(>>1#hb4#=0x1f)").unwrap();
        assert!(h.check(b"N001f", 0) && h.check(b"N1fzz", 0));
        let a = parse(b"0(>>1#ab4#=31)").unwrap();
        assert!(a.check(b"N0x1f", 0) && a.check(b"N0031", 0));
        let never = parse(b"0(>>1#h4#=31)").unwrap();
        assert!(!never.check(b"N001f", 0));
    }
}

//! The target description block (second field of a logical signature), as
//! ClamAV's `lsigattribs`/`init_tdb` (libclamav/readdb.c) read it.

use crate::exe::ExeInfo;
use crate::ndb::{NdbLineError, Target, parse::parse_target};
use crate::normalize::filetype::CL_TYPES;

/// ClamAV 1.4.6's functionality level (`CL_FLEVEL`): signatures whose
/// `Engine:min-max` range excludes it are skipped, as ClamAV skips them.
pub const FLEVEL: u32 = 216;
/// Most attributes read (`ATTRIB_TOKENS`).
const MAX_ATTRS: usize = 10;
/// Most types in an `Intermediates` chain (`EXPR_TOKEN_MAX`).
const MAX_INTERMEDIATES: usize = 16;

/// Index of `CL_TYPE_ANY` in [`CL_TYPES`]: the container of a top-level file.
pub const TYPE_ANY: u16 = 0;

fn file_type(name: &[u8]) -> Option<u16> {
    CL_TYPES
        .iter()
        .position(|t| t.as_bytes() == name)
        .map(|i| i as u16)
}

/// An inclusive `min-max` range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Range {
    pub min: u32,
    pub max: u32,
}

impl Range {
    pub fn contains(self, v: u64) -> bool {
        u64::from(self.min) <= v && v <= u64::from(self.max)
    }
}

/// What a logical signature applies to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tdb {
    pub target: Target,
    pub engine: Option<Range>,
    pub file_size: Option<Range>,
    pub entry_point: Option<Range>,
    pub sections: Option<Range>,
    /// Required type of the enclosing object (a [`CL_TYPES`] index).
    pub container: Option<u16>,
    /// Required types of the enclosing objects, outermost first.
    pub intermediates: Option<Vec<u16>>,
}

/// Where the object sits, for `Container` and `Intermediates`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Placement {
    /// 0 for a top-level object.
    pub depth: u32,
}

impl Tdb {
    /// Whether an object of `size` bytes (and `exe` layout, when known)
    /// satisfies the block. Containers are only known for top-level objects:
    /// an embedded object does not satisfy `Container`/`Intermediates`.
    pub fn accepts(&self, size: u64, exe: Option<&ExeInfo>, place: Placement) -> bool {
        if let Some(c) = self.container
            && (place.depth != 0 || c != TYPE_ANY)
        {
            return false;
        }
        if let Some(chain) = &self.intermediates {
            // ClamAV needs at least as many ancestors as the chain is long.
            if !chain.is_empty() && place.depth < chain.len() as u32 {
                return false;
            }
            if place.depth != 0 && chain.iter().any(|&t| t != TYPE_ANY) {
                return false;
            }
        }
        if let Some(r) = self.file_size
            && !r.contains(size)
        {
            return false;
        }
        if self.entry_point.is_some() || self.sections.is_some() {
            let Some(exe) = exe else {
                return false;
            };
            if let Some(r) = self.entry_point {
                match exe.ep {
                    Some(ep) if r.contains(ep) => {}
                    _ => return false,
                }
            }
            if let Some(r) = self.sections
                && !r.contains(exe.sections.len() as u64)
            {
                return false;
            }
        }
        true
    }
}

fn bad(msg: impl Into<String>) -> NdbLineError {
    NdbLineError::Malformed(msg.into())
}

/// `cli_isnumber`: only decimal digits, at least one.
fn number(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // atoi: wrap like C would not matter for sane input; saturate instead.
    Some(s.iter().fold(0u64, |v, &b| {
        (v * 10 + u64::from(b - b'0')).min(u64::from(u32::MAX))
    }) as u32)
}

fn range(v: &[u8], name: &str) -> Result<Range, NdbLineError> {
    let Some(dash) = v.iter().position(|&b| b == b'-') else {
        return Err(bad(format!("TDB attribute {name}: expected min-max")));
    };
    match (number(&v[..dash]), number(&v[dash + 1..])) {
        (Some(min), Some(max)) => Ok(Range { min, max }),
        _ => Err(bad(format!("TDB attribute {name}: invalid range"))),
    }
}

/// Rename an ndb target error kind for logical signatures.
fn ldb_kind(k: &'static str) -> &'static str {
    match k {
        "ndb_target_html" => "ldb_target_html",
        "ndb_target_mail" => "ldb_target_mail",
        "ndb_target_ascii" => "ldb_target_ascii",
        "ndb_target_flash" => "ldb_target_flash",
        _ => "ldb_target_other",
    }
}

/// Parse a target description block.
pub fn parse(block: &[u8]) -> Result<Tdb, NdbLineError> {
    let mut target = None;
    let mut tdb = Tdb {
        target: Target::Any,
        engine: None,
        file_size: None,
        entry_point: None,
        sections: None,
        container: None,
        intermediates: None,
    };
    let mut new_ext = false;
    let mut unsupported: Option<&'static str> = None;
    let mut n = 0usize;
    for (i, attr) in block.split(|&b| b == b',').take(MAX_ATTRS).enumerate() {
        n += 1;
        let Some(colon) = attr.iter().position(|&b| b == b':') else {
            return Err(bad(format!(
                "TDB attribute {:?} is not Name:Value",
                String::from_utf8_lossy(attr)
            )));
        };
        let (name, v) = (&attr[..colon], &attr[colon + 1..]);
        match name {
            b"Engine" => {
                if i != 0 {
                    return Err(bad("TDB: Engine must be the first attribute"));
                }
                tdb.engine = Some(range(v, "Engine")?);
            }
            b"Target" => {
                let t = number(v).ok_or_else(|| bad("TDB: Target is not a number"))?;
                target = Some(t);
            }
            b"FileSize" => {
                new_ext = true;
                tdb.file_size = Some(range(v, "FileSize")?);
            }
            b"EntryPoint" => {
                new_ext = true;
                tdb.entry_point = Some(range(v, "EntryPoint")?);
            }
            b"NumberOfSections" => {
                new_ext = true;
                tdb.sections = Some(range(v, "NumberOfSections")?);
            }
            b"Container" => {
                new_ext = true;
                match file_type(v) {
                    Some(t) => tdb.container = Some(t),
                    None => unsupported = unsupported.or(Some("ldb_unknown_file_type")),
                }
            }
            b"Intermediates" => {
                new_ext = true;
                let mut chain = Vec::new();
                for t in v.split(|&b| b == b'>').filter(|t| !t.is_empty()) {
                    if chain.len() == MAX_INTERMEDIATES {
                        break;
                    }
                    match file_type(t) {
                        Some(t) => chain.push(t),
                        None => {
                            unsupported = unsupported.or(Some("ldb_unknown_file_type"));
                        }
                    }
                }
                if chain.is_empty() {
                    unsupported = unsupported.or(Some("ldb_unknown_file_type"));
                }
                tdb.intermediates = Some(chain);
            }
            b"HandlerType" => {
                new_ext = true;
                unsupported = unsupported.or(Some("ldb_handler_type"));
            }
            b"IconGroup1" | b"IconGroup2" => {
                new_ext = true;
                unsupported = unsupported.or(Some("ldb_icon"));
            }
            _ => unsupported = unsupported.or(Some("ldb_unknown_attribute")),
        }
    }
    if n == 0 {
        return Err(bad("empty TDB"));
    }
    if let Some(k) = unsupported {
        return Err(NdbLineError::Unsupported(k));
    }
    if new_ext && tdb.engine.is_none_or(|e| e.min < 51) {
        return Err(bad(
            "TDB: attributes other than Target need Engine with a minimum of at least 51",
        ));
    }
    if let Some(e) = tdb.engine {
        if e.min > FLEVEL {
            return Err(NdbLineError::Unsupported("ldb_engine_newer"));
        }
        if e.max < FLEVEL {
            return Err(NdbLineError::Unsupported("ldb_engine_older"));
        }
    }
    let Some(t) = target else {
        return Err(bad("TDB: no Target"));
    };
    if t >= 15 {
        return Err(NdbLineError::Unsupported("ldb_target_other"));
    }
    if (tdb.entry_point.is_some() || tdb.sections.is_some()) && !matches!(t, 1 | 6 | 9) {
        return Err(bad(
            "TDB: EntryPoint/NumberOfSections need Target 1 (PE), 6 (ELF) or 9 (Mach-O)",
        ));
    }
    tdb.target = match parse_target(t.to_string().as_bytes()) {
        Ok(t) => t,
        Err(NdbLineError::Unsupported(k)) => return Err(NdbLineError::Unsupported(ldb_kind(k))),
        Err(e) => return Err(e),
    };
    Ok(tdb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exe::{ExeKind, Section};

    #[test]
    fn targets_ranges_and_engine() {
        let t = parse(b"Engine:51-255,Target:1,FileSize:10-20").unwrap();
        assert_eq!(t.target, Target::Pe);
        assert_eq!(t.file_size, Some(Range { min: 10, max: 20 }));
        assert_eq!(parse(b"Target:0").unwrap().target, Target::Any);
        assert_eq!(
            parse(b"Engine:250-255,Target:0"),
            Err(NdbLineError::Unsupported("ldb_engine_newer"))
        );
        assert_eq!(
            parse(b"Engine:51-99,Target:0"),
            Err(NdbLineError::Unsupported("ldb_engine_older"))
        );
        assert_eq!(parse(b"Target:3").unwrap().target, Target::Html);
        assert_eq!(
            parse(b"Target:11"),
            Err(NdbLineError::Unsupported("ldb_target_flash"))
        );
        assert_eq!(
            parse(b"Engine:51-255,Target:1,IconGroup1:x"),
            Err(NdbLineError::Unsupported("ldb_icon"))
        );
        assert_eq!(
            parse(b"Target:0,Foo:1"),
            Err(NdbLineError::Unsupported("ldb_unknown_attribute"))
        );
    }

    #[test]
    fn malformed_blocks_are_errors() {
        for b in [
            &b""[..],
            b"Target",
            b"Target:x",
            b"FileSize:1-2",
            b"Engine:10-255,FileSize:1-2,Target:0",
            b"Target:0,Engine:51-255",
            b"Engine:51-255",
            b"Engine:51-255,Target:0,FileSize:12",
            b"Engine:51-255,Target:0,EntryPoint:1-2",
        ] {
            assert!(
                matches!(parse(b), Err(NdbLineError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
    }

    #[test]
    fn accepts_checks_size_exe_and_container() {
        let t =
            parse(b"Engine:51-255,Target:1,FileSize:10-20,EntryPoint:100-200,NumberOfSections:2-3")
                .unwrap();
        let exe = ExeInfo {
            kind: ExeKind::Pe,
            ep: Some(150),
            sections: vec![Section::default(); 2],
            hdr_size: 0,
            pe32plus: false,
            import_dir: (0, 0),
            resource_dir: (0, 0),
            vep: 0,
            image_base32: 0,
        };
        let top = Placement::default();
        assert!(t.accepts(15, Some(&exe), top));
        assert!(!t.accepts(21, Some(&exe), top));
        assert!(!t.accepts(15, None, top), "no exe layout: not matching");
        let far = ExeInfo {
            ep: Some(300),
            ..exe.clone()
        };
        assert!(!t.accepts(15, Some(&far), top));
        let c = parse(b"Engine:81-255,Container:CL_TYPE_ANY,Target:0").unwrap();
        assert!(c.accepts(1, None, top));
        assert!(!c.accepts(1, None, Placement { depth: 1 }));
        let z = parse(b"Engine:81-255,Container:CL_TYPE_ZIP,Target:0").unwrap();
        assert!(!z.accepts(1, None, top));
        let i = parse(b"Engine:81-255,Intermediates:CL_TYPE_ZIP>CL_TYPE_ANY,Target:0").unwrap();
        assert_eq!(i.intermediates.as_ref().map(Vec::len), Some(2));
        assert!(!i.accepts(1, None, top));
    }
}

//! Why a walk could not see all content. The caller turns any problem into an
//! `unscannable` verdict (an infection found elsewhere still outranks it).

use moat_core::Reason;

/// Something that kept part of an archive from being scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// An encrypted member (zip traditional or AES encryption); it was skipped.
    Encrypted { location: String },
    /// A limit was hit; `what` is `depth`, `members`, `expanded_bytes`,
    /// `member_size` or `ratio` (the names of the [`Limits`](crate::Limits) concepts).
    LimitsExceeded { location: String, what: String },
    /// Truncated or malformed data.
    Corrupt { location: String, detail: String },
    /// A format or feature the walker cannot open (7z, rar, an unknown zip
    /// compression method).
    Unsupported { location: String, what: String },
}

impl Problem {
    /// The verdict reason this problem maps to.
    pub fn reason(&self) -> Reason {
        match self {
            Problem::Encrypted { .. } => Reason::Encrypted,
            Problem::LimitsExceeded { .. } => Reason::LimitsExceeded,
            Problem::Corrupt { .. } | Problem::Unsupported { .. } => Reason::Unsupported,
        }
    }

    /// Where in the archive tree, e.g. `outer.zip>inner.tar>bin/x`.
    pub fn location(&self) -> &str {
        match self {
            Problem::Encrypted { location }
            | Problem::LimitsExceeded { location, .. }
            | Problem::Corrupt { location, .. }
            | Problem::Unsupported { location, .. } => location,
        }
    }

    /// A human-readable one-liner for verdict details and logs.
    pub fn detail(&self) -> String {
        match self {
            Problem::Encrypted { location } => format!("{location}: encrypted member"),
            Problem::LimitsExceeded { location, what } => {
                format!("{location}: archive limit exceeded ({what})")
            }
            Problem::Corrupt { location, detail } => {
                format!("{location}: corrupt archive: {detail}")
            }
            Problem::Unsupported { location, what } => format!("{location}: unsupported: {what}"),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons() {
        let l = || "a.zip>b".to_string();
        assert_eq!(
            Problem::Encrypted { location: l() }.reason(),
            Reason::Encrypted
        );
        let p = Problem::LimitsExceeded {
            location: l(),
            what: "ratio".into(),
        };
        assert_eq!(p.reason(), Reason::LimitsExceeded);
        assert!(p.detail().contains("ratio") && p.detail().contains("a.zip>b"));
        let c = Problem::Corrupt {
            location: l(),
            detail: "eof".into(),
        };
        assert_eq!(c.reason(), Reason::Unsupported);
        let u = Problem::Unsupported {
            location: l(),
            what: "7z".into(),
        };
        assert_eq!(u.reason(), Reason::Unsupported);
        assert_eq!(u.location(), "a.zip>b");
    }
}

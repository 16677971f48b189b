//! The verdict model of PRODUCT.md: one verdict per scanned file or stream.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The outcome of a scan. Ordered by severity: a later variant never hides an
/// earlier-listed, more severe one when results are aggregated (see [`Status::severity`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every configured engine fully scanned all content and found nothing.
    Clean,
    /// A signature matched.
    Infected,
    /// A heuristic or a rule marked as suspicious matched.
    Suspicious,
    /// The content could not be fully scanned; see [`Reason`].
    Unscannable,
    /// An engine failed or was unreachable.
    Error,
}

impl Status {
    /// Aggregation rank: infected > suspicious > error > unscannable > clean.
    pub fn severity(self) -> u8 {
        match self {
            Status::Clean => 0,
            Status::Unscannable => 1,
            Status::Error => 2,
            Status::Suspicious => 3,
            Status::Infected => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Clean => "clean",
            Status::Infected => "infected",
            Status::Suspicious => "suspicious",
            Status::Unscannable => "unscannable",
            Status::Error => "error",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why content is `unscannable` (or, for `engine_error`, why the status is `error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    TooLarge,
    Encrypted,
    /// Archive depth, member count, expanded size or compression ratio exceeded.
    LimitsExceeded,
    /// A format the engines cannot look inside (or a corrupt container).
    Unsupported,
    Timeout,
    /// Used with [`Status::Error`]: an engine failed or was unreachable.
    EngineError,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::Encrypted => "encrypted",
            Reason::LimitsExceeded => "limits_exceeded",
            Reason::Unsupported => "unsupported",
            Reason::Timeout => "timeout",
            Reason::EngineError => "engine_error",
        }
    }

    /// Precedence when several unscannable reasons apply to one file.
    fn rank(self) -> u8 {
        match self {
            Reason::Unsupported => 0,
            Reason::Timeout => 1,
            Reason::TooLarge => 2,
            Reason::LimitsExceeded => 3,
            Reason::Encrypted => 4,
            Reason::EngineError => 5,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One detection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub engine: String,
    pub signature: String,
    /// Where inside containers, e.g. `outer.zip>inner.tar>bin/payload`.
    pub location: String,
    /// `infected` or `suspicious`.
    pub severity: Status,
}

/// What one engine concluded about the whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineReport {
    pub name: String,
    pub version: String,
    pub signature_version: String,
    pub status: Status,
    pub reason: Option<Reason>,
    /// Human-readable detail for `unscannable` and `error`.
    pub detail: Option<String>,
    pub duration_ms: u64,
}

impl EngineReport {
    /// A report with no version, detail or timing (synthetic reports, tests).
    pub fn new(name: &str, status: Status, reason: Option<Reason>) -> EngineReport {
        EngineReport {
            name: name.to_string(),
            version: String::new(),
            signature_version: String::new(),
            status,
            reason,
            detail: None,
            duration_ms: 0,
        }
    }
}

/// The verdict for one file or stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub status: Status,
    pub reason: Option<Reason>,
    pub findings: Vec<Finding>,
    pub engines: Vec<EngineReport>,
    pub sha256: String,
    pub size: u64,
    pub content_type: String,
    pub duration_ms: u64,
}

impl Verdict {
    /// Aggregate per-engine reports into a verdict. Fail closed: the result is
    /// `clean` only if there is at least one engine and every engine said clean.
    pub fn aggregate(
        engines: Vec<EngineReport>,
        findings: Vec<Finding>,
        sha256: String,
        size: u64,
        content_type: String,
        duration_ms: u64,
    ) -> Verdict {
        let (status, reason) = aggregate_status(&engines, &findings);
        Verdict {
            status,
            reason,
            findings,
            engines,
            sha256,
            size,
            content_type,
            duration_ms,
        }
    }

    /// The signature names of all findings, deduplicated, in order.
    pub fn signatures(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for f in &self.findings {
            if !out.contains(&f.signature.as_str()) {
                out.push(&f.signature);
            }
        }
        out
    }

    /// `clean`, `infected`, `unscannable.encrypted`, ... : the key policies are written against.
    pub fn policy_key(&self) -> String {
        match (self.status, self.reason) {
            (Status::Unscannable, Some(r)) => format!("unscannable.{r}"),
            (s, _) => s.as_str().to_string(),
        }
    }
}

fn aggregate_status(engines: &[EngineReport], findings: &[Finding]) -> (Status, Option<Reason>) {
    if engines.is_empty() {
        return (Status::Error, Some(Reason::EngineError));
    }
    let mut status = Status::Clean;
    for e in engines {
        if e.status.severity() > status.severity() {
            status = e.status;
        }
    }
    for f in findings {
        if f.severity.severity() > status.severity() {
            status = f.severity;
        }
    }
    let reason = match status {
        Status::Unscannable => engines
            .iter()
            .filter(|e| e.status == Status::Unscannable)
            .filter_map(|e| e.reason)
            .max_by_key(|r| r.rank())
            .or(Some(Reason::Unsupported)),
        Status::Error => Some(Reason::EngineError),
        _ => None,
    };
    (status, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(status: Status, reason: Option<Reason>) -> EngineReport {
        EngineReport::new("e", status, reason)
    }

    fn agg(r: Vec<EngineReport>) -> Verdict {
        Verdict::aggregate(r, vec![], String::new(), 0, String::new(), 0)
    }

    #[test]
    fn no_engines_is_never_clean() {
        let v = agg(vec![]);
        assert_eq!(v.status, Status::Error);
    }

    #[test]
    fn all_clean_is_clean() {
        let v = agg(vec![
            report(Status::Clean, None),
            report(Status::Clean, None),
        ]);
        assert_eq!(v.status, Status::Clean);
        assert_eq!(v.reason, None);
        assert_eq!(v.policy_key(), "clean");
    }

    #[test]
    fn one_unscannable_engine_makes_the_file_unscannable() {
        let v = agg(vec![
            report(Status::Clean, None),
            report(Status::Unscannable, Some(Reason::TooLarge)),
        ]);
        assert_eq!(v.status, Status::Unscannable);
        assert_eq!(v.reason, Some(Reason::TooLarge));
        assert_eq!(v.policy_key(), "unscannable.too_large");
    }

    #[test]
    fn error_outranks_unscannable_and_infected_outranks_error() {
        let v = agg(vec![
            report(Status::Error, Some(Reason::EngineError)),
            report(Status::Unscannable, Some(Reason::Encrypted)),
        ]);
        assert_eq!(v.status, Status::Error);
        let v = agg(vec![
            report(Status::Error, Some(Reason::EngineError)),
            report(Status::Infected, None),
        ]);
        assert_eq!(v.status, Status::Infected);
        assert_eq!(v.reason, None);
    }

    #[test]
    fn serializes_snake_case() {
        let v = agg(vec![report(
            Status::Unscannable,
            Some(Reason::LimitsExceeded),
        )]);
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(j["status"], "unscannable");
        assert_eq!(j["reason"], "limits_exceeded");
    }
}

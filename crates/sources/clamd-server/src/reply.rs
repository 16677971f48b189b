//! Verdicts in clamd's vocabulary. clamd clients understand `OK`, `FOUND`
//! and `ERROR` only, so moat fails closed in those words: `OK` only for
//! `clean`; a detection is `<signature> FOUND`; content moat could not fully
//! scan is `FOUND` with a heuristic name in ClamAV's style (what clamd says
//! with AlertEncrypted / AlertExceedsMax on), or `ERROR` if so configured;
//! an engine failure is `<reason> ERROR`.

use crate::config::{ClamdServerConfig, UnscannableReply};
use crate::proto::clean_line;
use moat_core::{Reason, Status, Verdict};

/// One result line without the `<name>: ` prefix: `OK`, `Sig FOUND`, `… ERROR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Found(String),
    Error(String),
}

impl Outcome {
    pub fn is_found(&self) -> bool {
        matches!(self, Outcome::Found(_))
    }

    /// `<name>: OK`, `<name>: <sig> FOUND`, `<name>: <msg> ERROR`.
    pub fn line(&self, name: &str) -> String {
        let name = clean_line(name);
        match self {
            Outcome::Ok => format!("{name}: OK"),
            Outcome::Found(sig) => format!("{name}: {} FOUND", clean_line(sig)),
            Outcome::Error(msg) => format!("{name}: {} ERROR", clean_line(msg)),
        }
    }
}

/// The outcomes for one verdict: one per signature with `all` (ALLMATCHSCAN),
/// else the first.
pub fn outcomes(v: &Verdict, cfg: &ClamdServerConfig, all: bool) -> Vec<Outcome> {
    match v.status {
        Status::Clean => vec![Outcome::Ok],
        Status::Infected | Status::Suspicious => {
            let sigs = v.signatures();
            let mut out: Vec<Outcome> =
                sigs.iter().map(|s| Outcome::Found(s.to_string())).collect();
            if out.is_empty() {
                // A detection without a name is still a detection.
                out.push(Outcome::Found(format!("Moat.{}", v.status.as_str())));
            }
            if !all {
                out.truncate(1);
            }
            out
        }
        Status::Unscannable => {
            let reason = v.reason.unwrap_or(Reason::Unsupported);
            let name = heuristic_name(v, reason, cfg);
            vec![match cfg.unscannable {
                UnscannableReply::Found => Outcome::Found(name),
                UnscannableReply::Error => Outcome::Error(format!("Not fully scanned ({name})")),
            }]
        }
        Status::Error => vec![Outcome::Error(error_message(v))],
    }
}

/// What the engines said went wrong, in one line.
fn error_message(v: &Verdict) -> String {
    let detail = v
        .engines
        .iter()
        .filter(|e| e.status == Status::Error)
        .map(|e| match &e.detail {
            Some(d) => format!("{}: {d}", e.name),
            None => format!("{}: engine error", e.name),
        })
        .collect::<Vec<_>>()
        .join("; ");
    if detail.is_empty() {
        "Engine error".to_string()
    } else {
        format!("Engine error ({detail})")
    }
}

/// `Heuristics.Encrypted.Zip`, `Heuristics.Limits.Exceeded.MaxRecursion`,
/// `Heuristics.Unsupported.<type>`, `Heuristics.Timeout`; a configured name
/// for the reason wins.
pub fn heuristic_name(v: &Verdict, reason: Reason, cfg: &ClamdServerConfig) -> String {
    heuristic_name_with(v, reason, &cfg.heuristic_names)
}

/// [`heuristic_name`] with the configured names given directly (the ICAP
/// server names unscannable content the same way).
pub fn heuristic_name_with(
    v: &Verdict,
    reason: Reason,
    names: &std::collections::BTreeMap<String, String>,
) -> String {
    if let Some(n) = names.get(reason.as_str()) {
        return n.clone();
    }
    let details: Vec<&str> = v
        .engines
        .iter()
        .filter(|e| e.status == Status::Unscannable && e.reason == Some(reason))
        .filter_map(|e| e.detail.as_deref())
        .collect();
    match reason {
        Reason::Encrypted => format!("Heuristics.Encrypted.{}", kind(&v.content_type, "Archive")),
        Reason::TooLarge => "Heuristics.Limits.Exceeded.MaxFileSize".to_string(),
        Reason::LimitsExceeded => {
            let which = details
                .iter()
                .find_map(|d| limit_name(d))
                .unwrap_or("MaxScanSize");
            format!("Heuristics.Limits.Exceeded.{which}")
        }
        Reason::Unsupported => {
            format!("Heuristics.Unsupported.{}", kind(&v.content_type, "Format"))
        }
        Reason::Timeout => "Heuristics.Timeout".to_string(),
        Reason::EngineError => "Heuristics.Unscannable".to_string(),
    }
}

/// The archive limit named in an extraction detail, as ClamAV names it.
fn limit_name(detail: &str) -> Option<&'static str> {
    let what = detail
        .rsplit_once("limit exceeded (")?
        .1
        .strip_suffix(')')?;
    Some(match what {
        "depth" => "MaxRecursion",
        "members" => "MaxFiles",
        "expanded_bytes" => "MaxScanSize",
        "member_size" => "MaxFileSize",
        "ratio" => "MaxCompressionRatio",
        _ => return None,
    })
}

/// A container type in ClamAV's spelling, from the sniffed content type.
fn kind(content_type: &str, default: &'static str) -> &'static str {
    let ct = content_type.to_ascii_lowercase();
    if ct.contains("zip") && !ct.contains("gzip") {
        "Zip"
    } else if ct.contains("rar") {
        "RAR"
    } else if ct.contains("7z") {
        "7Zip"
    } else if ct.contains("pdf") {
        "PDF"
    } else if ct.contains("gzip") {
        "GZip"
    } else if ct.contains("tar") {
        "Tar"
    } else if ct.contains("msword") || ct.contains("officedocument") || ct.contains("ole") {
        "Doc"
    } else {
        default
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_core::{EngineReport, Finding};

    fn verdict(status: Status, reason: Option<Reason>, detail: Option<&str>, ct: &str) -> Verdict {
        let mut e = EngineReport::new("builtin", status, reason);
        e.detail = detail.map(str::to_string);
        let findings = if matches!(status, Status::Infected) {
            vec![
                Finding {
                    engine: "builtin".into(),
                    signature: "Eicar-Test-Signature".into(),
                    location: String::new(),
                    severity: Status::Infected,
                },
                Finding {
                    engine: "builtin".into(),
                    signature: "Other.Sig".into(),
                    location: String::new(),
                    severity: Status::Infected,
                },
            ]
        } else {
            vec![]
        };
        Verdict::aggregate(vec![e], findings, String::new(), 1, ct.into(), 0)
    }

    #[test]
    fn only_clean_is_ok() {
        let cfg = ClamdServerConfig::default();
        let v = verdict(Status::Clean, None, None, "text/plain");
        assert_eq!(outcomes(&v, &cfg, false), vec![Outcome::Ok]);
        let v = verdict(Status::Infected, None, None, "text/plain");
        assert_eq!(
            outcomes(&v, &cfg, false),
            vec![Outcome::Found("Eicar-Test-Signature".into())]
        );
        assert_eq!(outcomes(&v, &cfg, true).len(), 2);
        let v = verdict(
            Status::Error,
            Some(Reason::EngineError),
            Some("connection refused"),
            "",
        );
        let o = outcomes(&v, &cfg, false);
        assert_eq!(
            o[0].line("stream"),
            "stream: Engine error (builtin: connection refused) ERROR"
        );
    }

    #[test]
    fn unscannable_is_found_with_a_heuristic_name() {
        let cfg = ClamdServerConfig::default();
        let v = verdict(
            Status::Unscannable,
            Some(Reason::Encrypted),
            Some("a.zip>x: encrypted member"),
            "application/zip",
        );
        assert_eq!(
            outcomes(&v, &cfg, false)[0].line("stream"),
            "stream: Heuristics.Encrypted.Zip FOUND"
        );
        let v = verdict(
            Status::Unscannable,
            Some(Reason::LimitsExceeded),
            Some("a.zip>b.zip: archive limit exceeded (depth)"),
            "application/zip",
        );
        assert_eq!(
            outcomes(&v, &cfg, false),
            vec![Outcome::Found(
                "Heuristics.Limits.Exceeded.MaxRecursion".into()
            )]
        );
        let v = verdict(Status::Unscannable, Some(Reason::Timeout), None, "");
        assert_eq!(
            outcomes(&v, &cfg, false),
            vec![Outcome::Found("Heuristics.Timeout".into())]
        );
        let v = verdict(Status::Unscannable, Some(Reason::TooLarge), None, "");
        assert_eq!(
            outcomes(&v, &cfg, false),
            vec![Outcome::Found(
                "Heuristics.Limits.Exceeded.MaxFileSize".into()
            )]
        );
    }

    #[test]
    fn unscannable_policy_can_answer_error_or_rename() {
        let mut cfg = ClamdServerConfig {
            unscannable: UnscannableReply::Error,
            ..Default::default()
        };
        let v = verdict(Status::Unscannable, Some(Reason::Timeout), None, "");
        assert_eq!(
            outcomes(&v, &cfg, false)[0].line("f"),
            "f: Not fully scanned (Heuristics.Timeout) ERROR"
        );
        cfg.unscannable = UnscannableReply::Found;
        cfg.heuristic_names
            .insert("timeout".into(), "Moat.Heuristics.Slow".into());
        assert_eq!(
            outcomes(&v, &cfg, false),
            vec![Outcome::Found("Moat.Heuristics.Slow".into())]
        );
    }
}

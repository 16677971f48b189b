//! Tag schemes: what a verdict looks like as S3 object tags.
//!
//! | scheme | tags |
//! |---|---|
//! | `moat` (default) | `moat-status` (clean, infected, suspicious, unscannable, error), `moat-reason` (unscannable/error only), `moat-signature` (findings only), `moat-scanned-at` (RFC 3339), `moat-fingerprint` (engine set) |
//! | `guardduty` | `GuardDutyMalwareScanStatus` = NO_THREATS_FOUND, THREATS_FOUND, UNSUPPORTED, FAILED |
//! | `bucket-antivirus` | `av-status` (CLEAN, INFECTED, UNSCANNABLE, ERROR), `av-signature` (OK or the name), `av-timestamp` |
//! | `bucket-av-scanner` | `<tag_key>` (default `scanned`) = clean, infected, no |
//!
//! Tags are merged with the object's existing tags: the scheme's own keys are
//! replaced (so a rescan drops a stale signature), others are kept. S3 allows
//! 10 tags per object; a merge that would exceed it is an error, never a
//! silent drop.

use moat_core::{Status, Verdict};
use serde::Deserialize;

/// S3's per-object tag limit.
pub const MAX_TAGS: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TagScheme {
    #[default]
    Moat,
    Guardduty,
    BucketAntivirus,
    BucketAvScanner,
}

/// A scheme plus its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagger {
    pub scheme: TagScheme,
    /// The key for `bucket-av-scanner` (`TAG_KEY`); default `scanned`.
    pub key: String,
}

impl Default for Tagger {
    fn default() -> Self {
        Tagger {
            scheme: TagScheme::Moat,
            key: "scanned".into(),
        }
    }
}

/// Replace characters S3 does not allow in tag values (letters, digits,
/// spaces and `+ - = . _ : / @`) and cut to 256 characters.
pub fn tag_value(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || " +-=._:/@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(256)
        .collect()
}

impl Tagger {
    /// The keys this scheme owns (replaced on every tagging).
    pub fn owned_keys(&self) -> Vec<String> {
        match self.scheme {
            TagScheme::Moat => [
                "moat-status",
                "moat-reason",
                "moat-signature",
                "moat-scanned-at",
                "moat-fingerprint",
            ]
            .map(String::from)
            .to_vec(),
            TagScheme::Guardduty => vec!["GuardDutyMalwareScanStatus".into()],
            TagScheme::BucketAntivirus => ["av-status", "av-signature", "av-timestamp"]
                .map(String::from)
                .to_vec(),
            TagScheme::BucketAvScanner => vec![self.key.clone()],
        }
    }

    /// The tags for a verdict. `scanned_at` is RFC 3339 (`2024-05-01T10:00:00Z`).
    pub fn tags(&self, v: &Verdict, fingerprint: &str, scanned_at: &str) -> Vec<(String, String)> {
        let sigs = v.signatures().join(",");
        let t = |k: &str, val: &str| (k.to_string(), tag_value(val));
        match self.scheme {
            TagScheme::Moat => {
                let mut out = vec![t("moat-status", v.status.as_str())];
                if let Some(r) = v.reason
                    && matches!(v.status, Status::Unscannable | Status::Error)
                {
                    out.push(t("moat-reason", r.as_str()));
                }
                if !sigs.is_empty() {
                    out.push(t("moat-signature", &sigs));
                }
                out.push(t("moat-scanned-at", scanned_at));
                out.push(t("moat-fingerprint", fingerprint));
                out
            }
            TagScheme::Guardduty => vec![t(
                "GuardDutyMalwareScanStatus",
                match v.status {
                    Status::Clean => "NO_THREATS_FOUND",
                    Status::Infected | Status::Suspicious => "THREATS_FOUND",
                    Status::Unscannable => "UNSUPPORTED",
                    Status::Error => "FAILED",
                },
            )],
            TagScheme::BucketAntivirus => {
                let ts = scanned_at
                    .replace('-', "/")
                    .replace('T', " ")
                    .replace('Z', " UTC");
                vec![
                    t(
                        "av-status",
                        match v.status {
                            Status::Clean => "CLEAN",
                            Status::Infected | Status::Suspicious => "INFECTED",
                            Status::Unscannable => "UNSCANNABLE",
                            Status::Error => "ERROR",
                        },
                    ),
                    t("av-signature", if sigs.is_empty() { "OK" } else { &sigs }),
                    t("av-timestamp", &ts),
                ]
            }
            TagScheme::BucketAvScanner => vec![t(
                &self.key,
                match v.status {
                    Status::Clean => "clean",
                    Status::Infected | Status::Suspicious => "infected",
                    Status::Unscannable | Status::Error => "no",
                },
            )],
        }
    }

    /// Merge `new` into `existing`: owned keys replaced, others kept in order.
    /// Err(count) when the result would exceed [`MAX_TAGS`].
    pub fn merge(
        &self,
        existing: &[(String, String)],
        new: Vec<(String, String)>,
    ) -> Result<Vec<(String, String)>, usize> {
        let owned = self.owned_keys();
        let mut out: Vec<(String, String)> = existing
            .iter()
            .filter(|(k, _)| !owned.contains(k) && !new.iter().any(|(nk, _)| nk == k))
            .cloned()
            .collect();
        out.extend(new);
        if out.len() > MAX_TAGS {
            return Err(out.len());
        }
        Ok(out)
    }

    /// The fingerprint this scheme recorded on a previous scan, if it keeps one.
    pub fn recorded_fingerprint<'a>(&self, tags: &'a [(String, String)]) -> Option<&'a str> {
        match self.scheme {
            TagScheme::Moat => tags
                .iter()
                .find(|(k, _)| k == "moat-fingerprint")
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_core::{EngineReport, Finding, Reason};

    fn v(status: Status, reason: Option<Reason>, sig: Option<&str>) -> Verdict {
        let findings = sig
            .map(|s| {
                vec![Finding {
                    engine: "builtin".into(),
                    signature: s.into(),
                    location: "x".into(),
                    severity: Status::Infected,
                }]
            })
            .unwrap_or_default();
        Verdict::aggregate(
            vec![EngineReport::new("builtin", status, reason)],
            findings,
            String::new(),
            0,
            String::new(),
            0,
        )
    }

    const AT: &str = "2024-05-01T10:00:00Z";

    fn get<'a>(t: &'a [(String, String)], k: &str) -> Option<&'a str> {
        t.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn moat_scheme() {
        let t = Tagger::default();
        let tags = t.tags(
            &v(Status::Infected, None, Some("Eicar-Test-Signature")),
            "fp1",
            AT,
        );
        assert_eq!(get(&tags, "moat-status"), Some("infected"));
        assert_eq!(get(&tags, "moat-signature"), Some("Eicar-Test-Signature"));
        assert_eq!(get(&tags, "moat-fingerprint"), Some("fp1"));
        assert_eq!(get(&tags, "moat-reason"), None);
        let tags = t.tags(
            &v(Status::Unscannable, Some(Reason::TooLarge), None),
            "fp1",
            AT,
        );
        assert_eq!(get(&tags, "moat-status"), Some("unscannable"));
        assert_eq!(get(&tags, "moat-reason"), Some("too_large"));
        assert_eq!(t.recorded_fingerprint(&tags), Some("fp1"));
    }

    #[test]
    fn compatible_schemes() {
        let g = Tagger {
            scheme: TagScheme::Guardduty,
            ..Default::default()
        };
        for (s, r, want) in [
            (Status::Clean, None, "NO_THREATS_FOUND"),
            (Status::Infected, None, "THREATS_FOUND"),
            (Status::Unscannable, Some(Reason::Encrypted), "UNSUPPORTED"),
            (Status::Error, Some(Reason::EngineError), "FAILED"),
        ] {
            assert_eq!(
                get(
                    &g.tags(&v(s, r, None), "f", AT),
                    "GuardDutyMalwareScanStatus"
                ),
                Some(want)
            );
        }
        let b = Tagger {
            scheme: TagScheme::BucketAntivirus,
            ..Default::default()
        };
        let tags = b.tags(
            &v(Status::Infected, None, Some("Win.Test.EICAR_HDB-1")),
            "f",
            AT,
        );
        assert_eq!(get(&tags, "av-status"), Some("INFECTED"));
        assert_eq!(get(&tags, "av-signature"), Some("Win.Test.EICAR_HDB-1"));
        assert_eq!(get(&tags, "av-timestamp"), Some("2024/05/01 10:00:00 UTC"));
        assert_eq!(
            get(
                &b.tags(&v(Status::Clean, None, None), "f", AT),
                "av-signature"
            ),
            Some("OK")
        );
        let s = Tagger {
            scheme: TagScheme::BucketAvScanner,
            key: "av".into(),
        };
        assert_eq!(
            get(&s.tags(&v(Status::Clean, None, None), "f", AT), "av"),
            Some("clean")
        );
        assert_eq!(
            get(&s.tags(&v(Status::Infected, None, None), "f", AT), "av"),
            Some("infected")
        );
        assert_eq!(
            get(
                &s.tags(
                    &v(Status::Unscannable, Some(Reason::TooLarge), None),
                    "f",
                    AT
                ),
                "av"
            ),
            Some("no")
        );
    }

    #[test]
    fn merge_keeps_others_replaces_own_and_refuses_overflow() {
        let t = Tagger::default();
        let existing = vec![
            ("team".to_string(), "a".to_string()),
            ("moat-signature".to_string(), "Old".to_string()),
            ("moat-status".to_string(), "infected".to_string()),
        ];
        let merged = t
            .merge(&existing, t.tags(&v(Status::Clean, None, None), "f", AT))
            .unwrap();
        assert_eq!(get(&merged, "team"), Some("a"));
        assert_eq!(get(&merged, "moat-status"), Some("clean"));
        assert_eq!(get(&merged, "moat-signature"), None);
        let ten: Vec<(String, String)> = (0..10).map(|i| (format!("k{i}"), "v".into())).collect();
        assert_eq!(
            t.merge(&ten, t.tags(&v(Status::Clean, None, None), "f", AT)),
            Err(13)
        );
    }

    #[test]
    fn values_are_sanitised() {
        assert_eq!(tag_value("a{b}c"), "a_b_c");
        assert_eq!(tag_value(&"x".repeat(300)).len(), 256);
    }
}

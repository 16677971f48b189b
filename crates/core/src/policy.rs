//! Policy: what to do with a verdict. The default blocks everything that is not clean.

use crate::verdict::Verdict;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An action a role takes for a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Allow,
    Block,
    Quarantine,
    /// Let it through but mark it (tag, header, log).
    TagOnly,
}

/// Maps a verdict's policy key (`clean`, `infected`, `suspicious`, `error`,
/// `unscannable`, or `unscannable.<reason>`) to an action. The most specific
/// key wins; anything unmatched falls to `default`, which is `block` (clean
/// content is allowed unless a `clean` rule says otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default = "block")]
    pub default: Action,
    #[serde(default)]
    pub rules: BTreeMap<String, Action>,
}

fn block() -> Action {
    Action::Block
}

/// The keys a policy rule may name.
pub const POLICY_KEYS: &[&str] = &[
    "clean",
    "infected",
    "suspicious",
    "error",
    "unscannable",
    "unscannable.too_large",
    "unscannable.encrypted",
    "unscannable.limits_exceeded",
    "unscannable.unsupported",
    "unscannable.timeout",
];

impl Default for Policy {
    fn default() -> Self {
        let mut rules = BTreeMap::new();
        rules.insert("clean".to_string(), Action::Allow);
        Policy {
            default: Action::Block,
            rules,
        }
    }
}

impl Policy {
    /// Reject rule keys that would never match.
    pub fn validate(&self) -> Result<(), String> {
        for k in self.rules.keys() {
            if !POLICY_KEYS.contains(&k.as_str()) {
                return Err(format!(
                    "unknown policy key {k:?}; expected one of {}",
                    POLICY_KEYS.join(", ")
                ));
            }
        }
        Ok(())
    }

    pub fn action(&self, v: &Verdict) -> Action {
        let key = v.policy_key();
        if let Some(a) = self.rules.get(&key) {
            return *a;
        }
        if let Some((head, _)) = key.split_once('.')
            && let Some(a) = self.rules.get(head)
        {
            return *a;
        }
        // Clean content is allowed unless a rule says otherwise: `default`
        // is about everything that is *not* clean.
        if key == "clean" {
            return Action::Allow;
        }
        self.default
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{EngineReport, Reason, Status};

    fn verdict(status: Status, reason: Option<Reason>) -> Verdict {
        let e = EngineReport::new("e", status, reason);
        Verdict::aggregate(vec![e], vec![], String::new(), 0, String::new(), 0)
    }

    #[test]
    fn default_blocks_everything_but_clean() {
        let p = Policy::default();
        assert_eq!(p.action(&verdict(Status::Clean, None)), Action::Allow);
        for (s, r) in [
            (Status::Infected, None),
            (Status::Suspicious, None),
            (Status::Error, None),
            (Status::Unscannable, Some(Reason::TooLarge)),
            (Status::Unscannable, Some(Reason::Encrypted)),
            (Status::Unscannable, Some(Reason::Timeout)),
        ] {
            assert_eq!(p.action(&verdict(s, r)), Action::Block, "{s:?} {r:?}");
        }
    }

    #[test]
    fn specific_key_beats_general_key() {
        let mut p = Policy::default();
        p.rules.insert("unscannable".into(), Action::TagOnly);
        p.rules
            .insert("unscannable.encrypted".into(), Action::Quarantine);
        assert_eq!(
            p.action(&verdict(Status::Unscannable, Some(Reason::TooLarge))),
            Action::TagOnly
        );
        assert_eq!(
            p.action(&verdict(Status::Unscannable, Some(Reason::Encrypted))),
            Action::Quarantine
        );
        assert!(p.validate().is_ok());
        p.rules.insert("unscanable".into(), Action::Allow);
        assert!(p.validate().is_err());
    }
}

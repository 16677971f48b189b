//! Configuration of one command engine, and the errors building one can give.

use serde::Deserialize;

/// The default `signature_regex`: clamscan's `FILE: NAME FOUND` line.
pub const DEFAULT_SIGNATURE_REGEX: &str = r"(?m):\s+(\S.*?)\s+FOUND\s*$";

/// Upper bound of `max_concurrency`.
pub const MAX_CONCURRENCY: usize = 256;

/// How the object reaches the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    /// A private (0600) temporary file whose path replaces `{path}` in `argv`.
    #[default]
    Path,
    /// The content on the command's standard input.
    Stdin,
}

/// `[[engines]] type = "command"`.
///
/// ```toml
/// [[engines]]
/// type = "command"
/// argv = ["clamscan", "--no-summary", "{path}"]
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommandConfig {
    /// Engine name; default `command`.
    pub name: Option<String>,
    /// Program and arguments, run without a shell. With `input = "path"` one
    /// argument must contain `{path}`.
    pub argv: Vec<String>,
    /// `path` (default) or `stdin`.
    pub input: Input,
    /// Upper bound for one run in seconds (the scan's own deadline may be sooner). Default 60.
    pub timeout_secs: f64,
    /// Commands running at once. Default: number of CPU cores; 1..=256.
    pub max_concurrency: usize,
    /// Exit codes meaning "scanned, nothing found". Default `[0]`.
    pub clean_codes: Vec<i32>,
    /// Exit codes meaning "scanned, found something". Default `[1]`.
    pub infected_codes: Vec<i32>,
    /// Regex over standard output naming the detection: capture group 1 when
    /// present, else the whole match. Default fits clamscan's `: NAME FOUND`.
    pub signature_regex: String,
    /// Command printing the version (first line); also the health check.
    pub version_argv: Option<Vec<String>>,
    /// Directory for the temporary files; default the system's.
    pub temp_dir: Option<std::path::PathBuf>,
}

impl Default for CommandConfig {
    fn default() -> Self {
        CommandConfig {
            name: None,
            argv: Vec::new(),
            input: Input::Path,
            timeout_secs: 60.0,
            max_concurrency: std::thread::available_parallelism().map_or(1, |n| n.get()),
            clean_codes: vec![0],
            infected_codes: vec![1],
            signature_regex: DEFAULT_SIGNATURE_REGEX.to_string(),
            version_argv: None,
            temp_dir: None,
        }
    }
}

impl CommandConfig {
    pub(crate) fn validate(&self) -> Result<std::time::Duration, ConfigError> {
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return Err(ConfigError::EmptyArgv);
        }
        let has_path = self.argv.iter().any(|a| a.contains("{path}"));
        match (self.input, has_path) {
            (Input::Path, false) => return Err(ConfigError::NoPathPlaceholder),
            (Input::Stdin, true) => return Err(ConfigError::PathWithStdin),
            _ => {}
        }
        if let Some(v) = &self.version_argv
            && (v.is_empty() || v[0].is_empty())
        {
            return Err(ConfigError::EmptyVersionArgv);
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.max_concurrency) {
            return Err(ConfigError::Concurrency(self.max_concurrency));
        }
        if let Some(c) = self
            .clean_codes
            .iter()
            .find(|c| self.infected_codes.contains(c))
        {
            return Err(ConfigError::OverlappingCodes(*c));
        }
        if self.clean_codes.is_empty() || self.infected_codes.is_empty() {
            return Err(ConfigError::NoCodes);
        }
        match std::time::Duration::try_from_secs_f64(self.timeout_secs) {
            Ok(d) if !d.is_zero() => Ok(d),
            _ => Err(ConfigError::Timeout(self.timeout_secs)),
        }
    }
}

/// Why a command engine could not be built. Never about the command itself
/// failing: creating the engine does not run it.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("command argv is empty")]
    EmptyArgv,
    #[error("command version_argv is empty")]
    EmptyVersionArgv,
    #[error("command argv needs a {{path}} argument with input = \"path\"")]
    NoPathPlaceholder,
    #[error("command argv has {{path}} but input = \"stdin\"")]
    PathWithStdin,
    #[error("command max_concurrency {0} is outside 1..={MAX_CONCURRENCY}")]
    Concurrency(usize),
    #[error("command exit code {0} is both a clean and an infected code")]
    OverlappingCodes(i32),
    #[error("command clean_codes and infected_codes must not be empty")]
    NoCodes,
    #[error("command timeout_secs {0} must be a positive number of seconds")]
    Timeout(f64),
    #[error("command signature_regex: {0}")]
    Regex(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> CommandConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn deserializes_with_defaults() {
        let c = cfg(r#"{"argv":["clamscan","--no-summary","{path}"]}"#);
        assert_eq!(c.input, Input::Path);
        assert_eq!(c.clean_codes, vec![0]);
        assert_eq!(c.infected_codes, vec![1]);
        assert_eq!(c.validate(), Ok(std::time::Duration::from_secs(60)));
        let c = cfg(r#"{"argv":["s","-"],"input":"stdin","timeout_secs":0.5,"max_concurrency":2}"#);
        assert_eq!(c.validate(), Ok(std::time::Duration::from_millis(500)));
        assert!(serde_json::from_str::<CommandConfig>(r#"{"bogus":1}"#).is_err());
        assert!(serde_json::from_str::<CommandConfig>(r#"{"input":"pipe"}"#).is_err());
    }

    #[test]
    fn rejects_inconsistent_settings() {
        let e = |j: &str| cfg(j).validate().unwrap_err();
        assert_eq!(e(r#"{}"#), ConfigError::EmptyArgv);
        assert_eq!(e(r#"{"argv":["x"]}"#), ConfigError::NoPathPlaceholder);
        assert_eq!(
            e(r#"{"argv":["x","{path}"],"input":"stdin"}"#),
            ConfigError::PathWithStdin
        );
        assert_eq!(
            e(r#"{"argv":["x","{path}"],"max_concurrency":0}"#),
            ConfigError::Concurrency(0)
        );
        assert_eq!(
            e(r#"{"argv":["x","{path}"],"clean_codes":[0,1]}"#),
            ConfigError::OverlappingCodes(1)
        );
        assert_eq!(
            e(r#"{"argv":["x","{path}"],"timeout_secs":0}"#),
            ConfigError::Timeout(0.0)
        );
        assert_eq!(
            e(r#"{"argv":["x","{path}"],"version_argv":[]}"#),
            ConfigError::EmptyVersionArgv
        );
    }
}

//! [`CommandEngine`]: the [`Engine`] implementation.

use crate::config::{CommandConfig, ConfigError, Input};
use crate::run::{Finished, RunError, run};
use moat_core::{Engine, EngineError, EngineInfo, EngineScan, Hit, Object, ScanContext, Scope};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// Bound for `version_argv` (health and info).
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a version read is reused by [`Engine::info`].
const VERSION_TTL: Duration = Duration::from_secs(60);
/// Most hits taken from one run's output.
const MAX_HITS: usize = 16;

/// A local scanner command run once per object. Cheap to share across threads.
#[derive(Debug)]
pub struct CommandEngine {
    name: String,
    cfg: CommandConfig,
    timeout: Duration,
    regex: regex::Regex,
    running: Mutex<usize>,
    freed: Condvar,
    version: Mutex<Option<VersionRead>>,
}

#[derive(Debug, Clone)]
struct VersionRead {
    at: Instant,
    unix: u64,
    result: Result<String, String>,
}

/// A held concurrency slot, given back on drop.
struct Slot<'a>(&'a CommandEngine);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut n = lock(&self.0.running);
        *n = n.saturating_sub(1);
        self.0.freed.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl CommandEngine {
    /// Checks the configuration; does not run the command (see [`Engine::health`]).
    pub fn new(name: &str, cfg: CommandConfig) -> Result<CommandEngine, ConfigError> {
        let timeout = cfg.validate()?;
        let regex = regex::Regex::new(&cfg.signature_regex)
            .map_err(|e| ConfigError::Regex(e.to_string()))?;
        Ok(CommandEngine {
            name: name.to_string(),
            cfg,
            timeout,
            regex,
            running: Mutex::new(0),
            freed: Condvar::new(),
            version: Mutex::new(None),
        })
    }

    pub fn config(&self) -> &CommandConfig {
        &self.cfg
    }

    /// Waits for a free slot until `deadline`.
    fn slot(&self, deadline: Instant) -> Option<Slot<'_>> {
        let mut n = lock(&self.running);
        while *n >= self.cfg.max_concurrency {
            let left = deadline.checked_duration_since(Instant::now())?;
            n = self
                .freed
                .wait_timeout(n, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *n += 1;
        Some(Slot(self))
    }

    fn program(&self) -> &str {
        &self.cfg.argv[0]
    }

    /// The signature names in the command's output (group 1, else the whole match).
    fn hits(&self, stdout: &str) -> Vec<Hit> {
        let mut names: Vec<String> = Vec::new();
        for c in self.regex.captures_iter(stdout) {
            let Some(m) = c.get(1).or_else(|| c.get(0)) else {
                continue;
            };
            let n = m.as_str().trim();
            if !n.is_empty() && !names.iter().any(|x| x == n) {
                names.push(n.to_string());
            }
            if names.len() >= MAX_HITS {
                break;
            }
        }
        if names.is_empty() {
            // Infected by exit code, but the output names nothing: still a hit.
            names.push(format!("{}.Unnamed", self.name));
        }
        names
            .into_iter()
            .map(|signature| Hit {
                suspicious: signature.starts_with("Heuristics.") || signature.starts_with("PUA."),
                signature,
            })
            .collect()
    }

    /// Maps a finished run to a result, fail-closed.
    fn verdict(&self, f: Finished) -> Result<EngineScan, EngineError> {
        let Some(code) = f.status.code() else {
            let sig = f.status.signal().unwrap_or(0);
            return Err(EngineError::Other(format!(
                "{} was killed by signal {sig}{}",
                self.program(),
                core_dumped(f.status.core_dumped())
            )));
        };
        if self.cfg.clean_codes.contains(&code) {
            return Ok(EngineScan::default());
        }
        if self.cfg.infected_codes.contains(&code) {
            return Ok(EngineScan {
                hits: self.hits(&f.stdout),
                trusted: false,
            });
        }
        let why = f
            .stderr
            .lines()
            .chain(f.stdout.lines())
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no output");
        Err(EngineError::Other(format!(
            "{} exited with code {code}: {}",
            self.program(),
            truncate(why, 300)
        )))
    }

    /// `argv` with `{path}` replaced.
    fn argv_with(&self, path: Option<&Path>) -> Vec<OsString> {
        self.cfg
            .argv
            .iter()
            .map(|a| match path {
                Some(p) if a.contains("{path}") => {
                    let mut out = OsString::new();
                    let mut parts = a.split("{path}");
                    if let Some(first) = parts.next() {
                        out.push(first);
                    }
                    for rest in parts {
                        out.push(p.as_os_str());
                        out.push(rest);
                    }
                    out
                }
                _ => OsString::from(a),
            })
            .collect()
    }

    fn run_once(&self, obj: &Object<'_>, deadline: Instant) -> Result<Finished, EngineError> {
        let program = self.program();
        let map = |e: RunError| match e {
            RunError::Timeout => EngineError::Timeout,
            RunError::Spawn(e) => EngineError::Unavailable(format!("cannot run {program}: {e}")),
            RunError::Wait(e) => EngineError::Other(format!("{program}: {e}")),
        };
        match self.cfg.input {
            Input::Stdin => {
                run(&self.argv_with(None), Some(obj.data.clone()), deadline).map_err(map)
            }
            Input::Path => {
                let dir = self.cfg.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
                // NamedTempFile: mode 0600, removed on drop.
                let mut tmp = tempfile::Builder::new()
                    .prefix("moat-command-")
                    .tempfile_in(&dir)?;
                std::io::copy(&mut obj.data.reader(), tmp.as_file_mut())?;
                tmp.as_file_mut().flush()?;
                run(&self.argv_with(Some(tmp.path())), None, deadline).map_err(map)
            }
        }
    }

    /// Runs `version_argv`; its first non-empty output line.
    fn read_version(&self, argv: &[String]) -> Result<String, String> {
        let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
        let f = run(&argv, None, Instant::now() + VERSION_TIMEOUT).map_err(|e| match e {
            RunError::Timeout => "version command timed out".to_string(),
            RunError::Spawn(e) => format!("cannot run the version command: {e}"),
            RunError::Wait(e) => e,
        })?;
        if f.status.code() != Some(0) {
            return Err(format!("version command failed: {}", f.status));
        }
        f.stdout
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(|l| truncate(l, 200).to_string())
            .ok_or_else(|| "version command printed nothing".to_string())
    }

    fn version(&self) -> Option<VersionRead> {
        let argv = self.cfg.version_argv.as_ref()?;
        let mut cached = lock(&self.version);
        if let Some(v) = cached.as_ref()
            && v.at.elapsed() < VERSION_TTL
        {
            return Some(v.clone());
        }
        let result = self.read_version(argv);
        if let Err(e) = &result {
            tracing::warn!(engine = %self.name, error = %e, "command engine version check failed");
        }
        let read = VersionRead {
            at: Instant::now(),
            unix: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            result,
        };
        *cached = Some(read.clone());
        Some(read)
    }
}

fn core_dumped(yes: bool) -> &'static str {
    if yes { " (core dumped)" } else { "" }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl Engine for CommandEngine {
    fn name(&self) -> &str {
        &self.name
    }

    fn info(&self) -> EngineInfo {
        let mut info = EngineInfo {
            name: self.name.clone(),
            kind: "command".to_string(),
            ..Default::default()
        };
        if let Some(v) = self.version() {
            info.loaded_at = v.unix;
            match v.result {
                Ok(line) => {
                    info.version = line.clone();
                    info.signature_version = line;
                }
                Err(e) => info.last_reload_error = Some(e),
            }
        }
        info
    }

    fn scope(&self) -> Scope {
        Scope::Whole
    }

    fn health(&self) -> Result<(), EngineError> {
        match &self.cfg.version_argv {
            Some(argv) => self
                .read_version(argv)
                .map(drop)
                .map_err(EngineError::Unavailable),
            None => Ok(()),
        }
    }

    fn scan(&self, obj: &Object<'_>, ctx: &ScanContext) -> Result<EngineScan, EngineError> {
        let start = Instant::now();
        let deadline = ctx.deadline.min(start + self.timeout);
        if start >= deadline {
            return Err(EngineError::Timeout);
        }
        let Some(_slot) = self.slot(deadline) else {
            return Err(EngineError::Timeout);
        };
        let result = self.run_once(obj, deadline).and_then(|f| self.verdict(f));
        match &result {
            Ok(s) => tracing::debug!(
                engine = %self.name, location = obj.location, bytes = obj.data.len(),
                hits = s.hits.len(), ms = start.elapsed().as_millis() as u64, "command scan"
            ),
            Err(e) => tracing::warn!(
                engine = %self.name, location = obj.location, bytes = obj.data.len(),
                error = %e, ms = start.elapsed().as_millis() as u64, "command scan failed"
            ),
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_core::Blob;

    fn engine(json: &str) -> CommandEngine {
        CommandEngine::new("cmd", serde_json::from_str(json).unwrap()).unwrap()
    }

    fn scan(e: &CommandEngine, data: &[u8]) -> Result<EngineScan, EngineError> {
        let blob = Blob::from_vec(data.to_vec());
        let obj = Object::top(&blob, "x");
        e.scan(&obj, &ScanContext::within(Duration::from_secs(20)))
    }

    /// A fake scanner: "bad" in the content is a detection, "crash" a SIGSEGV,
    /// "weird" exit code 7, "slow" sleeps past any timeout.
    const FAKE: &str = r#"c=$(cat "$1");
        case "$c" in
          *crash*) kill -SEGV $$ ;;
          *weird*) echo "database broken" >&2; exit 7 ;;
          *slow*) sleep 30 ;;
          *bad*) echo "$1: Fake.Bad-1 FOUND"; exit 1 ;;
          *nameless*) exit 1 ;;
        esac
        echo "$1: OK"; exit 0"#;

    fn fake(extra: &str) -> CommandEngine {
        let argv = serde_json::json!(["sh", "-c", FAKE, "fake", "{path}"]);
        engine(&format!(r#"{{"argv":{argv},"timeout_secs":1{extra}}}"#))
    }

    #[test]
    fn exit_codes_map_to_clean_infected_and_errors() {
        let e = fake("");
        assert!(scan(&e, b"harmless").unwrap().hits.is_empty());
        let hits = scan(&e, b"this is bad").unwrap().hits;
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].signature, "Fake.Bad-1");
        assert_eq!(
            scan(&e, b"nameless").unwrap().hits[0].signature,
            "cmd.Unnamed"
        );
        let r = scan(&e, b"weird");
        match r {
            Err(EngineError::Other(m)) => {
                assert!(m.contains("code 7") && m.contains("database broken"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_crash_or_timeout_is_never_clean() {
        let e = fake("");
        match scan(&e, b"crash") {
            Err(EngineError::Other(m)) => assert!(m.contains("signal 11"), "{m}"),
            other => panic!("{other:?}"),
        }
        let start = Instant::now();
        let r = scan(&e, b"slow");
        assert!(matches!(r, Err(EngineError::Timeout)), "{r:?}");
        assert_eq!(
            r.unwrap_err().unscannable_reason(),
            Some(moat_core::Reason::Timeout)
        );
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_missing_program_is_unavailable() {
        let e = engine(r#"{"argv":["/nonexistent/scanner","{path}"]}"#);
        assert!(matches!(scan(&e, b"x"), Err(EngineError::Unavailable(_))));
    }

    #[test]
    fn stdin_input_and_custom_codes_and_regex() {
        let e = engine(
            r#"{"argv":["sh","-c","grep -q evil && { echo 'virus=Evil.One'; exit 5; }; exit 2"],
                "input":"stdin","clean_codes":[2],"infected_codes":[5],
                "signature_regex":"virus=(\\S+)"}"#,
        );
        assert!(scan(&e, b"fine").unwrap().hits.is_empty());
        assert_eq!(scan(&e, b"so evil").unwrap().hits[0].signature, "Evil.One");
    }

    #[test]
    fn the_temp_file_is_private_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(&format!(
            r#"{{"argv":["sh","-c","stat -c %a \"$1\"; echo \"$1\"","s","{{path}}"],
                "temp_dir":"{}","clean_codes":[0],"infected_codes":[1]}}"#,
            dir.path().display()
        ));
        // Clean exit; check the mode through a run with the same argv.
        let f = e.run_once(
            &Object::top(&Blob::from_vec(b"x".to_vec()), "x"),
            Instant::now() + Duration::from_secs(10),
        );
        let out = f.unwrap().stdout;
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("600"));
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with(&dir.path().display().to_string())
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn concurrency_is_bounded() {
        let e = std::sync::Arc::new(engine(
            r#"{"argv":["sh","-c","sleep 0.3","s","{path}"],"max_concurrency":1,"timeout_secs":10}"#,
        ));
        let start = Instant::now();
        let ts: Vec<_> = (0..3)
            .map(|_| {
                let e = e.clone();
                std::thread::spawn(move || scan(&e, b"x").map(|s| s.hits.len()))
            })
            .collect();
        for t in ts {
            assert_eq!(t.join().unwrap().unwrap(), 0);
        }
        assert!(
            start.elapsed() >= Duration::from_millis(850),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn version_comes_from_version_argv() {
        let e = engine(r#"{"argv":["true","{path}"],"version_argv":["echo","Scanner 1.2/345"]}"#);
        let i = e.info();
        assert_eq!(i.kind, "command");
        assert_eq!(i.version, "Scanner 1.2/345");
        assert!(e.fingerprint().contains("Scanner 1.2/345"));
        assert!(e.health().is_ok());
        let e = engine(r#"{"argv":["true","{path}"],"version_argv":["false"]}"#);
        assert!(matches!(e.health(), Err(EngineError::Unavailable(_))));
        assert!(e.info().last_reload_error.is_some());
    }
}

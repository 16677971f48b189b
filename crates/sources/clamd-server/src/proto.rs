//! The clamd command language: framing, command names, arguments. Pure
//! functions over bytes (fuzzed: `fuzz/fuzz_targets/clamd_command.rs`).
//!
//! As ClamAV 1.4's `clamd/session.c`: a `z` prefix ends the command at `\0`
//! and the reply too; an `n` prefix ends it at `\n` (a trailing `\r` is
//! stripped) and the reply with `\n`; without a prefix (legacy) whatever the
//! first read returned is the command, up to `\n` if present, and the reply
//! ends with `\n`. Names are prefix-matched; the argument starts one
//! character after the name.

/// The longest command accepted (clamd: PATH_MAX + 8); longer ones are
/// closed without a reply.
pub const MAX_COMMAND: usize = 4096 + 8;

/// How a command was framed, which decides how its reply ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `z…\0`
    Null,
    /// `n…\n`
    Newline,
    /// No prefix.
    Legacy,
}

impl Framing {
    /// What ends a reply to a command framed this way.
    pub fn terminator(self) -> &'static [u8] {
        match self {
            Framing::Null => b"\0",
            Framing::Newline | Framing::Legacy => b"\n",
        }
    }
}

/// A command moat's clamd server understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ping,
    Version,
    VersionCommands,
    Reload,
    Shutdown,
    /// An old name for SHUTDOWN.
    Quit,
    Scan(Vec<u8>),
    ContScan(Vec<u8>),
    MultiScan(Vec<u8>),
    AllMatchScan(Vec<u8>),
    Instream,
    Fildes,
    Stats,
    IdSession,
    End,
}

impl Command {
    /// The name as written on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Ping => "PING",
            Command::Version => "VERSION",
            Command::VersionCommands => "VERSIONCOMMANDS",
            Command::Reload => "RELOAD",
            Command::Shutdown => "SHUTDOWN",
            Command::Quit => "QUIT",
            Command::Scan(_) => "SCAN",
            Command::ContScan(_) => "CONTSCAN",
            Command::MultiScan(_) => "MULTISCAN",
            Command::AllMatchScan(_) => "ALLMATCHSCAN",
            Command::Instream => "INSTREAM",
            Command::Fildes => "FILDES",
            Command::Stats => "STATS",
            Command::IdSession => "IDSESSION",
            Command::End => "END",
        }
    }

    /// Allowed inside an IDSESSION (clamd: SCAN, INSTREAM, FILDES, VERSION,
    /// PING, STATS, VERSIONCOMMANDS, END).
    pub fn allowed_in_session(&self) -> bool {
        matches!(
            self,
            Command::Scan(_)
                | Command::Instream
                | Command::Fildes
                | Command::Version
                | Command::Ping
                | Command::Stats
                | Command::VersionCommands
                | Command::End
        )
    }
}

/// The commands in the order VERSIONCOMMANDS lists them.
pub const COMMANDS: &str = "SCAN QUIT RELOAD PING CONTSCAN VERSIONCOMMANDS VERSION END SHUTDOWN MULTISCAN FILDES STATS IDSESSION INSTREAM ALLMATCHSCAN";

#[derive(Clone, Copy)]
enum Arg {
    None,
    Path,
}

/// Names, longest first among those sharing a prefix (VERSIONCOMMANDS
/// before VERSION), whether each takes an argument, and whether the
/// unprefixed legacy form accepts it.
const TABLE: [(&str, Arg, bool); 15] = [
    ("VERSIONCOMMANDS", Arg::None, false),
    ("VERSION", Arg::None, true),
    ("PING", Arg::None, true),
    ("RELOAD", Arg::None, true),
    ("SHUTDOWN", Arg::None, true),
    ("QUIT", Arg::None, true),
    ("CONTSCAN", Arg::Path, true),
    ("MULTISCAN", Arg::Path, true),
    ("ALLMATCHSCAN", Arg::Path, false),
    ("SCAN", Arg::Path, true),
    ("INSTREAM", Arg::None, false),
    ("FILDES", Arg::None, true),
    ("STATS", Arg::None, false),
    ("IDSESSION", Arg::None, false),
    ("END", Arg::None, false),
];

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not a command, a missing or extra argument, or not allowed unprefixed.
    Unknown,
}

/// Parse one command (without its prefix and terminator).
pub fn parse(framing: Framing, raw: &[u8]) -> Result<Command, Refused> {
    for (name, arg, legacy) in TABLE {
        let n = name.as_bytes();
        if !raw.starts_with(n) {
            continue;
        }
        if framing == Framing::Legacy && !legacy {
            return Err(Refused::Unknown);
        }
        let rest = &raw[n.len()..];
        return match arg {
            Arg::None if rest.is_empty() => Ok(match name {
                "VERSIONCOMMANDS" => Command::VersionCommands,
                "VERSION" => Command::Version,
                "PING" => Command::Ping,
                "RELOAD" => Command::Reload,
                "SHUTDOWN" => Command::Shutdown,
                "QUIT" => Command::Quit,
                "INSTREAM" => Command::Instream,
                "FILDES" => Command::Fildes,
                "STATS" => Command::Stats,
                "IDSESSION" => Command::IdSession,
                _ => Command::End,
            }),
            Arg::None => Err(Refused::Unknown),
            Arg::Path => {
                // One separator, then a non-empty path.
                let path = rest.get(1..).unwrap_or_default();
                if path.is_empty() {
                    return Err(Refused::Unknown);
                }
                let path = path.to_vec();
                Ok(match name {
                    "CONTSCAN" => Command::ContScan(path),
                    "MULTISCAN" => Command::MultiScan(path),
                    "ALLMATCHSCAN" => Command::AllMatchScan(path),
                    _ => Command::Scan(path),
                })
            }
        };
    }
    Err(Refused::Unknown)
}

/// What [`split`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Split<'a> {
    /// A whole command: its framing, its text, and how many bytes it used
    /// (prefix and terminator included).
    Command {
        framing: Framing,
        text: &'a [u8],
        used: usize,
    },
    /// Not yet complete: read more.
    Incomplete,
    /// Longer than [`MAX_COMMAND`]: close without a reply.
    TooLong,
}

/// Find the first command in `buf`. A legacy (unprefixed) command is
/// complete as soon as anything was read, up to a `\n` if one is there.
/// With `eof`, a prefixed command missing its terminator is taken as it is
/// (clients that close their write side after the command).
pub fn split(buf: &[u8], eof: bool) -> Split<'_> {
    let Some(&first) = buf.first() else {
        return Split::Incomplete;
    };
    let (framing, body, end) = match first {
        b'z' => (Framing::Null, &buf[1..], b'\0'),
        b'n' => (Framing::Newline, &buf[1..], b'\n'),
        _ => (Framing::Legacy, buf, b'\n'),
    };
    let skip = usize::from(framing != Framing::Legacy);
    match body.iter().position(|&b| b == end) {
        Some(i) if i + skip > MAX_COMMAND => Split::TooLong,
        Some(i) => {
            let mut text = &body[..i];
            if framing != Framing::Null {
                text = text.strip_suffix(b"\r").unwrap_or(text);
            }
            Split::Command {
                framing,
                text,
                used: skip + i + 1,
            }
        }
        None if buf.len() > MAX_COMMAND => Split::TooLong,
        None if framing == Framing::Legacy || eof => {
            let text = body.strip_suffix(b"\r").unwrap_or(body);
            Split::Command {
                framing,
                text,
                used: buf.len(),
            }
        }
        None => Split::Incomplete,
    }
}

/// A reply line with anything that would end it early (`\0`, `\n`, `\r`)
/// replaced, so a signature name or file name cannot forge another reply.
pub fn clean_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if matches!(c, '\0' | '\n' | '\r') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(buf: &[u8]) -> Result<Command, Refused> {
        match split(buf, false) {
            Split::Command { framing, text, .. } => parse(framing, text),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn z_n_and_legacy_framing() {
        assert_eq!(
            split(b"zPING\0rest", false),
            Split::Command {
                framing: Framing::Null,
                text: b"PING",
                used: 6
            }
        );
        assert_eq!(
            split(b"nVERSION\r\n", false),
            Split::Command {
                framing: Framing::Newline,
                text: b"VERSION",
                used: 10
            }
        );
        // npm clamscan: PING with no terminator at all.
        assert_eq!(
            split(b"PING", false),
            Split::Command {
                framing: Framing::Legacy,
                text: b"PING",
                used: 4
            }
        );
        assert_eq!(split(b"zPING", false), Split::Incomplete);
        assert!(matches!(split(b"zPING", true), Split::Command { .. }));
        assert_eq!(split(b"", true), Split::Incomplete);
    }

    #[test]
    fn overlong_commands_are_refused() {
        let mut long = b"zSCAN /".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_COMMAND));
        assert_eq!(split(&long, false), Split::TooLong);
        long.push(0);
        assert_eq!(split(&long, false), Split::TooLong);
    }

    #[test]
    fn names_arguments_and_legacy_restrictions() {
        assert_eq!(cmd(b"zVERSIONCOMMANDS\0"), Ok(Command::VersionCommands));
        assert_eq!(cmd(b"zVERSION\0"), Ok(Command::Version));
        assert_eq!(
            cmd(b"nSCAN /tmp/x\n"),
            Ok(Command::Scan(b"/tmp/x".to_vec()))
        );
        assert_eq!(
            cmd(b"SCAN /tmp/a b\n"),
            Ok(Command::Scan(b"/tmp/a b".to_vec()))
        );
        assert_eq!(
            cmd(b"zALLMATCHSCAN /d\0"),
            Ok(Command::AllMatchScan(b"/d".to_vec()))
        );
        assert_eq!(cmd(b"zSCAN\0"), Err(Refused::Unknown));
        assert_eq!(cmd(b"zSCAN \0"), Err(Refused::Unknown));
        assert_eq!(cmd(b"zPINGX\0"), Err(Refused::Unknown));
        assert_eq!(cmd(b"zHELLO\0"), Err(Refused::Unknown));
        // Unprefixed INSTREAM, IDSESSION, STATS, ALLMATCHSCAN: UNKNOWN COMMAND.
        assert_eq!(cmd(b"INSTREAM\n"), Err(Refused::Unknown));
        assert_eq!(cmd(b"IDSESSION\n"), Err(Refused::Unknown));
        assert_eq!(cmd(b"STATS\n"), Err(Refused::Unknown));
        assert_eq!(cmd(b"ALLMATCHSCAN /x\n"), Err(Refused::Unknown));
        assert_eq!(cmd(b"zINSTREAM\0"), Ok(Command::Instream));
        assert_eq!(cmd(b"zFILDES\0"), Ok(Command::Fildes));
    }

    #[test]
    fn session_commands() {
        assert!(Command::Instream.allowed_in_session());
        assert!(Command::End.allowed_in_session());
        assert!(!Command::MultiScan(b"/x".to_vec()).allowed_in_session());
        assert!(!Command::IdSession.allowed_in_session());
        assert!(!Command::Shutdown.allowed_in_session());
    }

    #[test]
    fn reply_lines_cannot_be_forged() {
        assert_eq!(clean_line("a\nb\0c\r"), "a b c ");
    }
}

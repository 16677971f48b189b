//! `moat portal ...`: the portal's administrative commands (the role under
//! `moat serve` is [`crate::roles::portal`]).

use crate::config::{self, Settings};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct PortalArgs {
    /// Configuration file (TOML); `MOAT_*` environment variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory (the default SQLite database and key files live there).
    #[arg(long = "data-dir", global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: PortalCmd,
}

#[derive(Subcommand)]
enum PortalCmd {
    /// Create an admin account (the first-run bootstrap; no default password exists).
    CreateAdmin {
        #[arg(long)]
        email: String,
        /// Read the password from standard input (one line).
        #[arg(long = "password-stdin", required = true)]
        password_stdin: bool,
    },
    /// Print a new API token for a user (`Authorization: Bearer ...`).
    CreateToken {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// Re-wrap every package's data key under a new key-encryption key
    /// (file contents are not touched); then point `portal.kek_file` at it.
    RotateKek {
        /// The new KEK: 64 hex characters or base64 of 32 bytes.
        #[arg(long = "new-kek-file")]
        new_kek_file: PathBuf,
    },
}

fn settings(a: &PortalArgs) -> Result<Settings> {
    let mut s = config::load(a.config.as_deref())?;
    if let Some(d) = &a.data_dir {
        s.set_data_dir(d.clone());
    }
    Ok(s)
}

pub fn run(a: PortalArgs) -> Result<ExitCode> {
    let s = settings(&a)?;
    crate::logging::init(s.log_json, "warn");
    std::fs::create_dir_all(&s.data_dir)
        .with_context(|| format!("creating {}", s.data_dir.display()))?;
    crate::runtime::block_on(async move {
        match a.cmd {
            PortalCmd::CreateAdmin {
                email,
                password_stdin,
            } => {
                if !password_stdin {
                    bail!("--password-stdin is required");
                }
                let mut pw = String::new();
                #[allow(clippy::disallowed_methods)] // bounded by take(4096)
                let read = std::io::stdin().take(4096).read_to_string(&mut pw);
                read.context("reading the password")?;
                let pw = pw.trim_end_matches(['\n', '\r']).to_string();
                let id = moat_portal::cli::create_admin(&s.database_url, &email, pw).await?;
                println!("created admin {email} ({id})");
            }
            PortalCmd::CreateToken { email, name } => {
                let t = moat_portal::cli::create_token(&s.database_url, &email, &name).await?;
                println!("{t}");
            }
            PortalCmd::RotateKek { new_kek_file } => {
                let old = moat_portal::load_kek(&s.portal, &s.data_dir)?;
                let new = moat_vault::Kek::from_file(&new_kek_file)
                    .with_context(|| format!("reading {}", new_kek_file.display()))?;
                let (done, skipped) =
                    moat_portal::cli::rotate_kek(&s.database_url, &old, &new).await?;
                println!(
                    "re-wrapped {done} data keys ({skipped} already under the new KEK); now set portal.kek_file to {}",
                    new_kek_file.display()
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })?
}

//! `moat bucket watch` and `moat bucket scan`: the bucket role (wiring only;
//! the work is in moat-bucket), plus the bucket-av-scanner environment aliases.

use crate::config::{self, Settings};
use crate::runtime::Core;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use moat_bucket::{Bucket, BucketConfig};
use moat_role::Supervisor;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Args)]
pub struct BucketArgs {
    #[command(subcommand)]
    cmd: BucketCmd,
}

#[derive(Subcommand)]
enum BucketCmd {
    /// Consume S3 event notifications ([[bucket.sources]]) and scan each new object.
    Watch {
        /// Configuration file (TOML); `MOAT_*` and the bucket-av-scanner variables apply too.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Scan the existing objects of s3://BUCKET[/PREFIX] (resumable).
    Scan {
        /// `s3://BUCKET[/PREFIX]`; default: bucket.default_bucket (MINIO_BUCKET_NAME).
        target: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Objects scanned at once (default: bucket.concurrency); up to
        /// bucket.fetch_ahead more are listed, fetched and tagged meanwhile.
        #[arg(long)]
        concurrency: Option<usize>,
        /// Scan again objects already scanned with the current engines.
        #[arg(long)]
        rescan: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
}

pub fn run(a: BucketArgs) -> Result<ExitCode> {
    let cfg_path = match &a.cmd {
        BucketCmd::Watch { config } | BucketCmd::Scan { config, .. } => config.clone(),
    };
    let mut s = load(cfg_path.as_deref())?;
    s.yara_cache_under_data_dir();
    crate::logging::init(s.log_json, "info");
    match a.cmd {
        BucketCmd::Watch { .. } => {
            crate::runtime::block_on(watch_cmd(s))?.map(|_| ExitCode::SUCCESS)
        }
        BucketCmd::Scan {
            target,
            concurrency,
            rescan,
            quiet,
            ..
        } => crate::runtime::block_on(scan_cmd(s, target, concurrency, rescan, quiet))?,
    }
}

/// Settings with the bucket-av-scanner aliases applied where the file is silent.
pub fn load(path: Option<&Path>) -> Result<Settings> {
    let moat_env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("MOAT_"))
        .collect();
    let all: Vec<(String, String)> = std::env::vars().collect();
    config::load_from_with(path, &moat_env, |doc| apply_aliases(doc, &all))
}

fn get<'a>(doc: &'a toml::Table, path: &[&str]) -> Option<&'a toml::Value> {
    let (last, parents) = path.split_last()?;
    let mut t = doc;
    for p in parents {
        t = t.get(*p)?.as_table()?;
    }
    t.get(*last)
}

/// Set `path` unless the document already has it.
fn set_default(doc: &mut toml::Table, path: &[&str], v: toml::Value) -> Result<()> {
    if get(doc, path).is_some() {
        return Ok(());
    }
    crate::config::set(doc, path, v)
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

fn userinfo(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The bucket-av-scanner environment variables, applied where the
/// configuration file says nothing.
pub fn apply_aliases(doc: &mut toml::Table, env: &[(String, String)]) -> Result<()> {
    let e = |k: &str| {
        env.iter()
            .find(|(kk, _)| kk == k)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let s = |v: &str| toml::Value::String(v.to_string());
    if let Some(v) = e("MINIO_SERVER_URL") {
        let url = if v.contains("://") {
            v
        } else {
            format!("http://{v}")
        };
        set_default(doc, &["bucket", "s3", "endpoint"], s(&url))?;
    }
    if let Some(v) = e("MINIO_USER_NAME") {
        set_default(doc, &["bucket", "s3", "access_key"], s(&v))?;
    }
    if let Some(v) = e("MINIO_USER_PASSWORD") {
        set_default(doc, &["bucket", "s3", "secret_key"], s(&v))?;
    }
    if let Some(v) = e("MINIO_REGION") {
        set_default(doc, &["bucket", "s3", "region"], s(&v))?;
    }
    if let Some(v) = e("MINIO_BUCKET_NAME") {
        set_default(doc, &["bucket", "default_bucket"], s(&v))?;
    }
    if (e("RABBITMQ_ENDPOINT").is_some() || e("RABBITMQ_QUEUE_NAME").is_some())
        && get(doc, &["bucket", "sources"]).is_none()
    {
        let host = e("RABBITMQ_ENDPOINT").unwrap_or_else(|| "127.0.0.1".into());
        let host = host
            .trim_start_matches("amqp://")
            .trim_end_matches('/')
            .to_string();
        let port = e("RABBITMQ_AMQP_PORT").unwrap_or_else(|| "5672".into());
        let port: u16 = port
            .parse()
            .with_context(|| format!("RABBITMQ_AMQP_PORT={port:?} is not a port"))?;
        let user = e("RABBITMQ_REGULAR_USER_NAME").unwrap_or_else(|| "guest".into());
        let pass = e("RABBITMQ_REGULAR_USER_PASS").unwrap_or_else(|| "guest".into());
        let mut t = toml::Table::new();
        t.insert("type".into(), s("amqp"));
        t.insert(
            "url".into(),
            s(&format!(
                "amqp://{}:{}@{host}:{port}/%2f",
                userinfo(&user),
                userinfo(&pass)
            )),
        );
        t.insert(
            "queue".into(),
            s(&e("RABBITMQ_QUEUE_NAME").unwrap_or_else(|| "moat-events".into())),
        );
        if let Some(x) = e("RABBITMQ_TOPIC") {
            t.insert("exchange".into(), s(&x));
        }
        if let Some(k) = e("RABBITMQ_QUEUE_ROUTING_KEY") {
            t.insert("routing_key".into(), s(&k));
        }
        set_default(
            doc,
            &["bucket", "sources"],
            toml::Value::Array(vec![toml::Value::Table(t)]),
        )?;
    }
    if let Some(host) = e("CLAMD_ENDPOINT")
        && get(doc, &["engines"]).is_none()
    {
        let port = e("CLAMD_PORT").unwrap_or_else(|| "3310".into());
        let mut b = toml::Table::new();
        b.insert("type".into(), s("builtin"));
        let mut c = toml::Table::new();
        c.insert("type".into(), s("clamd"));
        c.insert("address".into(), s(&format!("{host}:{port}")));
        doc.insert(
            "engines".into(),
            toml::Value::Array(vec![toml::Value::Table(b), toml::Value::Table(c)]),
        );
    }
    if let Some(v) = e("DELETE_FILE")
        && truthy(&v)
    {
        set_default(doc, &["bucket", "policy", "rules", "infected"], s("block"))?;
    }
    if let Some(v) = e("TAG_FILES") {
        if truthy(&v) {
            set_default(
                doc,
                &["bucket", "tag", "enabled"],
                toml::Value::Boolean(true),
            )?;
            set_default(doc, &["bucket", "tag", "scheme"], s("bucket-av-scanner"))?;
            if let Some(k) = e("TAG_KEY") {
                set_default(doc, &["bucket", "tag", "key"], s(&k))?;
            }
        } else {
            set_default(
                doc,
                &["bucket", "tag", "enabled"],
                toml::Value::Boolean(false),
            )?;
        }
    }
    if let Some(v) = e("VOLUME_SIZE") {
        let gb: f64 = v
            .parse()
            .with_context(|| format!("VOLUME_SIZE={v:?} is not a number of GB"))?;
        if gb.is_nan() || gb <= 0.0 {
            bail!("VOLUME_SIZE={v:?} must be positive");
        }
        set_default(
            doc,
            &["bucket", "max_size"],
            toml::Value::Integer((gb * (1u64 << 30) as f64) as i64),
        )?;
    }
    if let Some(v) = e("PUBLISH_URL") {
        set_default(doc, &["bucket", "notify", "url"], s(&v))?;
    }
    if let Some(v) = e("REPORT_CLEAN") {
        if get(doc, &["bucket", "notify"]).is_some() {
            set_default(
                doc,
                &["bucket", "notify", "report_clean"],
                toml::Value::Boolean(truthy(&v)),
            )?;
        } else {
            tracing::warn!("REPORT_CLEAN without PUBLISH_URL (or [bucket.notify]) has no effect");
        }
    }
    Ok(())
}

/// `[bucket] tmp_dir`, else the server's, else `<data_dir>/tmp`.
fn tmp_dir(s: &Settings) -> PathBuf {
    s.bucket
        .as_ref()
        .and_then(|b| b.tmp_dir.clone())
        .unwrap_or_else(|| crate::runtime::default_tmp_dir(s))
}

/// The engines, store and the rest for the standalone commands.
async fn core(s: &mut Settings) -> Result<Core> {
    let tmp = tmp_dir(s);
    Core::build(s, tmp).await
}

/// The bucket pipeline over the shared scan core (both commands and the role).
pub(crate) async fn build(s: &Settings, core: &Core) -> Result<Arc<Bucket>> {
    let cfg = s.bucket.clone().unwrap_or_default();
    let tmp_dir = tmp_dir(s);
    std::fs::create_dir_all(&tmp_dir).with_context(|| format!("creating {}", tmp_dir.display()))?;
    crate::runtime::restrict(&tmp_dir)?;
    let ledger = moat_db::open_objects(&s.database_url)
        .await
        .context("opening the object ledger")?;
    let s3 = moat_s3::S3::new(&cfg.s3).await.context("[bucket.s3]")?;
    let service = core.service(cfg.effective_policy(), s.server.cache);
    Ok(Bucket::new(cfg, s3, service, ledger, tmp_dir))
}

async fn watch_cmd(mut s: Settings) -> Result<()> {
    let cfg: BucketConfig = s.bucket.clone().unwrap_or_default();
    if cfg.sources.is_empty() {
        bail!("no event sources: configure [[bucket.sources]] (or RABBITMQ_* variables)");
    }
    let core = core(&mut s).await?;
    let role = crate::roles::bucket::new(&s, &core, true).await?;
    let mut sup = Supervisor::new(crate::roles::DRAIN);
    sup.add(core.reload_role(s.reload.poll_secs));
    sup.add(role);
    tracing::info!(
        concurrency = cfg.concurrency,
        sources = cfg.sources.len(),
        "moat bucket watch ready"
    );
    sup.run(crate::runtime::shutdown_signal()).await?;
    tracing::info!("moat bucket watch stopped");
    Ok(())
}

fn parse_target(t: &str) -> Result<(String, String)> {
    let rest = t
        .strip_prefix("s3://")
        .with_context(|| format!("{t:?}: expected s3://BUCKET[/PREFIX]"))?;
    let (b, p) = rest.split_once('/').unwrap_or((rest, ""));
    if b.is_empty() {
        bail!("{t:?}: empty bucket name");
    }
    Ok((b.to_string(), p.to_string()))
}

async fn scan_cmd(
    s: Settings,
    target: Option<String>,
    concurrency: Option<usize>,
    rescan: bool,
    quiet: bool,
) -> Result<ExitCode> {
    let (bucket, prefix) = match (
        &target,
        s.bucket.as_ref().and_then(|b| b.default_bucket.clone()),
    ) {
        (Some(t), _) => parse_target(t)?,
        (None, Some(b)) => (b, String::new()),
        (None, None) => bail!("which bucket? give s3://BUCKET[/PREFIX] (or set MINIO_BUCKET_NAME)"),
    };
    let mut s = s;
    if let Some(n) = concurrency {
        s.bucket.get_or_insert_with(Default::default).concurrency = n.max(1);
    }
    let core = core(&mut s).await?;
    let b = build(&s, &core).await?;
    let n = b.cfg.in_flight();
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        crate::runtime::shutdown_signal().await;
        let _ = tx.send(true);
    });
    let started = std::time::Instant::now();
    let sum = moat_bucket::backfill(b, &bucket, &prefix, n, rescan, !quiet, rx)
        .await
        .map_err(|f| anyhow::anyhow!(f.0))?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!("----------- BUCKET SCAN SUMMARY -----------");
    eprintln!("Target: s3://{bucket}/{prefix}");
    eprintln!("Objects listed: {}", sum.listed);
    eprintln!(
        "Scanned now: {} ({:.1} MiB)",
        sum.scanned,
        sum.bytes as f64 / (1 << 20) as f64
    );
    eprintln!("Already scanned (current engines): {}", sum.already_scanned);
    eprintln!("Skipped by rules: {}", sum.skipped);
    eprintln!("Missing: {}", sum.missing);
    eprintln!("Failed: {}", sum.failed);
    for (k, v) in &sum.by_status {
        eprintln!("  {k}: {v}");
    }
    eprintln!("Time: {secs:.1} s");
    Ok(ExitCode::from(sum.exit_code()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn aliases_fill_what_the_file_leaves_out() {
        let mut doc: toml::Table =
            toml::from_str("[bucket.s3]\nendpoint = \"http://file:9000\"\n").unwrap();
        apply_aliases(
            &mut doc,
            &env(&[
                ("MINIO_SERVER_URL", "minio:9000"),
                ("MINIO_USER_NAME", "ak"),
                ("MINIO_USER_PASSWORD", "s/k"),
                ("MINIO_BUCKET_NAME", "uploads"),
                ("RABBITMQ_ENDPOINT", "rabbit"),
                ("RABBITMQ_REGULAR_USER_NAME", "u"),
                ("RABBITMQ_REGULAR_USER_PASS", "p@ss"),
                ("RABBITMQ_QUEUE_NAME", "q"),
                ("RABBITMQ_TOPIC", "minio"),
                ("RABBITMQ_QUEUE_ROUTING_KEY", "uploads"),
                ("CLAMD_ENDPOINT", "clamd"),
                ("DELETE_FILE", "true"),
                ("TAG_FILES", "true"),
                ("TAG_KEY", "av"),
                ("VOLUME_SIZE", "2"),
                ("PUBLISH_URL", "http://hooks:8080/av"),
                ("REPORT_CLEAN", "true"),
            ]),
        )
        .unwrap();
        let cfg: BucketConfig = doc["bucket"].clone().try_into().unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.s3.endpoint.as_deref(), Some("http://file:9000"));
        assert_eq!(cfg.s3.access_key.as_deref(), Some("ak"));
        assert_eq!(cfg.default_bucket.as_deref(), Some("uploads"));
        let moat_bucket::SourceConfig::Amqp(a) = &cfg.sources[0] else {
            panic!("expected the amqp source");
        };
        assert_eq!(a.url, "amqp://u:p%40ss@rabbit:5672/%2f");
        assert_eq!(a.queue, "q");
        assert_eq!(a.exchange.as_deref(), Some("minio"));
        assert_eq!(a.routing_key, "uploads");
        assert_eq!(cfg.tag.key, "av");
        assert_eq!(cfg.tag.scheme, moat_s3::TagScheme::BucketAvScanner);
        assert_eq!(
            cfg.policy.rules.get("infected"),
            Some(&moat_core::Action::Block)
        );
        assert_eq!(cfg.max_size, 2 << 30);
        let n = cfg
            .notify
            .as_ref()
            .expect("PUBLISH_URL configures the notify webhook");
        assert_eq!(n.url, "http://hooks:8080/av");
        assert!(n.report_clean);
        assert_eq!(doc["engines"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn targets() {
        assert_eq!(parse_target("s3://b").unwrap(), ("b".into(), "".into()));
        assert_eq!(
            parse_target("s3://b/p/q").unwrap(),
            ("b".into(), "p/q".into())
        );
        assert!(parse_target("b/p").is_err());
        assert!(parse_target("s3:///p").is_err());
    }
}

//! E-mail over SMTP (lettre): to recipients when a package becomes
//! available (never before), to the sender on quarantine, release, first
//! download and expiry, to admins on quarantine. Messages go on the work
//! queue (`portal.mail`) first and are sent by a worker that retries with
//! backoff, so a mail server that is down never blocks a state change.

use crate::error::{PortalError, Result};
use crate::store::Package;
use crate::{Portal, links};
use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

pub const MAIL_QUEUE: &str = "portal.mail";
const MAX_ATTEMPTS: u32 = 12;

/// `[portal.smtp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// `smtp://host:25` (plain), `smtp://host:587?tls=required` (STARTTLS),
    /// `smtps://host:465` (TLS); credentials as `smtp://user:pass@host`.
    pub url: String,
    /// The sender address, e.g. `moat <noreply@example.com>`.
    pub from: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Mail {
    to: String,
    subject: String,
    body: String,
}

/// Mail never blocks what caused it: a failure to queue is logged.
pub fn logged(r: Result<()>) {
    if let Err(e) = r {
        tracing::warn!(error = %e, "queueing a notification failed");
    }
}

fn queue_err(e: impl std::fmt::Display) -> PortalError {
    PortalError::Db(e.to_string())
}

async fn enqueue(p: &Portal, to: &str, subject: String, body: String) -> Result<()> {
    if p.cfg.smtp.is_none() {
        return Ok(());
    }
    let m = Mail {
        to: to.to_string(),
        subject,
        body,
    };
    let payload = serde_json::to_vec(&m).map_err(queue_err)?;
    p.queue.enqueue(MAIL_QUEUE, &payload).await?;
    p.wake_mail.notify_waiters();
    Ok(())
}

fn expiry_text(pkg: &Package) -> String {
    let secs = (pkg.expires_at - crate::store::now_ms()).max(0) / 1000;
    format!("{} hours", secs / 3600)
}

/// A recipient's personal link (its token is derived again from the
/// secret, the link id and its salt; only its hash is stored).
fn recipient_url(p: &Portal, l: &crate::store::Link) -> String {
    format!(
        "{}{}",
        p.base_url,
        links::path(&links::token(p.sessions.secret(), &l.id, &l.salt))
    )
}

/// The package is available: each recipient gets their own link.
pub async fn package_available(p: &Portal, pkg: &Package) -> Result<()> {
    for l in p.store.links(&pkg.id).await? {
        let Some(to) = &l.recipient else { continue };
        let url = recipient_url(p, &l);
        let body = format!(
            "Files were shared with you.\n\n{}\n\nDownload: {url}\n\nEvery file was scanned and found clean. The link expires in {}.\n",
            pkg.message,
            expiry_text(pkg)
        );
        enqueue(p, to, "Files shared with you".into(), body).await?;
    }
    Ok(())
}

/// A recipient who has not downloaded yet: their link again, and when it
/// stops working.
pub async fn reminder(p: &Portal, pkg: &Package, l: &crate::store::Link) -> Result<()> {
    let Some(to) = &l.recipient else {
        return Ok(());
    };
    let url = recipient_url(p, l);
    let body = format!(
        "Files shared with you have not been downloaded yet, and the link expires in {}.\n\n{}\n\nDownload: {url}\n",
        expiry_text(pkg),
        pkg.message
    );
    enqueue(
        p,
        to,
        "Reminder: files shared with you expire soon".into(),
        body,
    )
    .await
}

async fn owner_email(p: &Portal, pkg: &Package) -> Result<Option<String>> {
    Ok(p.store.user(&pkg.owner_id).await?.map(|u| u.email))
}

/// Quarantine: the sender and every admin.
pub async fn package_quarantined(p: &Portal, pkg: &Package, reason: &str) -> Result<()> {
    let body = format!(
        "Package {} was quarantined (reason: {reason}). Nothing of it can be downloaded unless an admin releases it.\n",
        pkg.id
    );
    if let Some(o) = owner_email(p, pkg).await? {
        enqueue(p, &o, "Your package was quarantined".into(), body.clone()).await?;
    }
    for a in p.store.admin_emails().await? {
        enqueue(
            p,
            &a,
            format!("Package {} quarantined ({reason})", pkg.id),
            body.clone(),
        )
        .await?;
    }
    Ok(())
}

/// A sender notice (release, first download, expiry).
pub async fn to_sender(p: &Portal, pkg: &Package, subject: &str, body: String) -> Result<()> {
    if let Some(o) = owner_email(p, pkg).await? {
        enqueue(p, &o, subject.to_string(), body).await?;
    }
    Ok(())
}

/// Send queued mail until `stop`.
pub fn spawn(
    p: Arc<Portal>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let cfg = p.cfg.smtp.clone()?;
    Some(tokio::spawn(async move {
        let transport = match AsyncSmtpTransport::<Tokio1Executor>::from_url(&cfg.url) {
            Ok(t) => t.timeout(Some(Duration::from_secs(20))).build(),
            Err(e) => {
                tracing::error!(error = %e, "portal.smtp.url is not usable; mail stays queued");
                return;
            }
        };
        let from: Mailbox = match cfg.from.parse() {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "portal.smtp.from is not an address; mail stays queued");
                return;
            }
        };
        loop {
            if *stop.borrow() {
                return;
            }
            match p.queue.lease(MAIL_QUEUE, Duration::from_secs(120)).await {
                Ok(Some(ev)) => {
                    let r = match serde_json::from_slice::<Mail>(&ev.payload) {
                        Ok(m) => send(&transport, &from, &m).await,
                        Err(e) => Err(format!("unreadable mail job: {e}")),
                    };
                    let settle = match r {
                        Ok(()) => p.queue.ack(&ev.id).await,
                        Err(e) if ev.attempts >= MAX_ATTEMPTS => {
                            tracing::warn!(error = %e, "mail dead-lettered");
                            p.queue.dead(&ev.id, &e).await
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, attempt = ev.attempts, "sending mail failed; retrying");
                            let d = Duration::from_secs((2u64 << ev.attempts.min(8)).min(600));
                            p.queue.retry(&ev.id, d).await
                        }
                    };
                    if let Err(e) = settle {
                        tracing::warn!(error = %e, "settling a mail job failed");
                    }
                }
                Ok(None) => {
                    tokio::select! {
                        _ = p.wake_mail.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "leasing mail failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }))
}

async fn send(
    t: &AsyncSmtpTransport<Tokio1Executor>,
    from: &Mailbox,
    m: &Mail,
) -> std::result::Result<(), String> {
    let to: Mailbox =
        m.to.parse()
            .map_err(|e| format!("recipient {:?}: {e}", m.to))?;
    let msg = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(m.subject.clone())
        .header(ContentType::TEXT_PLAIN)
        .body(m.body.clone())
        .map_err(|e| format!("building mail: {e}"))?;
    t.send(msg)
        .await
        .map(|_| ())
        .map_err(|e| format!("SMTP: {e}"))
}

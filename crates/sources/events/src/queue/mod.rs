//! Work queues on a message broker, behind moat-db's [`EventQueue`] trait, so
//! the portal's scan and mail jobs can live on RabbitMQ or NATS JetStream
//! instead of the embedded SQL queue: [`open`] picks the implementation by URL.

pub mod amqp;
pub mod nats;

use moat_db::{DbError, EventQueue};
use std::sync::Arc;

/// The work queue named by `queue_url`: `amqp://` / `amqps://` is RabbitMQ,
/// `nats://` / `tls://` NATS JetStream (queue names and subjects prefixed
/// with `prefix`); without a URL, the embedded SQL queue in the database at
/// `database_url`.
pub async fn open(
    queue_url: Option<&str>,
    prefix: &str,
    database_url: &str,
) -> Result<Arc<dyn EventQueue>, DbError> {
    match queue_url.map(str::trim).filter(|u| !u.is_empty()) {
        None => moat_db::open_queue(database_url).await,
        Some(u) if u.starts_with("amqp://") || u.starts_with("amqps://") => {
            Ok(Arc::new(amqp::AmqpQueue::connect(u, prefix).await?))
        }
        Some(u) if u.starts_with("nats://") || u.starts_with("tls://") => {
            Ok(Arc::new(nats::NatsQueue::connect(u, prefix).await?))
        }
        Some(u) => Err(DbError::Url(format!(
            "{}: the work queue URL must start with amqp://, amqps://, nats:// or tls://",
            redact(u)
        ))),
    }
}

/// `scheme://user:***@host...`: never log a password.
pub fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(at)) if at > scheme.len() + 3 => {
            let creds = &rest[..at - scheme.len() - 3];
            let user = creds.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***{}", &url[at..])
        }
        _ => url.to_string(),
    }
}

/// A plain mutex's guard, even after a holder panicked (the maps it guards
/// stay consistent: every change is one insert or remove).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_the_password_only() {
        assert_eq!(
            redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://127.0.0.1"), "amqp://127.0.0.1");
    }

    #[tokio::test]
    async fn an_unknown_scheme_is_refused() {
        let e = match open(Some("kafka://x"), "moat.", "sqlite://unused").await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("kafka:// accepted"),
        };
        assert!(e.contains("amqp://"), "{e}");
    }
}

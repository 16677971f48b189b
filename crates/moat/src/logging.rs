//! Structured logs: text or JSON, filter from `MOAT_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

pub fn init(json: bool, default_level: &str) {
    let filter =
        EnvFilter::try_from_env("MOAT_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        let _ = builder.json().flatten_event(true).try_init();
    } else {
        let _ = builder.try_init();
    }
}

//! One object: HEAD → skip rules / already scanned → GET into a Spool →
//! scan + record → actions (tag, delete, quarantine) → ledger `done`.
//!
//! And one delivery: parse → every object through the pipeline → ack, or
//! retry with backoff, or dead-letter with the reason.

use crate::config::{BucketConfig, PublishConfig};
use crate::metrics as m;
use moat_api::ScanService;
use moat_core::{Action, EngineReport, Reason, Spool, Status, Verdict};
use moat_db::{ObjectLedger, ObjectRow, ObjectState, ScanRecord};
use moat_events::Delivery;
use moat_events::event::{self, Disposition, Quarantine};
use moat_s3::{S3, S3Error, Tagger};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything the pipeline needs; cheap to share.
pub struct Bucket {
    pub cfg: BucketConfig,
    pub s3: S3,
    pub service: ScanService,
    pub ledger: ObjectLedger,
    pub tmp_dir: PathBuf,
    tagger: Tagger,
    quarantine: Quarantine,
    /// Test hook: pause this long after the work and before the ack.
    pause_before_ack: Option<Duration>,
    /// `[bucket.notify]`, built up front (the URL was validated with the config).
    webhook: Option<moat_notify::Webhook>,
    /// `[[bucket.publish]]`, connected on first use: a broker that is down
    /// fails that attempt, which is retried like any other action.
    publishers: tokio::sync::OnceCell<Vec<Publisher>>,
    /// `concurrency` permits: scans at once, while up to `fetch_ahead` more
    /// objects are in the other stages.
    scan_slots: tokio::sync::Semaphore,
}

enum Publisher {
    Amqp(moat_notify::AmqpPublisher),
    Nats(moat_notify::NatsPublisher),
}

impl Publisher {
    async fn connect(c: &PublishConfig) -> Result<Publisher, moat_notify::NotifyError> {
        Ok(match c {
            PublishConfig::Amqp(a) => {
                Publisher::Amqp(moat_notify::AmqpPublisher::connect(a).await?)
            }
            PublishConfig::Nats(n) => {
                Publisher::Nats(moat_notify::NatsPublisher::connect(n).await?)
            }
        })
    }

    async fn publish(
        &self,
        m: &moat_notify::ResultMessage,
    ) -> Result<(), moat_notify::NotifyError> {
        match self {
            Publisher::Amqp(p) => p.publish(m).await,
            Publisher::Nats(p) => p.publish(m).await,
        }
    }
}

/// The object an event or a listing names.
#[derive(Debug, Clone)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    /// Event time in Unix ms, for the event-to-verdict lag.
    pub event_ms: Option<i64>,
    /// Which source it came from (`amqp`, ..., `backfill`).
    pub source: &'static str,
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Scanned (or the recorded verdict reused) and every action done.
    Verdict(Status),
    /// Scanned earlier with the current fingerprint; nothing to do.
    AlreadyScanned(String),
    Skipped(String),
    Missing,
}

/// Why an object could not be finished; the event is retried, then dead-lettered.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Failure(pub String);

impl Bucket {
    pub fn new(
        cfg: BucketConfig,
        s3: S3,
        service: ScanService,
        ledger: ObjectLedger,
        tmp_dir: PathBuf,
    ) -> Arc<Bucket> {
        let pause_before_ack = std::env::var("MOAT_TEST_PAUSE_BEFORE_ACK_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis);
        let webhook = cfg
            .notify
            .clone()
            .and_then(|n| match moat_notify::Webhook::new(n) {
                Ok(w) => Some(w),
                // validate() builds the same webhook, so this is not reached with
                // a validated configuration; say so loudly if it is.
                Err(e) => {
                    tracing::error!(error = %e, "[bucket.notify] unusable; notifications are off");
                    None
                }
            });
        Arc::new(Bucket {
            scan_slots: tokio::sync::Semaphore::new(cfg.concurrency.max(1)),
            webhook,
            publishers: tokio::sync::OnceCell::new(),
            tagger: cfg.tag.tagger(),
            quarantine: cfg.quarantine.location(),
            cfg,
            s3,
            service,
            ledger,
            tmp_dir,
            pause_before_ack,
        })
    }

    fn fingerprint(&self) -> String {
        self.service.scanner.engine_set().fingerprint().to_string()
    }

    async fn put_row(&self, row: ObjectRow) -> Result<(), Failure> {
        self.ledger
            .put(&row)
            .await
            .map_err(|e| Failure(format!("could not write the object ledger: {e}")))
    }

    /// Run one object through the pipeline. `rescan` ignores earlier results.
    pub async fn process(&self, o: &ObjectRef, rescan: bool) -> Result<Outcome, Failure> {
        metrics::gauge!(m::IN_FLIGHT).increment(1.0);
        let r = self.process_inner(o, rescan).await;
        metrics::gauge!(m::IN_FLIGHT).decrement(1.0);
        match &r {
            Ok(Outcome::Verdict(s)) => m::object(s.as_str()),
            Ok(Outcome::AlreadyScanned(_)) => m::object("already_scanned"),
            Ok(Outcome::Skipped(_)) => m::object("skipped"),
            Ok(Outcome::Missing) => m::object("missing"),
            Err(_) => m::object("failed"),
        }
        r
    }

    async fn process_inner(&self, o: &ObjectRef, rescan: bool) -> Result<Outcome, Failure> {
        let name = format!("s3://{}/{}", o.bucket, o.key);
        if let Some(why) = self.cfg.skip.by_key(&o.key) {
            tracing::debug!(object = %name, reason = %why, "skipped");
            return Ok(Outcome::Skipped(why));
        }
        let fp = self.fingerprint();
        // GET first (no HEAD): its response head carries the size, ETag,
        // version and tag count; the body is read only if the object is to
        // be scanned, and abandoned otherwise (skipped, already scanned, too
        // large). Two S3 requests fewer per object than HEAD + tags + GET.
        let fetch = match self
            .s3
            .fetch(&o.bucket, &o.key, o.version_id.as_deref())
            .await
        {
            Ok(f) => f,
            Err(e) if e.is_not_found() => return self.missing(o, &fp).await,
            Err(e) => return Err(Failure(format!("GET {name}: {e}"))),
        };
        let head = fetch.info.clone();
        // Work on the exact version the GET saw, so tags and deletes hit what was scanned.
        let version = o.version_id.clone().or(head.version_id.clone());
        let vkey = version.clone().unwrap_or_default();
        if let Some(why) = self.cfg.skip.by_head(head.size, &head.tags) {
            tracing::debug!(object = %name, reason = %why, "skipped");
            return Ok(Outcome::Skipped(why));
        }
        let prior = self
            .ledger
            .get(&o.bucket, &o.key, &vkey)
            .await
            .map_err(|e| Failure(format!("reading the object ledger: {e}")))?;
        let mut reuse: Option<ScanRecord> = None;
        if !rescan {
            if let Some(p) = &prior
                && p.etag == head.etag
                && p.fingerprint == fp
            {
                match p.state {
                    ObjectState::Done => {
                        return Ok(Outcome::AlreadyScanned(p.status.clone()));
                    }
                    ObjectState::Scanned | ObjectState::ActionFailed
                        if p.status != "error" && !p.record_id.is_empty() =>
                    {
                        reuse = self.service.store.get(&p.record_id).await.ok().flatten();
                    }
                    _ => {}
                }
            } else if prior.is_none()
                && self.tagger.recorded_fingerprint(&head.tags) == Some(fp.as_str())
                && head
                    .tags
                    .iter()
                    .any(|(k, v)| k == "moat-status" && v != "error")
            {
                return Ok(Outcome::AlreadyScanned("tagged".into()));
            }
        }
        let started = Instant::now();
        // A retry that reuses the recorded verdict keeps the row as it is
        // (`ActionFailed` with its reason) until the actions' outcome is known.
        let reused = reuse.is_some();
        let rec = match reuse {
            Some(r) => {
                tracing::info!(object = %name, id = %r.id, "reusing the recorded verdict; redoing actions");
                r
            }
            None => {
                let extra = |size: u64| {
                    let mut x = serde_json::Map::new();
                    x.insert("bucket".into(), o.bucket.clone().into());
                    x.insert("key".into(), o.key.clone().into());
                    x.insert("version_id".into(), version.clone().into());
                    x.insert("etag".into(), head.etag.clone().into());
                    x.insert("object_size".into(), size.into());
                    x.insert("event_source".into(), o.source.into());
                    x
                };
                if head.size > self.cfg.max_size {
                    self.record_too_large(&name, head.size, &fp, extra(head.size))
                        .await?
                } else {
                    // The GET said how large the body is: one allocation
                    // (up to the spool threshold) instead of doubling copies.
                    let mut spool = Spool::new(
                        self.cfg.spool_threshold,
                        self.cfg.max_size,
                        self.tmp_dir.clone(),
                    )
                    .reserve(head.size);
                    match fetch.read_into(&mut spool, self.cfg.max_size).await {
                        Ok(n) => {
                            metrics::counter!(m::BYTES).increment(n);
                            let _slot = self
                                .scan_slots
                                .acquire()
                                .await
                                .map_err(|e| Failure(format!("scan slots: {e}")))?;
                            let (blob, sha) = spool
                                .finish()
                                .map_err(|e| Failure(format!("spooling {name}: {e}")))?;
                            self.service
                                .scan_with_extra("bucket", &name, blob, sha, extra(head.size))
                                .await
                                .map_err(|e| Failure(format!("scanning {name}: {e}")))?
                        }
                        Err(S3Error::TooLarge { .. }) => {
                            self.record_too_large(&name, head.size, &fp, extra(head.size))
                                .await?
                        }
                        Err(e) if e.is_not_found() => return self.missing(o, &fp).await,
                        Err(e) => return Err(Failure(format!("GET {name}: {e}"))),
                    }
                }
            }
        };
        metrics::histogram!(m::SCAN_SECONDS).record(started.elapsed().as_secs_f64());
        let v = &rec.verdict;
        let mut row = ObjectRow {
            bucket: o.bucket.clone(),
            key: o.key.clone(),
            version: vkey.clone(),
            etag: head.etag.clone(),
            fingerprint: rec.fingerprint.clone(),
            state: ObjectState::Scanned,
            status: v.status.as_str().to_string(),
            reason: v.reason.map(|r| r.as_str().to_string()).unwrap_or_default(),
            record_id: rec.id.clone(),
            action_error: String::new(),
            updated_at: 0,
        };
        if v.status == Status::Error {
            let detail = v
                .engines
                .iter()
                .filter_map(|e| e.detail.clone())
                .collect::<Vec<_>>()
                .join("; ");
            let why = format!("engine error scanning {name}: {detail}");
            row.state = ObjectState::ActionFailed;
            row.action_error = why.clone();
            self.put_row(row).await?;
            return Err(Failure(why));
        }
        if !reused {
            self.put_row(row.clone()).await?;
        }
        if let Err(e) = self.actions(o, version.as_deref(), &rec).await {
            row.state = ObjectState::ActionFailed;
            row.action_error = e.0.clone();
            self.put_row(row).await?;
            return Err(e);
        }
        row.state = ObjectState::Done;
        self.put_row(row).await?;
        if let Some(t) = o.event_ms {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            metrics::histogram!(m::LAG_SECONDS).record((now - t).max(0) as f64 / 1000.0);
        }
        Ok(Outcome::Verdict(v.status))
    }

    async fn missing(&self, o: &ObjectRef, fp: &str) -> Result<Outcome, Failure> {
        tracing::info!(bucket = %o.bucket, key = %o.key, version = ?o.version_id, "object gone before the scan: recorded as missing");
        self.put_row(ObjectRow {
            bucket: o.bucket.clone(),
            key: o.key.clone(),
            version: o.version_id.clone().unwrap_or_default(),
            etag: String::new(),
            fingerprint: fp.to_string(),
            state: ObjectState::Missing,
            status: "missing".into(),
            reason: String::new(),
            record_id: String::new(),
            action_error: String::new(),
            updated_at: 0,
        })
        .await?;
        Ok(Outcome::Missing)
    }

    /// `unscannable/too_large` without fetching: recorded like any verdict.
    async fn record_too_large(
        &self,
        name: &str,
        size: u64,
        fp: &str,
        mut extra: serde_json::Map<String, serde_json::Value>,
    ) -> Result<ScanRecord, Failure> {
        let mut e = EngineReport::new("bucket", Status::Unscannable, Some(Reason::TooLarge));
        e.detail = Some(format!(
            "object is {size} bytes; the limit is {} bytes",
            self.cfg.max_size
        ));
        let v = Verdict::aggregate(vec![e], vec![], String::new(), size, String::new(), 0);
        let action = self.service.policy.action(&v);
        extra.insert("action".into(), serde_json::json!(action));
        let mut rec = ScanRecord::new("bucket", name, fp, false, v);
        rec.extra = serde_json::Value::Object(extra);
        self.service
            .store
            .record(&rec)
            .await
            .map_err(|e| Failure(format!("could not record the scan: {e}")))?;
        tracing::info!(id = %rec.id, name, size, "unscannable: too large");
        Ok(rec)
    }

    /// Tag, then delete or quarantine as the policy says. Idempotent.
    async fn actions(
        &self,
        o: &ObjectRef,
        version: Option<&str>,
        rec: &ScanRecord,
    ) -> Result<(), Failure> {
        let v = &rec.verdict;
        let action = self.service.policy.action(v);
        let destructive = matches!(v.status, Status::Infected | Status::Suspicious)
            && matches!(action, Action::Block | Action::Quarantine);
        let name = format!("s3://{}/{}", o.bucket, o.key);
        if self.cfg.tag.enabled {
            let scanned_at = moat_s3::rfc3339(rec.created_at);
            let tags = self.tagger.tags(v, &rec.fingerprint, &scanned_at);
            match self
                .s3
                .tag(&o.bucket, &o.key, version, &self.tagger, tags)
                .await
            {
                Ok(()) => {}
                // Removed by an earlier attempt of this very action: done.
                Err(e) if e.is_not_found() && destructive => {}
                Err(e) if e.is_not_found() => {
                    metrics::counter!(m::ACTION_ERRORS, "action" => "tag").increment(1);
                    return Err(Failure(format!("tagging {name}: object disappeared")));
                }
                Err(e) => {
                    metrics::counter!(m::ACTION_ERRORS, "action" => "tag").increment(1);
                    return Err(Failure(format!("tagging {name}: {e}")));
                }
            }
        }
        if !destructive {
            return self.notify(o, version, rec).await;
        }
        match action {
            Action::Block => {
                self.s3
                    .delete(&o.bucket, &o.key, version)
                    .await
                    .map_err(|e| {
                        metrics::counter!(m::ACTION_ERRORS, "action" => "delete").increment(1);
                        Failure(format!("deleting {name}: {e}"))
                    })?;
                tracing::info!(object = %name, version = ?version, status = %v.status, "deleted");
            }
            Action::Quarantine => {
                let (db, dk) = self.cfg.quarantine.destination(&o.bucket, &o.key);
                self.s3
                    .quarantine(&o.bucket, &o.key, version, &db, &dk)
                    .await
                    .map_err(|e| {
                        metrics::counter!(m::ACTION_ERRORS, "action" => "quarantine").increment(1);
                        Failure(format!("quarantining {name}: {e}"))
                    })?;
                tracing::info!(object = %name, to = %format!("s3://{db}/{dk}"), status = %v.status, "quarantined");
            }
            _ => {}
        }
        self.notify(o, version, rec).await
    }

    /// The notify webhook and the publishers: after the object actions, so a
    /// receiver never hears of a result whose tag or deletion then failed.
    /// Receivers dedupe on the message's `event_id` when an event is redone.
    async fn notify(
        &self,
        o: &ObjectRef,
        version: Option<&str>,
        rec: &ScanRecord,
    ) -> Result<(), Failure> {
        if self.webhook.is_none() && self.cfg.publish.is_empty() {
            return Ok(());
        }
        let at = std::time::UNIX_EPOCH
            + Duration::from_millis(u64::try_from(rec.created_at).unwrap_or(0));
        let msg =
            moat_notify::ResultMessage::from_verdict(&o.bucket, &o.key, version, &rec.verdict, at);
        let name = format!("s3://{}/{}", o.bucket, o.key);
        if let Some(w) = &self.webhook {
            w.send(&msg).await.map_err(|e| {
                metrics::counter!(m::ACTION_ERRORS, "action" => "notify").increment(1);
                Failure(format!("notifying about {name}: {e}"))
            })?;
        }
        if self.cfg.publish.is_empty() {
            return Ok(());
        }
        let pubs = self
            .publishers
            .get_or_try_init(|| async {
                let mut v = Vec::new();
                for c in &self.cfg.publish {
                    v.push(Publisher::connect(c).await?);
                }
                Ok::<_, moat_notify::NotifyError>(v)
            })
            .await
            .map_err(|e| {
                metrics::counter!(m::ACTION_ERRORS, "action" => "publish").increment(1);
                Failure(format!("connecting the result publishers: {e}"))
            })?;
        for p in pubs {
            p.publish(&msg).await.map_err(|e| {
                metrics::counter!(m::ACTION_ERRORS, "action" => "publish").increment(1);
                Failure(format!("publishing the result for {name}: {e}"))
            })?;
        }
        Ok(())
    }

    /// Settle one delivery: parse, process every object it names, then ack,
    /// retry (with backoff) or dead-letter.
    pub async fn handle(&self, d: Box<dyn Delivery>) {
        let src = d.source();
        m::event(src, "received");
        let attempt = d.attempt();
        if attempt > 1 {
            m::event(src, "redelivered");
        }
        let parsed = match event::parse(d.payload(), &self.quarantine) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(source = src, error = %e, "malformed event: dead-lettering");
                self.settle_dead(d, &e.to_string()).await;
                return;
            }
        };
        if let Some(why) = &parsed.ignored {
            tracing::debug!(source = src, reason = %why, "event ignored");
            m::event(src, "ignored");
            self.settle_ack(d).await;
            return;
        }
        let mut failures = Vec::new();
        let work = async {
            for ev in &parsed.objects {
                if let Disposition::Ignore(why) = &ev.disposition {
                    tracing::debug!(bucket = %ev.bucket, key = %ev.key, event = %ev.event_name, reason = %why, "event ignored");
                    m::event(src, "ignored");
                    continue;
                }
                let o = ObjectRef {
                    bucket: ev.bucket.clone(),
                    key: ev.key.clone(),
                    version_id: ev.version_id.clone(),
                    event_ms: moat_s3::parse_rfc3339_ms(&ev.event_time),
                    source: src,
                };
                match self.process(&o, false).await {
                    Ok(out) => {
                        tracing::debug!(bucket = %o.bucket, key = %o.key, outcome = ?out, "processed")
                    }
                    Err(f) => {
                        tracing::warn!(bucket = %o.bucket, key = %o.key, attempt, error = %f, "processing failed");
                        failures.push(f.0);
                    }
                }
            }
        };
        // Keep the message leased while long scans run.
        let keep = async {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                if let Err(e) = d.keep_alive().await {
                    tracing::warn!(error = %e, "keep-alive failed");
                }
            }
        };
        tokio::select! {
            _ = work => {}
            _ = keep => {}
        }
        if failures.is_empty() {
            if let Some(p) = self.pause_before_ack {
                tracing::warn!(
                    ms = p.as_millis() as u64,
                    "test hook: pausing before the ack"
                );
                tokio::time::sleep(p).await;
            }
            self.settle_ack(d).await;
            return;
        }
        let reason = failures.join("; ");
        if attempt >= self.cfg.retry.max_attempts {
            tracing::error!(source = src, attempt, reason = %reason, "giving up: dead-lettering");
            self.settle_dead(d, &format!("after {attempt} attempts: {reason}"))
                .await;
        } else {
            let delay = self.cfg.retry.delay(attempt);
            m::event(src, "retried");
            if let Err(e) = d.retry(delay).await {
                tracing::warn!(source = src, error = %e, "retry failed; the broker will redeliver");
            }
        }
    }

    async fn settle_ack(&self, d: Box<dyn Delivery>) {
        let src = d.source();
        match d.ack().await {
            Ok(()) => m::event(src, "acked"),
            Err(e) => {
                tracing::warn!(source = src, error = %e, "ack failed; the event will be redelivered (harmless)")
            }
        }
    }

    async fn settle_dead(&self, d: Box<dyn Delivery>, reason: &str) {
        let src = d.source();
        match d.dead_letter(reason).await {
            Ok(()) => m::event(src, "dead_lettered"),
            Err(e) => {
                tracing::warn!(source = src, error = %e, "dead-lettering failed; the event will be redelivered")
            }
        }
    }
}

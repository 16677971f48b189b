//! moat-role: one shape for every role moat runs (the scan API, the edge
//! proxy, the bucket scanner, protocol servers, background tasks).
//!
//! A role is built from its configuration section (binding its listeners and
//! connecting what it needs, so a port in use or a bad address fails start-up
//! before anything serves), then [`Role::run`] runs it until the one
//! [`Shutdown`] fires. While it runs, the [`Supervisor`] asks its
//! [`HealthProbe`] for a [`RoleHealth`], and [`Readiness`] gathers every
//! role's answer into one report (`/readyz`).
//!
//! The cancellation contract (as garage's background workers): on
//! [`Shutdown::cancelled`] a role stops accepting new work at once, finishes
//! what is in flight, and returns. The supervisor waits up to its drain time
//! for every role, then drops what is left.
#![forbid(unsafe_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What a role returns when it fails.
pub type RoleError = Box<dyn std::error::Error + Send + Sync>;

/// The future [`Role::run`] returns.
pub type RoleFuture = Pin<Box<dyn Future<Output = Result<(), RoleError>> + Send>>;

/// A role of the moat process.
pub trait Role: Send {
    /// Short and stable: it names the role in logs and the readiness report.
    fn name(&self) -> &'static str;
    /// Asked (cheaply, without blocking) while the role runs.
    fn health(&self) -> HealthProbe;
    /// Serve until `shutdown` fires, then stop accepting, drain and return.
    /// Returning before the shutdown (with or without an error) stops the
    /// whole process: a role that is not serving must not look as if it were.
    fn run(self: Box<Self>, shutdown: Shutdown) -> RoleFuture;
}

/// One role's readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleHealth {
    pub ready: bool,
    /// What the role is doing ("listening on …") or what is wrong.
    pub detail: String,
}

impl RoleHealth {
    pub fn ready(detail: impl Into<String>) -> RoleHealth {
        RoleHealth {
            ready: true,
            detail: detail.into(),
        }
    }
    pub fn not_ready(detail: impl Into<String>) -> RoleHealth {
        RoleHealth {
            ready: false,
            detail: detail.into(),
        }
    }
}

/// Asks a role for its readiness.
pub type HealthProbe = Arc<dyn Fn() -> RoleHealth + Send + Sync>;

/// A readiness a role sets as it goes (from its `run`), read by its probe.
#[derive(Clone)]
pub struct HealthCell(Arc<Mutex<RoleHealth>>);

impl HealthCell {
    /// Starts not ready with `detail`.
    pub fn new(detail: impl Into<String>) -> HealthCell {
        HealthCell(Arc::new(Mutex::new(RoleHealth::not_ready(detail))))
    }
    pub fn set(&self, h: RoleHealth) {
        match self.0.lock() {
            Ok(mut g) => *g = h,
            Err(p) => *p.into_inner() = h,
        }
    }
    pub fn get(&self) -> RoleHealth {
        match self.0.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
    pub fn probe(&self) -> HealthProbe {
        let c = self.clone();
        Arc::new(move || c.get())
    }
}

/// The one shutdown signal every role of a process shares. Cheap to clone.
#[derive(Clone, Default)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown(CancellationToken::new())
    }
    /// Completes when the shutdown has begun.
    pub async fn cancelled(&self) {
        self.0.cancelled().await
    }
    pub fn is_stopping(&self) -> bool {
        self.0.is_cancelled()
    }
    /// Begin the shutdown (the supervisor does this; tests may too).
    pub fn trigger(&self) {
        self.0.cancel()
    }
    /// The same signal as a `watch` channel that turns `true`, for code
    /// written against one (it follows the signal from a small task).
    pub fn watch(&self) -> tokio::sync::watch::Receiver<bool> {
        let (tx, rx) = tokio::sync::watch::channel(self.is_stopping());
        let me = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = me.cancelled() => { let _ = tx.send(true); }
                _ = tx.closed() => {}
            }
        });
        rx
    }
}

/// Every role's readiness, in start order: the one report `/readyz` serves.
/// Cheap to clone; roles added later appear in reports made after.
#[derive(Clone, Default)]
pub struct Readiness(Arc<RwLock<Board>>);

#[derive(Default)]
struct Board {
    roles: Vec<(&'static str, HealthProbe)>,
    stopping: bool,
}

impl Readiness {
    pub fn new() -> Readiness {
        Readiness::default()
    }
    pub fn register(&self, name: &'static str, probe: HealthProbe) {
        if let Ok(mut b) = self.0.write() {
            b.roles.push((name, probe));
        }
    }
    fn set_stopping(&self) {
        if let Ok(mut b) = self.0.write() {
            b.stopping = true;
        }
    }
    /// Each role's health, in start order.
    pub fn roles(&self) -> Vec<(&'static str, RoleHealth)> {
        let probes: Vec<(&'static str, HealthProbe)> = match self.0.read() {
            Ok(b) => b.roles.clone(),
            Err(_) => Vec::new(),
        };
        probes.into_iter().map(|(n, p)| (n, p())).collect()
    }
    /// Ready when every role is and no shutdown has begun; with the JSON
    /// object `{"<role>": {"ready": …, "detail": …}, …}`.
    pub fn report(&self) -> (bool, serde_json::Value) {
        let stopping = self.0.read().map(|b| b.stopping).unwrap_or(true);
        let mut ok = !stopping;
        let mut map = serde_json::Map::new();
        for (name, h) in self.roles() {
            ok &= h.ready;
            let detail = if stopping {
                format!("shutting down ({})", h.detail)
            } else {
                h.detail
            };
            map.insert(
                name.to_string(),
                serde_json::json!({ "ready": h.ready && !stopping, "detail": detail }),
            );
        }
        (ok, serde_json::Value::Object(map))
    }
}

/// Why the supervisor stopped with an error.
#[derive(Debug)]
pub enum SupervisorError {
    /// A role failed (at start or while serving).
    Failed {
        role: &'static str,
        error: RoleError,
    },
    /// A role returned before the shutdown.
    Stopped { role: &'static str },
}

impl std::fmt::Display for SupervisorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SupervisorError::Failed { role, error } => write!(f, "{role}: {error}"),
            SupervisorError::Stopped { role } => write!(f, "{role}: stopped unexpectedly"),
        }
    }
}

impl std::error::Error for SupervisorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SupervisorError::Failed { error, .. } => Some(error.as_ref()),
            SupervisorError::Stopped { .. } => None,
        }
    }
}

/// Runs the roles of one process under one shutdown and one readiness
/// report (pingora's server with its apps; garage's `server.rs`).
pub struct Supervisor {
    roles: Vec<Box<dyn Role>>,
    readiness: Readiness,
    shutdown: Shutdown,
    drain: Duration,
}

impl Supervisor {
    /// `drain`: how long the roles get to finish in-flight work once the
    /// shutdown begins.
    pub fn new(drain: Duration) -> Supervisor {
        Supervisor {
            roles: Vec::new(),
            readiness: Readiness::new(),
            shutdown: Shutdown::new(),
            drain,
        }
    }

    /// The report every role's health goes into (give it to `/readyz`).
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// The shutdown the roles run under.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Add a built role; roles start in the order they are added.
    pub fn add(&mut self, role: Box<dyn Role>) {
        self.readiness.register(role.name(), role.health());
        self.roles.push(role);
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.roles.iter().map(|r| r.name()).collect()
    }

    /// Start every role, wait for `stop` (SIGTERM/Ctrl-C), a role calling
    /// [`Shutdown::trigger`], or the first role to end, then shut all down: readiness turns false, every role stops
    /// accepting and drains, and whatever has not returned after the drain
    /// time is dropped. The first failure is the result.
    pub async fn run(self, stop: impl Future<Output = ()>) -> Result<(), SupervisorError> {
        let Supervisor {
            roles,
            readiness,
            shutdown,
            drain,
        } = self;
        let mut tasks = tokio::task::JoinSet::new();
        for role in roles {
            let name = role.name();
            tracing::debug!(role = name, "starting role");
            let fut = role.run(shutdown.clone());
            tasks.spawn(async move { (name, fut.await) });
        }
        let mut first: Option<SupervisorError> = None;
        tokio::pin!(stop);
        tokio::select! {
            _ = &mut stop => {
                tracing::info!("shutting down: roles stop accepting and finish in-flight work");
            }
            // A role may begin the shutdown itself (clamd's SHUTDOWN).
            _ = shutdown.cancelled() => {
                tracing::info!("shutdown requested by a role: stopping the others");
            }
            Some(done) = tasks.join_next() => {
                first = if shutdown.is_stopping() {
                    ended_after_stop(done)
                } else {
                    Some(ended(done))
                };
                if let Some(e) = &first {
                    tracing::error!(error = %e, "a role stopped; shutting down the others");
                }
            }
        }
        readiness.set_stopping();
        shutdown.trigger();
        let deadline = tokio::time::Instant::now() + drain;
        loop {
            match tokio::time::timeout_at(deadline, tasks.join_next()).await {
                Ok(Some(done)) => {
                    if let Some(e) = ended_after_stop(done)
                        && first.is_none()
                    {
                        first = Some(e);
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        remaining = tasks.len(),
                        drain_secs = drain.as_secs(),
                        "roles did not finish within the drain time; stopping them"
                    );
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    break;
                }
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

type Joined = Result<(&'static str, Result<(), RoleError>), tokio::task::JoinError>;

/// A role that ended before the shutdown: always an error.
fn ended(done: Joined) -> SupervisorError {
    match done {
        Ok((role, Err(error))) => SupervisorError::Failed { role, error },
        Ok((role, Ok(()))) => SupervisorError::Stopped { role },
        Err(e) => SupervisorError::Failed {
            role: "unknown",
            error: format!("role task: {e}").into(),
        },
    }
}

/// A role that ended after the shutdown began: an error only if it failed.
fn ended_after_stop(done: Joined) -> Option<SupervisorError> {
    match done {
        Ok((role, Err(error))) => {
            tracing::error!(role, error = %error, "role failed while stopping");
            Some(SupervisorError::Failed { role, error })
        }
        Ok((role, Ok(()))) => {
            tracing::debug!(role, "role stopped");
            None
        }
        Err(e) if e.is_cancelled() => None,
        Err(e) => Some(SupervisorError::Failed {
            role: "unknown",
            error: format!("role task: {e}").into(),
        }),
    }
}

/// A role made of a name, a probe and a future builder: for small roles
/// (background tasks) that need no type of their own.
pub struct FnRole<F> {
    name: &'static str,
    probe: HealthProbe,
    run: F,
}

impl<F, Fut> FnRole<F>
where
    F: FnOnce(Shutdown) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), RoleError>> + Send + 'static,
{
    pub fn new(name: &'static str, probe: HealthProbe, run: F) -> Box<FnRole<F>> {
        Box::new(FnRole { name, probe, run })
    }
}

impl<F, Fut> Role for FnRole<F>
where
    F: FnOnce(Shutdown) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), RoleError>> + Send + 'static,
{
    fn name(&self) -> &'static str {
        self.name
    }
    fn health(&self) -> HealthProbe {
        self.probe.clone()
    }
    fn run(self: Box<Self>, shutdown: Shutdown) -> RoleFuture {
        Box::pin((self.run)(shutdown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn always_ready() -> HealthProbe {
        Arc::new(|| RoleHealth::ready("ok"))
    }

    #[tokio::test]
    async fn every_role_drains_on_the_one_shutdown_and_readiness_turns_false() {
        let drained = Arc::new(AtomicBool::new(false));
        let mut sup = Supervisor::new(Duration::from_secs(5));
        let d = drained.clone();
        sup.add(FnRole::new(
            "a",
            always_ready(),
            move |s: Shutdown| async move {
                s.cancelled().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                d.store(true, Ordering::SeqCst);
                Ok(())
            },
        ));
        let cell = HealthCell::new("starting");
        let c2 = cell.clone();
        sup.add(FnRole::new(
            "b",
            cell.probe(),
            move |s: Shutdown| async move {
                c2.set(RoleHealth::ready("listening"));
                s.cancelled().await;
                Ok(())
            },
        ));
        let readiness = sup.readiness();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(sup.run(async move {
            let _ = rx.await;
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (ok, report) = readiness.report();
        assert!(ok, "{report}");
        assert_eq!(report["b"]["detail"], "listening");
        tx.send(()).unwrap();
        run.await.unwrap().unwrap();
        assert!(drained.load(Ordering::SeqCst), "role a finished its drain");
        let (ok, report) = readiness.report();
        assert!(!ok);
        assert_eq!(report["a"]["ready"], false);
    }

    #[tokio::test]
    async fn one_failing_role_stops_the_others_and_is_the_error() {
        let mut sup = Supervisor::new(Duration::from_secs(5));
        let stopped = Arc::new(AtomicBool::new(false));
        let st = stopped.clone();
        sup.add(FnRole::new(
            "ok",
            always_ready(),
            move |s: Shutdown| async move {
                s.cancelled().await;
                st.store(true, Ordering::SeqCst);
                Ok(())
            },
        ));
        sup.add(FnRole::new("bad", always_ready(), |_s: Shutdown| async {
            Err::<(), RoleError>("port in use".into())
        }));
        let e = sup.run(std::future::pending()).await.unwrap_err();
        assert_eq!(e.to_string(), "bad: port in use");
        assert!(stopped.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_role_returning_early_is_an_error() {
        let mut sup = Supervisor::new(Duration::from_secs(5));
        sup.add(FnRole::new(
            "quitter",
            always_ready(),
            |_s: Shutdown| async { Ok(()) },
        ));
        let e = sup.run(std::future::pending()).await.unwrap_err();
        assert!(matches!(e, SupervisorError::Stopped { role: "quitter" }));
    }

    #[tokio::test(start_paused = true)]
    async fn a_role_that_ignores_the_shutdown_is_dropped_after_the_drain_time() {
        let mut sup = Supervisor::new(Duration::from_secs(3));
        sup.add(FnRole::new("stuck", always_ready(), |_s: Shutdown| async {
            std::future::pending::<()>().await;
            Ok(())
        }));
        let started = tokio::time::Instant::now();
        sup.run(async {}).await.unwrap();
        assert!(started.elapsed() >= Duration::from_secs(3));
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    #[tokio::test]
    async fn a_role_may_begin_the_shutdown_itself() {
        let mut sup = Supervisor::new(Duration::from_secs(5));
        sup.add(FnRole::new(
            "stopper",
            always_ready(),
            |s: Shutdown| async move {
                s.trigger();
                Ok(())
            },
        ));
        sup.add(FnRole::new(
            "other",
            always_ready(),
            |s: Shutdown| async move {
                s.cancelled().await;
                Ok(())
            },
        ));
        sup.run(std::future::pending()).await.unwrap();
    }

    #[tokio::test]
    async fn the_watch_view_follows_the_shutdown() {
        let s = Shutdown::new();
        let mut rx = s.watch();
        assert!(!*rx.borrow());
        s.trigger();
        rx.changed().await.unwrap();
        assert!(*rx.borrow());
    }
}

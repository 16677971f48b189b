//! Upstream pools: weighted round-robin (nginx's smooth algorithm) or
//! least-connections, backup servers, passive health (`max_fails` within
//! `fail_timeout` takes a server out for `fail_timeout`) and active checks.

use crate::config::{Balance, PoolConfig};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const UPSTREAM_UP: &str = "moat_proxy_upstream_up";
pub const REQUESTS: &str = "moat_proxy_requests_total";
pub const REQUEST_SECONDS: &str = "moat_proxy_request_duration_seconds";
pub const UPSTREAM_SECONDS: &str = "moat_proxy_upstream_duration_seconds";
pub const RETRIES: &str = "moat_proxy_upstream_retries_total";

/// `http://host:port` → (authority, base URL without trailing slash).
pub fn parse_upstream(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("upstream {url:?}: only http:// upstreams are supported"))?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(format!(
            "upstream {url:?}: give scheme://host:port without a path"
        ));
    }
    Ok(authority.to_string())
}

#[derive(Debug)]
pub struct Server {
    pub url: String,
    /// `host:port`, what connections are pooled by.
    pub authority: std::sync::Arc<str>,
    /// `authority` as a Host header, for requests that came without one.
    pub host_header: hyper::header::HeaderValue,
    pub weight: u32,
    pub backup: bool,
    /// Requests in flight to this server.
    active: AtomicU64,
    pub requests: AtomicU64,
    pub failures: AtomicU64,
    /// Last active check result (true until a check says otherwise).
    active_up: AtomicBool,
    passive: Mutex<Passive>,
}

#[derive(Debug, Default)]
struct Passive {
    fails: u32,
    window_start: Option<Instant>,
    down_until: Option<Instant>,
}

impl Server {
    fn passive_down(&self, now: Instant) -> bool {
        let p = self.passive.lock().unwrap_or_else(|e| e.into_inner());
        p.down_until.is_some_and(|t| now < t)
    }

    pub fn is_up(&self) -> bool {
        self.active_up.load(Ordering::Relaxed) && !self.passive_down(Instant::now())
    }
}

/// Held while a request is in flight to a server (least-connections).
pub struct InFlight {
    pool: Arc<Pool>,
    index: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.pool.servers[self.index]
            .active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub struct Pool {
    pub name: String,
    pub servers: Vec<Server>,
    pub cfg: PoolConfig,
    /// Smooth weighted round-robin state, one per server.
    current: Mutex<Vec<i64>>,
    /// Metric handles, registered on first use (after the recorder is
    /// installed) so the request path does not look labels up every time.
    handles: OnceLock<Handles>,
}

#[derive(Debug)]
pub struct Handles {
    pub request_seconds: metrics::Histogram,
    pub upstream_seconds: metrics::Histogram,
    pub retries: metrics::Counter,
    /// `moat_proxy_requests_total` by status code.
    requests: Mutex<HashMap<u16, metrics::Counter>>,
}

impl Handles {
    pub fn count_request(&self, pool: &str, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(status)
            .or_insert_with(|| {
                metrics::counter!(REQUESTS, "pool" => pool.to_string(), "status" => status.to_string())
            })
            .increment(1);
    }
}

impl Pool {
    pub fn new(name: &str, cfg: &PoolConfig) -> Result<Pool, String> {
        let mut servers = Vec::new();
        for s in &cfg.servers {
            let authority = parse_upstream(&s.url)?;
            // A valid authority is also a valid Host header value.
            authority
                .parse::<hyper::http::uri::Authority>()
                .map_err(|e| format!("upstream {:?}: {e}", s.url))?;
            let host_header = hyper::header::HeaderValue::from_str(&authority)
                .map_err(|e| format!("upstream {:?}: {e}", s.url))?;
            servers.push(Server {
                authority: authority.into(),
                host_header,
                url: s.url.trim_end_matches('/').to_string(),
                weight: s.weight.max(1),
                backup: s.backup,
                active: AtomicU64::new(0),
                requests: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                active_up: AtomicBool::new(true),
                passive: Mutex::new(Passive::default()),
            });
        }
        let pool = Pool {
            name: name.to_string(),
            current: Mutex::new(vec![0; servers.len()]),
            servers,
            cfg: cfg.clone(),
            handles: OnceLock::new(),
        };
        for s in &pool.servers {
            pool.gauge(s);
        }
        Ok(pool)
    }

    /// This pool's metric handles.
    pub fn metrics(&self) -> &Handles {
        self.handles.get_or_init(|| Handles {
            request_seconds: metrics::histogram!(REQUEST_SECONDS, "pool" => self.name.clone()),
            upstream_seconds: metrics::histogram!(UPSTREAM_SECONDS, "pool" => self.name.clone()),
            retries: metrics::counter!(RETRIES, "pool" => self.name.clone()),
            requests: Mutex::new(HashMap::new()),
        })
    }

    fn gauge(&self, s: &Server) {
        metrics::gauge!(UPSTREAM_UP, "pool" => self.name.clone(), "server" => s.url.clone())
            .set(if s.is_up() { 1.0 } else { 0.0 });
    }

    /// Pick a server not in `tried`: healthy primaries first, then healthy
    /// backups. When nothing is healthy, the least recently failed primary is
    /// tried anyway (a pool never refuses outright while it has untried servers).
    pub fn pick(&self, tried: &[usize]) -> Option<usize> {
        let now = Instant::now();
        let healthy = |i: &usize| {
            let s = &self.servers[*i];
            !tried.contains(i) && s.active_up.load(Ordering::Relaxed) && !s.passive_down(now)
        };
        let primaries: Vec<usize> = (0..self.servers.len())
            .filter(|i| !self.servers[*i].backup)
            .filter(healthy)
            .collect();
        let cands = if primaries.is_empty() {
            (0..self.servers.len())
                .filter(|i| self.servers[*i].backup)
                .filter(healthy)
                .collect()
        } else {
            primaries
        };
        if cands.is_empty() {
            return (0..self.servers.len())
                .filter(|i| !tried.contains(i))
                .min_by_key(|i| {
                    let p = self.servers[*i]
                        .passive
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    (self.servers[*i].backup, p.down_until)
                });
        }
        Some(match self.cfg.balance {
            Balance::LeastConn => *cands.iter().min_by(|a, b| {
                let (sa, sb) = (&self.servers[**a], &self.servers[**b]);
                let la = sa.active.load(Ordering::Relaxed) * u64::from(sb.weight);
                let lb = sb.active.load(Ordering::Relaxed) * u64::from(sa.weight);
                la.cmp(&lb)
            })?,
            Balance::RoundRobin => {
                let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
                let total: i64 = cands
                    .iter()
                    .map(|i| i64::from(self.servers[*i].weight))
                    .sum();
                let mut best = cands[0];
                for &i in &cands {
                    cur[i] += i64::from(self.servers[i].weight);
                    if cur[i] > cur[best] {
                        best = i;
                    }
                }
                cur[best] -= total;
                best
            }
        })
    }

    pub fn begin(self: &Arc<Self>, i: usize) -> InFlight {
        let s = &self.servers[i];
        s.active.fetch_add(1, Ordering::Relaxed);
        s.requests.fetch_add(1, Ordering::Relaxed);
        InFlight {
            pool: self.clone(),
            index: i,
        }
    }

    /// A failed attempt (connect error, reset, timeout before the response head).
    pub fn fail(&self, i: usize) {
        let s = &self.servers[i];
        s.failures.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let window = Duration::from_secs(self.cfg.fail_timeout_secs);
        let newly_down = {
            let mut p = s.passive.lock().unwrap_or_else(|e| e.into_inner());
            if p.window_start
                .is_none_or(|t| now.duration_since(t) > window)
            {
                p.window_start = Some(now);
                p.fails = 0;
            }
            p.fails += 1;
            if p.fails >= self.cfg.max_fails && p.down_until.is_none_or(|t| now >= t) {
                p.down_until = Some(now + window);
                p.fails = 0;
                p.window_start = None;
                true
            } else {
                false
            }
        };
        if newly_down {
            tracing::warn!(pool = %self.name, server = %s.url, secs = self.cfg.fail_timeout_secs, "upstream marked down (passive)");
        }
        self.gauge(s);
    }

    /// Active check result.
    pub fn set_active(&self, i: usize, up: bool) {
        let s = &self.servers[i];
        let was = s.active_up.swap(up, Ordering::Relaxed);
        if up {
            // A passing check ends a passive ban early: the server is back.
            let mut p = s.passive.lock().unwrap_or_else(|e| e.into_inner());
            if p.down_until.take().is_some() {
                tracing::info!(pool = %self.name, server = %s.url, "upstream back up (active check)");
            }
            p.fails = 0;
        }
        if was != up {
            if up {
                tracing::info!(pool = %self.name, server = %s.url, "active health check passing");
            } else {
                tracing::warn!(pool = %self.name, server = %s.url, "active health check failing: upstream out");
            }
        }
        self.gauge(s);
    }

    pub fn status_json(&self) -> serde_json::Value {
        let now = Instant::now();
        serde_json::json!({
            "name": self.name,
            "servers": self.servers.iter().map(|s| serde_json::json!({
                "url": s.url,
                "weight": s.weight,
                "backup": s.backup,
                "up": s.is_up(),
                "active_check_up": s.active_up.load(Ordering::Relaxed),
                "passive_down": s.passive_down(now),
                "in_flight": s.active.load(Ordering::Relaxed),
                "requests": s.requests.load(Ordering::Relaxed),
                "failures": s.failures.load(Ordering::Relaxed),
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerConfig;

    fn pool(balance: Balance, servers: &[(u32, bool)]) -> Pool {
        let cfg = PoolConfig {
            servers: servers
                .iter()
                .enumerate()
                .map(|(i, (w, b))| ServerConfig {
                    url: format!("http://127.0.0.1:{}", 1000 + i),
                    weight: *w,
                    backup: *b,
                })
                .collect(),
            balance,
            max_fails: 2,
            fail_timeout_secs: 60,
            health: None,
        };
        Pool::new("t", &cfg).unwrap()
    }

    #[test]
    fn weighted_round_robin_is_smooth() {
        let p = pool(Balance::RoundRobin, &[(5, false), (1, false), (1, false)]);
        let picks: Vec<usize> = (0..7).map(|_| p.pick(&[]).unwrap()).collect();
        assert_eq!(picks.iter().filter(|i| **i == 0).count(), 5);
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn backups_only_when_primaries_are_down_and_passive_marking() {
        let p = pool(Balance::RoundRobin, &[(1, false), (1, true)]);
        for _ in 0..4 {
            assert_eq!(p.pick(&[]), Some(0));
        }
        p.fail(0);
        assert_eq!(p.pick(&[]), Some(0), "one failure is below max_fails");
        p.fail(0);
        assert!(!p.servers[0].is_up());
        assert_eq!(p.pick(&[]), Some(1));
        assert_eq!(
            p.pick(&[1]),
            Some(0),
            "nothing healthy left: try the primary anyway"
        );
        p.set_active(0, true);
        assert!(p.servers[0].is_up(), "a passing active check ends the ban");
        p.set_active(0, false);
        assert_eq!(p.pick(&[]), Some(1));
    }

    #[test]
    fn least_connections_by_weight() {
        let p = Arc::new(pool(Balance::LeastConn, &[(1, false), (2, false)]));
        let _a = p.begin(0);
        assert_eq!(p.pick(&[]), Some(1));
        let _b = p.begin(1);
        let _c = p.begin(1);
        // 1/1 vs 2/2: tie, first wins.
        assert_eq!(p.pick(&[]), Some(0));
        assert_eq!(p.pick(&[0]), Some(1));
    }
}

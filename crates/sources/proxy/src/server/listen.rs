//! Listening: binding, accepting and handing connections to the worker
//! threads, serving one connection (TLS handshake, then hyper or the fast
//! path), active health checks, and the admin listener.

use super::*;

impl Proxy {
    /// Bind every listener (so a port in use fails start-up), then serve
    /// them, the health checks and the admin listener until the future is
    /// dropped.
    ///
    /// With `workers` > 0 (default: one per CPU) connections are served by
    /// that many threads, each with its own single-threaded runtime and its
    /// own upstream connections, so a request and its upstream exchange stay
    /// on one thread. The listeners are accepted on the calling runtime,
    /// which hands each new connection to the worker with the fewest open
    /// ones: letting workers race for the socket (or `SO_REUSEPORT`) left
    /// one worker with most of a burst of keep-alive connections while the
    /// other idled. Health checks and the admin listener run on the calling
    /// runtime; scans on each worker's blocking pool. With 0, everything
    /// runs on the calling runtime.
    pub async fn run(self, metrics: Option<MetricsRender>) -> Result<(), ProxyError> {
        let workers = self
            .0
            .cfg
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let mut bound = Vec::new();
        for (i, l) in self.0.cfg.listeners.iter().enumerate() {
            let tcp = listen(l.listen).map_err(|e| ProxyError::Bind(l.listen, e))?;
            let tls = match &self.0.certs[i] {
                Some(c) => Some(c.server_config().map_err(ProxyError::Tls)?),
                None => None,
            };
            tracing::info!(listen = %tcp.local_addr().unwrap_or(l.listen), tls = tls.is_some(), workers, "proxy listening");
            bound.push((tcp, tls));
        }
        let admin = match self.0.cfg.admin_listen {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .map_err(|e| ProxyError::Bind(a, e))?,
            ),
            None => None,
        };
        for p in &self.0.pools {
            if p.cfg.health.is_some() {
                tokio::spawn(health_loop(self.1.clone(), p.clone()));
            }
        }
        let mut tasks: tokio::task::JoinSet<Result<(), ProxyError>> = tokio::task::JoinSet::new();
        if let Some(a) = admin {
            tracing::info!(listen = %a.local_addr().map(|x| x.to_string()).unwrap_or_default(), "proxy admin listening");
            let this = self.clone();
            tasks.spawn(async move {
                this.admin_loop(a, metrics).await;
                Ok(())
            });
        }
        if workers == 0 {
            for (std, tls) in bound {
                let tcp = TcpListener::from_std(std)
                    .map_err(|e| ProxyError::Worker(format!("listener: {e}")))?;
                let this = self.clone();
                tasks.spawn(async move {
                    this.accept_loop(tcp, tls).await;
                    Ok(())
                });
            }
        } else {
            let tls: Vec<_> = bound.iter().map(|(_, t)| t.clone()).collect();
            let mut handles = Vec::new();
            for w in 0..workers {
                let (conns, rx) = tokio::sync::mpsc::unbounded_channel();
                let open = Arc::new(AtomicUsize::new(0));
                handles.push(WorkerHandle {
                    conns,
                    open: open.clone(),
                });
                let (inner, tls) = (self.0.clone(), tls.clone());
                let (tx, done) = tokio::sync::oneshot::channel();
                std::thread::Builder::new()
                    .name(format!("moat-proxy-{w}"))
                    .spawn(move || {
                        let _ = tx.send(worker(inner, tls, rx, open));
                    })
                    .map_err(|e| ProxyError::Worker(format!("starting thread {w}: {e}")))?;
                // A worker only ends on a start-up failure or a panic: the
                // proxy stops rather than serve a share of connections nowhere.
                tasks.spawn(async move {
                    Err(match done.await {
                        Ok(Err(e)) => e,
                        Ok(Ok(())) => ProxyError::Worker(format!("worker {w} stopped")),
                        Err(_) => ProxyError::Worker(format!("worker {w} panicked")),
                    })
                });
            }
            let handles: Arc<[WorkerHandle]> = handles.into();
            for (listener, (std, _)) in bound.into_iter().enumerate() {
                let tcp = TcpListener::from_std(std)
                    .map_err(|e| ProxyError::Worker(format!("listener: {e}")))?;
                tasks.spawn(hand_out(tcp, listener, handles.clone()));
            }
        }
        while let Some(r) = tasks.join_next().await {
            if let Ok(Err(e)) = r {
                return Err(e);
            }
        }
        Ok(())
    }

    pub(super) async fn accept_loop(
        self,
        tcp: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) {
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        loop {
            let Some((sock, peer)) = accept(&tcp).await else {
                continue;
            };
            tokio::spawn(self.clone().serve_socket(sock, peer, acceptor.clone()));
        }
    }

    /// One accepted connection: the TLS handshake (within the client
    /// timeout) if the listener has TLS, then HTTP until it closes.
    pub(super) async fn serve_socket(
        self,
        sock: tokio::net::TcpStream,
        peer: SocketAddr,
        acceptor: Option<tokio_rustls::TlsAcceptor>,
    ) {
        let hs = Duration::from_secs(self.0.cfg.client_timeout_secs);
        match acceptor {
            Some(acc) => match tokio::time::timeout(hs, acc.accept(sock)).await {
                Ok(Ok(s)) => self.serve_conn(Bytes::new(), s, peer, true).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            },
            None if self.0.cfg.fast_path => self.serve_plain(sock, peer).await,
            None => self.serve_conn(Bytes::new(), sock, peer, false).await,
        }
    }

    /// Serve HTTP on one client connection (after `pre`, bytes already read
    /// from it) until it closes; the close lingers (see [`crate::linger`])
    /// unless the connection was upgraded.
    pub(crate) async fn serve_conn<I>(self, pre: Bytes, io: I, peer: SocketAddr, tls: bool)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let upgraded = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let io = TokioIo::new(crate::linger::Linger::new(pre, io, upgraded.clone()));
        let cfg = &self.0.cfg;
        let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        b.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(cfg.client_timeout_secs))
            .max_buf_size(cfg.max_header_size.max(8192))
            .keep_alive(true);
        b.http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(cfg.max_header_size).unwrap_or(u32::MAX));
        let this = self.clone();
        let svc = hyper::service::service_fn(move |req| {
            let this = this.clone();
            let upgraded = upgraded.clone();
            async move {
                let resp = this.handle(req, peer, tls).await;
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    upgraded.store(true, Ordering::Relaxed);
                }
                Ok::<_, Infallible>(resp)
            }
        });
        if let Err(e) = b.serve_connection_with_upgrades(io, svc).await {
            tracing::debug!(%peer, error = %e, "client connection ended with an error");
        }
    }

    pub(super) async fn admin_loop(self, tcp: TcpListener, metrics: Option<MetricsRender>) {
        loop {
            let Ok((sock, _)) = tcp.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let this = self.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let this = this.clone();
                    let metrics = metrics.clone();
                    async move {
                        let r = match req.uri().path() {
                            "/healthz" => text(StatusCode::OK, "ok\n".into()),
                            "/status" => json(StatusCode::OK, &this.status_json()),
                            "/metrics" => match &metrics {
                                Some(m) => text(StatusCode::OK, m()),
                                None => text(StatusCode::NOT_FOUND, "metrics are off\n".into()),
                            },
                            _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
                        };
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    }
}

/// A listening socket, as a std listener so that any runtime can take it.
pub(super) fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(1024)?.into_std()
}

/// The next connection, with Nagle off; `None` after a failed accept (out
/// of file descriptors, say), which is logged and paced.
pub(super) async fn accept(tcp: &TcpListener) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    match tcp.accept().await {
        Ok((sock, peer)) => {
            let _ = sock.set_nodelay(true);
            Some((sock, peer))
        }
        Err(e) => {
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// A connection accepted for a worker: the socket (left non-blocking),
/// the peer and which listener it came in on.
pub(super) struct Accepted {
    sock: std::net::TcpStream,
    peer: SocketAddr,
    listener: usize,
}

/// How the acceptor reaches one worker, and how many connections it holds.
pub(super) struct WorkerHandle {
    conns: tokio::sync::mpsc::UnboundedSender<Accepted>,
    open: Arc<AtomicUsize>,
}

/// Accept on one listener and give each connection to the worker holding
/// the fewest (ties in turn).
pub(super) async fn hand_out(
    tcp: TcpListener,
    listener: usize,
    workers: Arc<[WorkerHandle]>,
) -> Result<(), ProxyError> {
    let n = workers.len();
    let mut next = 0;
    loop {
        let Some((sock, peer)) = accept(&tcp).await else {
            continue;
        };
        let w = (0..n)
            .map(|k| (next + k) % n)
            .min_by_key(|&i| workers[i].open.load(Ordering::Relaxed))
            .unwrap_or(0);
        next = (w + 1) % n;
        let sock = match sock.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "handing a connection to a worker failed");
                continue;
            }
        };
        workers[w].open.fetch_add(1, Ordering::Relaxed);
        let a = Accepted {
            sock,
            peer,
            listener,
        };
        if workers[w].conns.send(a).is_err() {
            return Err(ProxyError::Worker(format!("worker {w} stopped")));
        }
    }
}

/// Counts a connection against its worker until dropped.
pub(super) struct Held(Arc<AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One proxy worker thread: a single-threaded runtime with its own
/// upstream client, serving the connections the acceptor hands it until
/// the process ends.
pub(super) fn worker(
    inner: Arc<Inner>,
    tls: Vec<Option<Arc<rustls::ServerConfig>>>,
    mut conns: tokio::sync::mpsc::UnboundedReceiver<Accepted>,
    open: Arc<AtomicUsize>,
) -> Result<(), ProxyError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ProxyError::Worker(format!("runtime: {e}")))?;
    rt.block_on(async move {
        let client = upstream_client(&inner.cfg);
        let this = Proxy(inner, client);
        let acceptors: Vec<_> = tls
            .into_iter()
            .map(|t| t.map(tokio_rustls::TlsAcceptor::from))
            .collect();
        while let Some(a) = conns.recv().await {
            let held = Held(open.clone());
            let sock = match tokio::net::TcpStream::from_std(a.sock) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(peer = %a.peer, error = %e, "taking over a connection failed");
                    continue;
                }
            };
            let acceptor = acceptors.get(a.listener).cloned().flatten();
            let this = this.clone();
            tokio::spawn(async move {
                let _held = held;
                this.serve_socket(sock, a.peer, acceptor).await;
            });
        }
        Ok(())
    })
}

pub(super) async fn health_loop(client: Upstream, pool: Arc<Pool>) {
    let Some(h) = pool.cfg.health.clone() else {
        return;
    };
    loop {
        for (i, s) in pool.servers.iter().enumerate() {
            let req = Request::get(h.path.as_str())
                .header(header::HOST, s.host_header.clone())
                .header(header::USER_AGENT, "moat-proxy-health")
                .body(body::empty());
            let up = match req {
                Ok(req) => matches!(
                    tokio::time::timeout(Duration::from_secs(h.timeout_secs.max(1)), client.send(&s.authority, req)).await,
                    Ok(Ok((r, _))) if r.status().as_u16() == h.expect_status
                ),
                Err(_) => false,
            };
            pool.set_active(i, up);
        }
        tokio::time::sleep(Duration::from_secs(h.interval_secs)).await;
    }
}

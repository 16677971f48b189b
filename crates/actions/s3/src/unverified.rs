//! The HTTP client for `tls_verify = false`: HTTPS without checking the
//! server's certificate chain or name (a lab MinIO with a throw-away
//! certificate). The handshake signatures are still checked, so the session
//! is encrypted to whoever holds the presented certificate's key; what is
//! skipped is only the question of who that is. The AWS SDK's own client has
//! no such switch, so this one is hyper-util's pooled client with a rustls
//! config that accepts any certificate, behind the SDK's connector traits.

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Https = hyper_rustls::HttpsConnector<TcpConnector>;

/// Accepts any certificate chain and name; checks handshake signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// An [`HttpClient`] whose connectors skip certificate verification. One
/// pooled hyper client per (connect, read) timeout pair the SDK asks for
/// (in practice one), so connections are reused across requests.
#[derive(Debug)]
pub(crate) struct UnverifiedClient {
    tls: rustls::ClientConfig,
    clients: Mutex<Vec<(Timeouts, SharedHttpConnector)>>,
}

/// Connect and read timeouts: what a cached connector is built with.
type Timeouts = (Option<Duration>, Option<Duration>);

impl UnverifiedClient {
    pub(crate) fn new() -> Result<UnverifiedClient, rustls::Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        Ok(UnverifiedClient {
            tls,
            clients: Mutex::new(Vec::new()),
        })
    }

    fn build(&self, (connect_timeout, read_timeout): Timeouts) -> Hyper {
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(connect_timeout);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(self.tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        Hyper {
            client: Client::builder(TokioExecutor::new()).build(https),
            read_timeout,
        }
    }
}

impl HttpClient for UnverifiedClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        let mut clients = match self.clients.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some((_, c)) = clients.iter().find(|(k, _)| *k == key) {
            return c.clone();
        }
        let c = SharedHttpConnector::new(self.build(key));
        clients.push((key, c.clone()));
        c
    }
}

#[derive(Debug, Clone)]
struct Hyper {
    client: Client<Https, SdkBody>,
    read_timeout: Option<Duration>,
}

impl HttpConnector for Hyper {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let req = match request.try_into_http1x() {
            Ok(r) => r,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let this = self.clone();
        HttpConnectorFuture::new(async move {
            let send = this.client.request(req);
            let resp = match this.read_timeout {
                Some(t) => tokio::time::timeout(t, send).await.map_err(|_| {
                    ConnectorError::timeout(format!("no response within {t:?}").into())
                })?,
                None => send.await,
            }
            .map_err(|e| {
                if e.is_connect() {
                    ConnectorError::io(e.into())
                } else {
                    ConnectorError::other(e.into(), None)
                }
            })?;
            let (parts, body) = resp.into_parts();
            let resp = http::Response::from_parts(parts, SdkBody::from_body_1_x(body));
            HttpResponse::try_from(resp).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

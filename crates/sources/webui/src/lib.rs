//! The web UI, served at `/` of the API listener beside the portal's JSON
//! API. Pages are askama templates compiled into the binary; each renders
//! the page's structure (landmarks, labelled forms, headings), and one small
//! script (`static/app.js`, no framework) fills in the data from the JSON
//! API (`/v1/portal/*`, `/v1/scans`, `/v1/engines`, `/v1/stats/*`, `/readyz`) with the
//! same session cookie and CSRF token as any other client, polling where
//! state changes (packages scanning, the dashboard). Everything the pages
//! load is compiled in (`include_bytes!`), including the vendored
//! tus-js-client, and every response carries a strict Content-Security-Policy
//! (no inline script or style, nothing from another origin).
#![forbid(unsafe_code)]

use askama::Template;
use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

/// The Content-Security-Policy of every UI response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Which navigation entry a page belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nav {
    None,
    Packages,
    New,
    Dashboard,
    Quarantine,
    Users,
    Audit,
    Settings,
}

#[derive(Template)]
#[template(path = "login.html")]
struct Login {
    title: &'static str,
    page: &'static str,
    nav: Nav,
}

#[derive(Template)]
#[template(path = "reset.html")]
struct Reset {
    title: &'static str,
    page: &'static str,
    nav: Nav,
}

#[derive(Template)]
#[template(path = "packages.html")]
struct Packages {
    title: &'static str,
    page: &'static str,
    nav: Nav,
}

#[derive(Template)]
#[template(path = "new.html")]
struct NewPackage {
    title: &'static str,
    page: &'static str,
    nav: Nav,
}

#[derive(Template)]
#[template(path = "package.html")]
struct PackagePage {
    title: &'static str,
    page: &'static str,
    nav: Nav,
    id: String,
}

#[derive(Template)]
#[template(path = "recipient.html")]
struct Recipient {
    title: &'static str,
    page: &'static str,
    nav: Nav,
    token: String,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    title: &'static str,
    page: &'static str,
    nav: Nav,
}

#[derive(Template)]
#[template(path = "quarantine.html")]
struct Quarantine {
    title: &'static str,
    page: &'static str,
    nav: Nav,
}

#[derive(Template)]
#[template(path = "users.html")]
struct Users {
    title: &'static str,
    page: &'static str,
    nav: Nav,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct Audit {
    title: &'static str,
    page: &'static str,
    nav: Nav,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    title: &'static str,
    page: &'static str,
    nav: Nav,
}

fn render<T: Template>(t: T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page");
            (StatusCode::INTERNAL_SERVER_ERROR, "page rendering failed\n").into_response()
        }
    }
}

/// An id or token taken from the path, kept only if it is made of the
/// characters ids and link tokens use (anything else cannot be one).
fn path_token(s: &str) -> Option<String> {
    (!s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then(|| s.to_string())
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

struct Asset {
    path: &'static str,
    mime: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "app.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../static/app.js"),
    },
    Asset {
        path: "app.css",
        mime: "text/css; charset=utf-8",
        body: include_bytes!("../static/app.css"),
    },
    Asset {
        path: "vendor/tus.min.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../static/vendor/tus.min.js"),
    },
];

async fn asset(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.path == path) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.mime),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            a.body,
        )
            .into_response(),
        None => not_found(),
    }
}

/// Security headers on every UI response.
async fn headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Link tokens are in the recipient page's URL: never send it on.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// The UI's routes (pages at `/`, `/login`, `/reset`, `/packages`, `/p/{token}`,
/// `/admin/*`: dashboard, quarantine, users, audit, settings; assets under `/static/`), to be merged beside the portal's.
pub fn router() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/packages") }),
        )
        .route(
            "/login",
            get(|| async {
                render(Login {
                    title: "Sign in",
                    page: "login",
                    nav: Nav::None,
                })
            }),
        )
        .route(
            "/reset",
            get(|| async {
                render(Reset {
                    title: "Choose a new password",
                    page: "reset",
                    nav: Nav::None,
                })
            }),
        )
        .route(
            "/packages",
            get(|| async {
                render(Packages {
                    title: "My packages",
                    page: "packages",
                    nav: Nav::Packages,
                })
            }),
        )
        .route(
            "/packages/new",
            get(|| async {
                render(NewPackage {
                    title: "New package",
                    page: "new",
                    nav: Nav::New,
                })
            }),
        )
        .route(
            "/packages/{id}",
            get(|Path(id): Path<String>| async move {
                match path_token(&id) {
                    Some(id) => render(PackagePage {
                        title: "Package",
                        page: "package",
                        nav: Nav::Packages,
                        id,
                    }),
                    None => not_found(),
                }
            }),
        )
        .route(
            "/p/{token}",
            get(|Path(token): Path<String>| async move {
                match path_token(&token) {
                    Some(token) => render(Recipient {
                        title: "Files shared with you",
                        page: "recipient",
                        nav: Nav::None,
                        token,
                    }),
                    None => not_found(),
                }
            }),
        )
        .route(
            "/admin",
            get(|| async {
                render(Dashboard {
                    title: "Dashboard",
                    page: "dashboard",
                    nav: Nav::Dashboard,
                })
            }),
        )
        .route(
            "/admin/quarantine",
            get(|| async {
                render(Quarantine {
                    title: "Quarantine",
                    page: "quarantine",
                    nav: Nav::Quarantine,
                })
            }),
        )
        .route(
            "/admin/users",
            get(|| async {
                render(Users {
                    title: "Users",
                    page: "users",
                    nav: Nav::Users,
                })
            }),
        )
        .route(
            "/admin/audit",
            get(|| async {
                render(Audit {
                    title: "Audit log",
                    page: "audit",
                    nav: Nav::Audit,
                })
            }),
        )
        .route(
            "/admin/settings",
            get(|| async {
                render(SettingsPage {
                    title: "Settings",
                    page: "settings",
                    nav: Nav::Settings,
                })
            }),
        )
        .route("/static/{*path}", get(asset))
        .layer(middleware::from_fn(headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_tokens_admit_ids_and_link_tokens_only() {
        assert!(path_token("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").is_some());
        assert!(path_token("AbC_-09").is_some());
        assert!(path_token("").is_none());
        assert!(path_token("a\"><script>").is_none());
        assert!(path_token(&"a".repeat(129)).is_none());
    }

    #[test]
    fn pages_escape_and_link_only_local_assets() {
        let html = Recipient {
            title: "t",
            page: "recipient",
            nav: Nav::None,
            token: "x\"<y".into(),
        }
        .render()
        .unwrap_or_default();
        assert!(
            html.contains("data-token=\"x&") && !html.contains("x\"<y"),
            "{html}"
        );
        assert!(!html.contains("<script>"), "no inline script");
        assert!(!html.contains("http://") && !html.contains("https://"));
    }

    #[test]
    fn every_settings_control_has_a_label() {
        let html = SettingsPage {
            title: "Settings",
            page: "settings",
            nav: Nav::Settings,
        }
        .render()
        .unwrap_or_default();
        let mut controls = 0;
        for tag in ["<input id=\"", "<textarea id=\""] {
            for part in html.split(tag).skip(1) {
                let id = part.split('"').next().unwrap_or_default();
                assert!(
                    html.contains(&format!("<label for=\"{id}\"")),
                    "{id} has no label"
                );
                controls += 1;
            }
        }
        assert_eq!(controls, 11, "{html}");
        assert!(html.contains("href=\"/admin/settings\" aria-current=\"page\""));
    }

    #[test]
    fn every_asset_is_compiled_in() {
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{}", a.path);
        }
    }
}

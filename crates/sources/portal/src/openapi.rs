//! The OpenAPI 3.1 document of the portal's JSON API, served at
//! `GET /v1/portal/openapi.json`. Written out here, route by route, beside
//! the router in [`crate::api`]; a unit test reads `api.rs` and fails when
//! a registered route (path and method) is missing from it.

use serde_json::{Map, Value, json};

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn body(name: &str) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema(name) } } })
}

fn ok(desc: &str, name: Option<&str>) -> Value {
    match name {
        Some(n) => {
            json!({ "description": desc, "content": { "application/json": { "schema": schema(n) } } })
        }
        None => json!({ "description": desc }),
    }
}

fn bytes(desc: &str) -> Value {
    json!({ "description": desc, "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } })
}

fn err(desc: &str) -> Value {
    ok(desc, Some("Error"))
}

fn path_param(name: &str, desc: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": desc, "schema": { "type": "string" } })
}

fn query(name: &str, ty: &str, desc: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": desc, "schema": { "type": ty } })
}

/// One operation: summary, tag, parameters, request body, responses.
fn op(
    tag: &str,
    summary: &str,
    params: Vec<Value>,
    request: Option<Value>,
    responses: Vec<(&str, Value)>,
) -> Value {
    let mut o = Map::new();
    o.insert("tags".into(), json!([tag]));
    o.insert("summary".into(), summary.into());
    if !params.is_empty() {
        o.insert("parameters".into(), Value::Array(params));
    }
    if let Some(r) = request {
        o.insert("requestBody".into(), r);
    }
    let mut rs = Map::new();
    for (code, r) in responses {
        rs.insert(code.into(), r);
    }
    o.insert("responses".into(), Value::Object(rs));
    Value::Object(o)
}

/// Without a session or token (links, login, reset).
fn public(mut v: Value) -> Value {
    v["security"] = json!([]);
    v
}

fn id() -> Value {
    path_param("id", "the package's (or user's, or token's) id")
}

fn token() -> Value {
    path_param(
        "token",
        "the link's token (at least 128 bits, stored hashed)",
    )
}

fn fid() -> Value {
    path_param("fid", "the file's id")
}

fn password_header() -> Value {
    json!({ "name": "X-Package-Password", "in": "header", "required": false, "schema": { "type": "string" }, "description": "the package's password, when it has one" })
}

fn range_header() -> Value {
    json!({ "name": "Range", "in": "header", "required": false, "schema": { "type": "string" }, "description": "one byte range (bytes=a-b)" })
}

fn download_responses(what: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("200", bytes(what)),
        ("206", bytes("the requested range")),
        (
            "403",
            err("not available: not every file is cleared, or the password is missing or wrong"),
        ),
        ("404", err("no such package, file or link")),
        (
            "410",
            err("expired, revoked, deleted or the download limit is reached"),
        ),
        ("416", err("range not satisfiable")),
    ]
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    let mut add = |path: &str, ops: Vec<(&str, Value)>| {
        let mut m = Map::new();
        for (method, o) in ops {
            m.insert(method.into(), o);
        }
        paths.insert(path.into(), Value::Object(m));
    };
    add(
        "/v1/portal/openapi.json",
        vec![(
            "get",
            public(op(
                "meta",
                "This document",
                vec![],
                None,
                vec![("200", json!({ "description": "OpenAPI 3.1" }))],
            )),
        )],
    );
    add(
        "/v1/portal/auth/login",
        vec![(
            "post",
            public(op(
                "auth",
                "Sign in: sets the session cookie (HttpOnly JWT) and the CSRF cookie; throttled per account and address",
                vec![],
                Some(body("Login")),
                vec![
                    ("200", ok("signed in", Some("LoginResult"))),
                    (
                        "401",
                        err("wrong e-mail or password, or a disabled account"),
                    ),
                    ("429", err("too many failures")),
                ],
            )),
        )],
    );
    add(
        "/v1/portal/auth/logout",
        vec![(
            "post",
            op(
                "auth",
                "Sign out: the session is revoked",
                vec![],
                None,
                vec![("204", ok("signed out", None))],
            ),
        )],
    );
    add(
        "/v1/portal/auth/me",
        vec![(
            "get",
            op(
                "auth",
                "The signed-in user, with the upload limits that apply (the admin's settings) and the bytes in use",
                vec![],
                None,
                vec![
                    ("200", ok("the user", Some("Me"))),
                    ("401", err("not signed in")),
                ],
            ),
        )],
    );
    add(
        "/v1/portal/auth/reset",
        vec![(
            "post",
            public(op(
                "auth",
                "Choose a new password with a one-time reset token; the user's sessions are revoked",
                vec![],
                Some(body("RedeemReset")),
                vec![
                    ("204", ok("password set", None)),
                    ("400", err("password too short")),
                    ("403", err("token used, expired or unknown")),
                    ("429", err("too many failures")),
                ],
            )),
        )],
    );
    add(
        "/v1/portal/tokens",
        vec![(
            "post",
            op(
                "auth",
                "Create an API token (shown once; stored hashed)",
                vec![],
                Some(body("NewToken")),
                vec![("201", ok("the token", Some("TokenCreated")))],
            ),
        )],
    );
    add(
        "/v1/portal/tokens/{id}",
        vec![(
            "delete",
            op(
                "auth",
                "Revoke an API token (own; admins: any)",
                vec![id()],
                None,
                vec![
                    ("204", ok("revoked", None)),
                    ("404", err("no such live token")),
                ],
            ),
        )],
    );
    add(
        "/v1/portal/users",
        vec![
            (
                "get",
                op(
                    "users",
                    "List users, oldest first (admin)",
                    vec![
                        query("limit", "integer", "1..1000, default 100"),
                        query("cursor", "string", "next_cursor of the previous page"),
                    ],
                    None,
                    vec![
                        ("200", ok("a page of users", Some("UserPage"))),
                        ("403", err("admins only")),
                    ],
                ),
            ),
            (
                "post",
                op(
                    "users",
                    "Create a user (admin)",
                    vec![],
                    Some(body("NewUser")),
                    vec![
                        ("201", ok("the user", Some("User"))),
                        ("403", err("admins only")),
                        ("409", err("the e-mail is taken")),
                    ],
                ),
            ),
        ],
    );
    add(
        "/v1/portal/users/{id}",
        vec![(
            "patch",
            op(
                "users",
                "Change a user's role, or disable/enable it (admin). Disabling refuses the user's sessions and tokens from the next request and revokes the sessions",
                vec![id()],
                Some(body("UserChange")),
                vec![
                    ("200", ok("the user", Some("User"))),
                    ("403", err("admins only")),
                    ("404", err("no such user")),
                    ("409", err("the last enabled admin, or disabling oneself")),
                ],
            ),
        )],
    );
    add(
        "/v1/portal/users/{id}/password",
        vec![(
            "post",
            op(
                "users",
                "Reset a user's password (admin): set one, or issue a one-time reset token; the user's sessions are revoked",
                vec![id()],
                Some(body("PasswordReset")),
                vec![
                    ("200", ok("password set", None)),
                    ("201", ok("reset token issued", Some("ResetToken"))),
                    ("403", err("admins only")),
                    ("404", err("no such user")),
                ],
            ),
        )],
    );
    add(
        "/v1/portal/packages",
        vec![
            (
                "get",
                op(
                    "packages",
                    "The caller's packages, newest first (admins: all=true for everyone's)",
                    vec![
                        query("limit", "integer", "1..200, default 50"),
                        query("cursor", "string", "next_cursor of the previous page"),
                        query("all", "boolean", "admins: every owner's"),
                    ],
                    None,
                    vec![("200", ok("a page of packages", Some("PackagePage")))],
                ),
            ),
            (
                "post",
                op(
                    "packages",
                    "Create a package (state uploading)",
                    vec![],
                    Some(body("NewPackage")),
                    vec![
                        ("201", ok("the package", Some("Package"))),
                        ("400", err("invalid request")),
                    ],
                ),
            ),
        ],
    );
    add(
        "/v1/portal/packages/{id}",
        vec![
            (
                "get",
                op(
                    "packages",
                    "A package: state, files, links",
                    vec![id()],
                    None,
                    vec![
                        ("200", ok("the package", Some("Package"))),
                        ("404", err("no such package (or not the caller's)")),
                    ],
                ),
            ),
            (
                "delete",
                op(
                    "packages",
                    "Delete now (owner or admin): expired, then purged: ciphertext deleted and checked gone, rows and audit kept, links 410",
                    vec![id()],
                    None,
                    vec![
                        ("204", ok("purged", None)),
                        ("404", err("no such package (or not the caller's)")),
                        (
                            "503",
                            err("storage still holds a part; expired, the scheduler retries"),
                        ),
                    ],
                ),
            ),
        ],
    );
    add(
        "/v1/portal/packages/{id}/revoke",
        vec![(
            "post",
            op(
                "packages",
                "Revoke (owner or admin): expired at once from any live state, links 410",
                vec![id()],
                Some(
                    json!({ "required": false, "content": { "application/json": { "schema": schema("Revoke") } } }),
                ),
                vec![
                    ("200", ok("the package, expired", Some("Package"))),
                    ("404", err("no such package (or not the caller's)")),
                    ("409", err("expired already")),
                ],
            ),
        )],
    );
    add(
        "/v1/portal/packages/{id}/extend",
        vec![(
            "post",
            op(
                "packages",
                "Move the expiry (owner or admin), at most max_expiry_days from now; not once expired",
                vec![id()],
                Some(body("Extend")),
                vec![
                    ("200", ok("the package", Some("Package"))),
                    (
                        "400",
                        err("beyond the maximum, in the past, or neither form"),
                    ),
                    ("404", err("no such package (or not the caller's)")),
                    ("409", err("expired")),
                ],
            ),
        )],
    );
    add(
        "/v1/portal/packages/{id}/files",
        vec![(
            "post",
            op(
                "uploads",
                "Plain multipart upload of one or more files (part name file)",
                vec![id()],
                Some(
                    json!({ "required": true, "content": { "multipart/form-data": { "schema": { "type": "object", "properties": { "file": { "type": "array", "items": { "type": "string", "format": "binary" } } } } } } }),
                ),
                vec![
                    ("201", ok("the package", Some("Package"))),
                    (
                        "409",
                        err("the package is not uploading, or too many files"),
                    ),
                    ("413", err("too_large, or quota_exceeded")),
                    (
                        "415",
                        err("file_type_refused: the sniffed type is not allowed"),
                    ),
                ],
            ),
        )],
    );
    add(
        "/v1/portal/packages/{id}/submit",
        vec![(
            "post",
            op(
                "packages",
                "Submit for scanning (uploading → scanning)",
                vec![id()],
                None,
                vec![
                    ("200", ok("the package", Some("Package"))),
                    ("409", err("not uploading, no files, or a file incomplete")),
                ],
            ),
        )],
    );
    add(
        "/v1/portal/packages/{id}/release",
        vec![(
            "post",
            op(
                "packages",
                "Release a quarantined package (admin; written reason and password again)",
                vec![id()],
                Some(body("Release")),
                vec![
                    ("200", ok("the package", Some("Package"))),
                    ("403", err("not an admin, or the password check failed")),
                    ("409", err("not quarantined")),
                ],
            ),
        )],
    );
    add(
        "/v1/portal/packages/{id}/files/{fid}/content",
        vec![(
            "get",
            op(
                "downloads",
                "Download a file signed in (GET or HEAD; Range)",
                vec![id(), fid(), range_header()],
                None,
                download_responses("the file"),
            ),
        )],
    );
    add(
        "/v1/portal/packages/{id}/zip",
        vec![(
            "get",
            op(
                "downloads",
                "Download every file as a zip streamed on the fly, signed in",
                vec![id()],
                None,
                download_responses("a zip"),
            ),
        )],
    );
    add(
        "/v1/portal/p/{token}",
        vec![(
            "get",
            public(op(
                "links",
                "What a link holder sees (browsers asking for HTML are sent to /p/{token})",
                vec![token()],
                None,
                vec![
                    ("200", ok("state, message, files", Some("LinkView"))),
                    ("404", err("no such link")),
                    ("410", err("expired, revoked or deleted")),
                ],
            )),
        )],
    );
    add(
        "/v1/portal/p/{token}/files/{fid}",
        vec![(
            "get",
            public(op(
                "links",
                "Download a file by link (GET or HEAD; Range)",
                vec![token(), fid(), password_header(), range_header()],
                None,
                download_responses("the file"),
            )),
        )],
    );
    add(
        "/v1/portal/p/{token}/zip",
        vec![(
            "get",
            public(op(
                "links",
                "Download every file as a zip by link",
                vec![token(), password_header()],
                None,
                download_responses("a zip"),
            )),
        )],
    );
    let audit_params = || {
        vec![
            query(
                "package",
                "string",
                "one package (members: required, their own)",
            ),
            query("action", "string", "e.g. package.revoke"),
            query("actor", "string", "a user id"),
            query("limit", "integer", "page size"),
            query("cursor", "string", "next_cursor of the previous page"),
        ]
    };
    add(
        "/v1/portal/settings",
        vec![
            (
                "get",
                op(
                    "settings",
                    "The effective settings (admin), the [portal] configuration's values, which ones an admin set, and the engine set and SMTP configuration (read-only; no credentials)",
                    vec![],
                    None,
                    vec![
                        ("200", ok("the settings", Some("SettingsView"))),
                        ("403", err("admins only")),
                    ],
                ),
            ),
            (
                "put",
                op(
                    "settings",
                    "Change settings (admin): a field with a value sets it, null puts back the configuration's value, an absent field stays. Validated as a whole; audited (settings.update) with old and new values",
                    vec![],
                    Some(body("SettingsChange")),
                    vec![
                        ("200", ok("the settings", Some("SettingsView"))),
                        ("400", err("an invalid value or an unknown field")),
                        ("403", err("admins only")),
                    ],
                ),
            ),
        ],
    );
    add(
        "/v1/portal/audit",
        vec![(
            "get",
            op(
                "audit",
                "The append-only audit log, newest first",
                audit_params(),
                None,
                vec![
                    ("200", ok("a page of entries", Some("AuditPage"))),
                    ("403", err("members must name one of their packages")),
                ],
            ),
        )],
    );
    add(
        "/v1/portal/audit.csv",
        vec![(
            "get",
            op(
                "audit",
                "The audit log as CSV",
                audit_params(),
                None,
                vec![(
                    "200",
                    json!({ "description": "CSV", "content": { "text/csv": { "schema": { "type": "string" } } } }),
                )],
            ),
        )],
    );
    let tus_headers = || {
        vec![
            json!({ "name": "Tus-Resumable", "in": "header", "required": true, "schema": { "const": "1.0.0" } }),
        ]
    };
    add(
        "/v1/portal/uploads",
        vec![
            (
                "post",
                op(
                    "uploads",
                    "tus 1.0 creation: Upload-Length, Upload-Metadata (package, filename)",
                    tus_headers(),
                    None,
                    vec![
                        ("201", ok("created; Location names the upload", None)),
                        ("413", err("too_large, or quota_exceeded")),
                    ],
                ),
            ),
            (
                "options",
                public(op(
                    "uploads",
                    "tus capabilities",
                    vec![],
                    None,
                    vec![("204", ok("Tus-Version, Tus-Extension, Tus-Max-Size", None))],
                )),
            ),
        ],
    );
    add(
        "/v1/portal/uploads/{id}",
        vec![
            (
                "head",
                op(
                    "uploads",
                    "tus: the upload's offset",
                    [vec![id()], tus_headers()].concat(),
                    None,
                    vec![("200", ok("Upload-Offset, Upload-Length", None))],
                ),
            ),
            (
                "patch",
                op(
                    "uploads",
                    "tus: append bytes at Upload-Offset (Upload-Checksum sha256)",
                    [vec![id()], tus_headers()].concat(),
                    Some(
                        json!({ "required": true, "content": { "application/offset+octet-stream": { "schema": { "type": "string", "format": "binary" } } } }),
                    ),
                    vec![
                        ("204", ok("appended", None)),
                        ("409", err("offset mismatch")),
                        ("460", err("checksum mismatch")),
                    ],
                ),
            ),
            (
                "delete",
                op(
                    "uploads",
                    "tus termination",
                    [vec![id()], tus_headers()].concat(),
                    None,
                    vec![("204", ok("terminated", None))],
                ),
            ),
            (
                "options",
                public(op(
                    "uploads",
                    "tus capabilities",
                    vec![id()],
                    None,
                    vec![("204", ok("Tus-Version, Tus-Extension", None))],
                )),
            ),
        ],
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "moat portal API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Packages of files released only after every engine has cleared every file. Errors are {\"error\": {\"code\", \"message\"}} with a stable code; lists page by cursor. State-changing cookie requests need X-CSRF-Token (the moat_csrf cookie's value) and a matching Origin; bearer requests need neither.",
        },
        "security": [{ "bearer": [] }, { "session": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "an API token (moat portal create-token, POST /v1/portal/tokens)" },
                "session": { "type": "apiKey", "in": "cookie", "name": "moat_session" },
            },
            "schemas": schemas(),
        },
    })
}

fn obj(props: Value, required: &[&str]) -> Value {
    json!({ "type": "object", "properties": props, "required": required })
}

fn schemas() -> Value {
    let s = json!({ "type": "string" });
    let i = json!({ "type": "integer" });
    let ms = json!({ "type": "integer", "description": "milliseconds since the epoch" });
    let nullable = |t: &str| json!({ "type": [t, "null"] });
    let state = json!({ "type": "string", "enum": ["uploading", "scanning", "available", "quarantined", "expired", "purged"] });
    let page = |item: &str| {
        obj(
            json!({ "items": { "type": "array", "items": schema(item) }, "next_cursor": nullable("string") }),
            &["items", "next_cursor"],
        )
    };
    let mut m = Map::new();
    m.insert(
        "Error".into(),
        obj(
            json!({ "error": obj(json!({ "code": s, "message": s }), &["code", "message"]) }),
            &["error"],
        ),
    );
    m.insert(
        "Login".into(),
        obj(json!({ "email": s, "password": s }), &["email", "password"]),
    );
    m.insert(
        "LoginResult".into(),
        obj(
            json!({ "user": schema("User"), "csrf_token": s }),
            &["user", "csrf_token"],
        ),
    );
    m.insert(
        "RedeemReset".into(),
        obj(
            json!({ "token": s, "password": { "type": "string", "minLength": 12 } }),
            &["token", "password"],
        ),
    );
    m.insert("NewToken".into(), obj(json!({ "name": s }), &[]));
    m.insert(
        "TokenCreated".into(),
        obj(json!({ "id": s, "token": s }), &["id", "token"]),
    );
    m.insert("User".into(), obj(json!({ "id": s, "email": s, "role": { "enum": ["admin", "member"] }, "disabled": { "type": "boolean" }, "created_at": ms }), &["id", "email", "role"]));
    m.insert("UserPage".into(), page("User"));
    m.insert(
        "Me".into(),
        obj(
            json!({ "id": s, "email": s, "role": { "enum": ["admin", "member"] },
                "limits": obj(json!({ "max_file_size": i, "max_files_per_package": i, "default_expiry_days": i,
                    "max_expiry_days": i, "quota_bytes": { "type": "integer", "description": "0: no quota" }, "used_bytes": i,
                    "require_password": { "type": "boolean" }, "access_modes": { "type": "array", "items": { "type": "string" } } }),
                    &["max_file_size", "max_files_per_package", "default_expiry_days", "max_expiry_days", "quota_bytes", "used_bytes"]) }),
            &["id", "email", "role", "limits"],
        ),
    );
    m.insert("NewUser".into(), obj(json!({ "email": s, "password": { "type": "string", "minLength": 12 }, "role": { "enum": ["admin", "member"] } }), &["email", "password"]));
    m.insert(
        "UserChange".into(),
        obj(
            json!({ "role": { "enum": ["admin", "member"] }, "disabled": { "type": "boolean" } }),
            &[],
        ),
    );
    m.insert("PasswordReset".into(), obj(json!({ "password": { "type": "string", "minLength": 12 }, "reset_token": { "type": "boolean" } }), &[]));
    m.insert(
        "ResetToken".into(),
        obj(
            json!({ "reset_token": s, "url": s, "expires_at": ms, "sessions_revoked": i }),
            &["reset_token", "expires_at"],
        ),
    );
    m.insert(
        "NewPackage".into(),
        obj(
            json!({
                "access": { "enum": ["public", "recipients", "internal"] },
                "message": s, "recipients": { "type": "array", "items": s },
                "expires_in_days": i, "download_limit": i, "password": s,
            }),
            &["access"],
        ),
    );
    m.insert("File".into(), obj(json!({ "id": s, "name": s, "size": i, "sha256": nullable("string"), "complete": { "type": "boolean" },
            "status": { "enum": ["pending", "clean", "infected", "suspicious", "unscannable", "error", "released"] },
            "scan_record_id": nullable("string") }), &["id", "name", "size", "status"]));
    m.insert("Package".into(), obj(json!({
            "id": s, "state": state, "access": s, "message": s, "recipients": { "type": "array", "items": s },
            "expires_at": ms, "download_limit": nullable("integer"), "download_count": i, "has_password": { "type": "boolean" },
            "reason": nullable("string"), "released_by": nullable("string"), "release_reason": nullable("string"),
            "created_at": ms, "updated_at": ms, "owner_id": s,
            "files": { "type": "array", "items": schema("File") },
            "links": obj(json!({ "public": s, "recipients": { "type": "array", "items": obj(json!({ "email": s, "url": s, "downloaded_at": nullable("integer") }), &["email", "url"]) } }), &[]),
        }), &["id", "state", "files", "links"]));
    m.insert("PackagePage".into(), page("Package"));
    m.insert("Revoke".into(), obj(json!({ "reason": s }), &[]));
    m.insert(
        "Extend".into(),
        obj(
            json!({ "expires_in_days": { "type": "integer", "minimum": 1 }, "expires_at": ms }),
            &[],
        ),
    );
    m.insert(
        "Release".into(),
        obj(
            json!({ "reason": s, "password": s }),
            &["reason", "password"],
        ),
    );
    m.insert("LinkView".into(), obj(json!({ "id": s, "state": state, "message": s, "expires_at": ms, "has_password": { "type": "boolean" },
            "files": { "type": "array", "items": obj(json!({ "id": s, "name": s, "size": i }), &["id", "name", "size"]) } }), &["id", "state", "files"]));
    m.insert("AuditEntry".into(), obj(json!({ "id": s, "at": ms, "actor": nullable("string"), "actor_email": nullable("string"), "action": s,
            "package_id": nullable("string"), "file_id": nullable("string"), "ip": nullable("string"), "detail": {} }), &["id", "at", "action"]));
    m.insert("AuditPage".into(), page("AuditEntry"));
    let types = json!({ "type": "array", "items": { "type": "string" }, "description": "MIME types (application/pdf), families (image/*), * or executable; matched against the sniffed content" });
    let settings = json!({
        "max_file_size": i, "max_files_per_package": i, "default_expiry_days": i,
        "max_expiry_days": i, "quota_bytes": i, "allowed_types": types, "denied_types": types,
        "require_password": { "type": "boolean", "description": "packages shared by link (public, recipients) need a password" },
        "access_modes": { "type": "array", "items": { "type": "string", "enum": ["public", "recipients", "internal"] }, "description": "the access modes senders may choose" },
    });
    m.insert(
        "Settings".into(),
        obj(
            settings.clone(),
            &[
                "max_file_size",
                "max_files_per_package",
                "default_expiry_days",
                "max_expiry_days",
                "quota_bytes",
                "allowed_types",
                "denied_types",
                "require_password",
                "access_modes",
            ],
        ),
    );
    m.insert("SettingsChange".into(), obj(settings, &[]));
    m.insert(
        "SettingsView".into(),
        obj(
            json!({
                "settings": schema("Settings"), "config": schema("Settings"),
                "overridden": { "type": "array", "items": s },
                "updated_at": nullable("integer"), "updated_by": nullable("string"),
                "engines": { "type": "object", "description": "as GET /v1/engines: fingerprint, loaded_at, engines" },
                "smtp": { "type": ["object", "null"], "description": "host, port, security, authentication, from" },
            }),
            &["settings", "config", "overridden", "engines", "smtp"],
        ),
    );
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(path, method)` of every `.route(...)` in `api.rs`'s router, and
    /// the prefix of every `.nest(...)`.
    fn registered() -> (Vec<(String, String)>, Vec<String>) {
        let src = include_str!("api.rs");
        let start = src.find("pub fn router").unwrap_or(0);
        let end = src[start..]
            .find("\n}\n")
            .map(|e| start + e)
            .unwrap_or(src.len());
        let router = &src[start..end];
        let mut routes = Vec::new();
        let mut nests = Vec::new();
        let mut rest = router;
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            // the call's text, up to its matching parenthesis
            let mut depth = 1;
            let mut len = rest.len();
            for (i, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            len = i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let call = &rest[..len];
            let path = call.split('"').nth(1).unwrap_or_default().to_string();
            let handlers = call.split_once(',').map(|(_, h)| h).unwrap_or_default();
            for m in ["get", "post", "put", "patch", "delete", "head", "options"] {
                let bare = handlers.trim_start().starts_with(&format!("{m}("));
                if bare || handlers.contains(&format!(".{m}(")) {
                    routes.push((path.clone(), m.to_string()));
                }
            }
        }
        let mut rest = router;
        while let Some(at) = rest.find(".nest(") {
            rest = &rest[at + ".nest(".len()..];
            nests.push(rest.split('"').nth(1).unwrap_or_default().to_string());
        }
        (routes, nests)
    }

    #[test]
    fn every_route_registered_in_api_rs_is_in_the_document() {
        let doc = document();
        let (routes, nests) = registered();
        assert!(
            routes.len() >= 25,
            "the parser found the router: {routes:?}"
        );
        for (path, method) in &routes {
            assert!(
                doc["paths"][path][method].is_object(),
                "{} {path} is registered in api.rs but missing from the OpenAPI document",
                method.to_uppercase()
            );
        }
        for prefix in &nests {
            assert!(
                doc["paths"][prefix].is_object(),
                "{prefix} (nested) is missing"
            );
        }
        // ...and the document names no route the router lacks (tus's own
        // routes are under the nested prefix).
        for (path, ops) in doc["paths"].as_object().into_iter().flatten() {
            for method in ops.as_object().into_iter().flatten().map(|(m, _)| m) {
                let known = routes.iter().any(|(p, m)| p == path && m == method)
                    || nests.iter().any(|n| path.starts_with(n.as_str()));
                assert!(known, "{method} {path} is documented but not registered");
            }
        }
    }

    #[test]
    fn every_schema_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap_or_default();
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "unresolved schema {name}"
            );
        }
    }
}

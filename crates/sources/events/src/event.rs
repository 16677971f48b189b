//! S3 event notifications: the MinIO envelope (`EventName`, `Key`,
//! `Records`) and the plain AWS `Records` format.
//!
//! [`parse`] turns a message body into the objects it names, each classified
//! as [`Disposition::Scan`] or [`Disposition::Ignore`] with a reason. Object
//! keys are URL-decoded (`+` is a space), as S3 and MinIO encode them.
//! Ignored: tagging/retention/legal-hold "created" events (moat's own tagging
//! would otherwise loop), removals, `s3:TestEvent`, and objects under the
//! quarantine location (moat's own copies).

use percent_encoding::percent_decode_str;
use serde::Deserialize;

/// Why an event could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("malformed event: not JSON: {0}")]
    NotJson(String),
    #[error("malformed event: {0}")]
    Shape(String),
}

/// One object named by an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEvent {
    /// e.g. `s3:ObjectCreated:Put` (MinIO) or `ObjectCreated:Put` (AWS).
    pub event_name: String,
    /// RFC 3339, as given by the sender (empty when absent).
    pub event_time: String,
    pub bucket: String,
    /// Decoded key.
    pub key: String,
    pub version_id: Option<String>,
    pub size: Option<u64>,
    /// Without quotes.
    pub etag: Option<String>,
    pub disposition: Disposition,
}

/// What to do with one object event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    Scan,
    Ignore(String),
}

/// Where moat puts quarantined copies; events for objects there are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quarantine {
    pub bucket: Option<String>,
    /// Key prefix (may be empty: the whole bucket).
    pub prefix: String,
}

/// A parsed message: the objects it names, or that it is a test event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedEvent {
    pub objects: Vec<ObjectEvent>,
    /// Set for `s3:TestEvent` and record-less envelopes: nothing to do.
    pub ignored: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "EventName")]
    event_name: Option<String>,
    #[serde(rename = "Key")]
    key: Option<String>,
    #[serde(rename = "Records")]
    records: Option<Vec<serde_json::Value>>,
    #[serde(rename = "Event")]
    event: Option<String>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "eventName")]
    event_name: String,
    #[serde(rename = "eventTime", default)]
    event_time: Option<String>,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: BucketEntity,
    object: ObjectEntity,
}

#[derive(Deserialize)]
struct BucketEntity {
    name: String,
}

#[derive(Deserialize)]
struct ObjectEntity {
    key: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(rename = "eTag", default)]
    etag: Option<String>,
    #[serde(rename = "versionId", default)]
    version_id: Option<String>,
}

/// Decode an S3 event key: `+` is a space, then percent-decoding.
pub fn decode_key(raw: &str) -> Result<String, EventError> {
    let plus = raw.replace('+', " ");
    percent_decode_str(&plus)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| {
            EventError::Shape(format!(
                "object key {raw:?} is not valid UTF-8 once decoded"
            ))
        })
}

/// Hard cap on the records in one message (a hostile message cannot make moat
/// allocate without bound beyond the JSON itself).
pub const MAX_RECORDS: usize = 10_000;

/// Parse a message body.
pub fn parse(body: &[u8], quarantine: &Quarantine) -> Result<ParsedEvent, EventError> {
    let env: Envelope =
        serde_json::from_slice(body).map_err(|e| EventError::NotJson(e.to_string()))?;
    if env.event.as_deref() == Some("s3:TestEvent") {
        return Ok(ParsedEvent {
            objects: vec![],
            ignored: Some("s3:TestEvent".into()),
        });
    }
    let records = match env.records {
        Some(r) => r,
        None => {
            return Err(EventError::Shape(match (env.event_name, env.key) {
                (Some(n), _) => format!("{n} event without Records"),
                _ => "no Records array (expected an S3 event notification)".into(),
            }));
        }
    };
    if records.is_empty() {
        return Err(EventError::Shape("empty Records array".into()));
    }
    if records.len() > MAX_RECORDS {
        return Err(EventError::Shape(format!(
            "{} records (at most {MAX_RECORDS})",
            records.len()
        )));
    }
    let mut objects = Vec::with_capacity(records.len());
    for (i, r) in records.into_iter().enumerate() {
        let r: Record =
            serde_json::from_value(r).map_err(|e| EventError::Shape(format!("record {i}: {e}")))?;
        if r.s3.bucket.name.is_empty() {
            return Err(EventError::Shape(format!("record {i}: empty bucket name")));
        }
        let key = decode_key(&r.s3.object.key)?;
        if key.is_empty() {
            return Err(EventError::Shape(format!("record {i}: empty object key")));
        }
        let etag =
            r.s3.object
                .etag
                .map(|e| e.trim_matches('"').to_string())
                .filter(|e| !e.is_empty());
        let version_id =
            r.s3.object
                .version_id
                .filter(|v| !v.is_empty() && v != "null");
        let disposition = classify(&r.event_name, &r.s3.bucket.name, &key, quarantine);
        objects.push(ObjectEvent {
            event_name: r.event_name,
            event_time: r.event_time.unwrap_or_default(),
            bucket: r.s3.bucket.name,
            key,
            version_id,
            size: r.s3.object.size,
            etag,
            disposition,
        });
    }
    Ok(ParsedEvent {
        objects,
        ignored: None,
    })
}

/// Decide whether an event calls for a scan.
pub fn classify(event_name: &str, bucket: &str, key: &str, q: &Quarantine) -> Disposition {
    let name = event_name.strip_prefix("s3:").unwrap_or(event_name);
    if name == "TestEvent" {
        return Disposition::Ignore("test event".into());
    }
    let Some(kind) = name.strip_prefix("ObjectCreated:") else {
        if name.starts_with("ObjectRemoved") {
            return Disposition::Ignore(format!("{event_name}: object removed"));
        }
        return Disposition::Ignore(format!("{event_name}: not an object creation"));
    };
    if matches!(
        kind,
        "PutTagging" | "PutRetention" | "PutLegalHold" | "DeleteTagging"
    ) {
        return Disposition::Ignore(format!("{event_name}: metadata change, not new content"));
    }
    if in_quarantine(bucket, key, q) {
        return Disposition::Ignore(
            "object is in the quarantine location (moat's own copy)".into(),
        );
    }
    Disposition::Scan
}

/// Whether `bucket/key` lies in the quarantine location.
pub fn in_quarantine(bucket: &str, key: &str, q: &Quarantine) -> bool {
    match &q.bucket {
        Some(qb) if qb == bucket => key.starts_with(&q.prefix),
        Some(_) => false,
        // Same-bucket quarantine: only a non-empty prefix identifies it.
        None => !q.prefix.is_empty() && key.starts_with(&q.prefix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exactly what MinIO sends to an AMQP target.
    const MINIO: &str = r#"{"EventName":"s3:ObjectCreated:Put","Key":"uploads/my+file%281%29.txt","Records":[{"eventVersion":"2.0","eventSource":"minio:s3","awsRegion":"","eventTime":"2024-05-01T10:00:00.123Z","eventName":"s3:ObjectCreated:Put","userIdentity":{"principalId":"minioadmin"},"requestParameters":{"principalId":"minioadmin","region":"","sourceIPAddress":"127.0.0.1"},"responseElements":{"x-amz-id-2":"dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8","x-amz-request-id":"17CB1A8B3F0F0A4B","x-minio-deployment-id":"a1b2","x-minio-origin-endpoint":"http://127.0.0.1:9000"},"s3":{"s3SchemaVersion":"1.0","configurationId":"Config","bucket":{"name":"uploads","ownerIdentity":{"principalId":"minioadmin"},"arn":"arn:aws:s3:::uploads"},"object":{"key":"my+file%281%29.txt","size":68,"eTag":"44d88612fea8a8f36de82e1278abb02f","contentType":"text/plain","userMetadata":{"content-type":"text/plain"},"versionId":"b7f6c5d4-1111-2222-3333-444455556666","sequencer":"17CB1A8B3F2C3D4E"}},"source":{"host":"127.0.0.1","port":"","userAgent":"MinIO (linux; amd64) minio-go/v7.0.70"}}]}"#;

    const AWS: &str = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2024-05-01T10:00:00.000Z","eventName":"ObjectCreated:CompleteMultipartUpload","s3":{"s3SchemaVersion":"1.0","bucket":{"name":"b"},"object":{"key":"a%2Fb+c.bin","size":1048576,"eTag":"\"abc-2\"","sequencer":"0A1B"}}}]}"#;

    fn q() -> Quarantine {
        Quarantine::default()
    }

    #[test]
    fn minio_envelope() {
        let p = parse(MINIO.as_bytes(), &q()).unwrap();
        assert_eq!(p.objects.len(), 1);
        let o = &p.objects[0];
        assert_eq!(o.bucket, "uploads");
        assert_eq!(o.key, "my file(1).txt");
        assert_eq!(o.size, Some(68));
        assert_eq!(o.etag.as_deref(), Some("44d88612fea8a8f36de82e1278abb02f"));
        assert_eq!(
            o.version_id.as_deref(),
            Some("b7f6c5d4-1111-2222-3333-444455556666")
        );
        assert_eq!(o.event_time, "2024-05-01T10:00:00.123Z");
        assert_eq!(o.disposition, Disposition::Scan);
    }

    #[test]
    fn aws_records() {
        let p = parse(AWS.as_bytes(), &q()).unwrap();
        let o = &p.objects[0];
        assert_eq!(o.key, "a/b c.bin");
        assert_eq!(o.etag.as_deref(), Some("abc-2"));
        assert_eq!(o.version_id, None);
        assert_eq!(o.disposition, Disposition::Scan);
    }

    #[test]
    fn loops_and_removals_are_ignored() {
        for name in [
            "s3:ObjectCreated:PutTagging",
            "s3:ObjectCreated:PutRetention",
            "s3:ObjectCreated:PutLegalHold",
            "s3:ObjectRemoved:Delete",
            "ObjectRemoved:DeleteMarkerCreated",
            "s3:ObjectAccessed:Get",
        ] {
            let body = MINIO.replace(
                "s3:ObjectCreated:Put\",\"userIdentity",
                &format!("{name}\",\"userIdentity"),
            );
            let p = parse(body.as_bytes(), &q()).unwrap();
            assert!(
                matches!(p.objects[0].disposition, Disposition::Ignore(_)),
                "{name}"
            );
        }
        for name in [
            "s3:ObjectCreated:Copy",
            "s3:ObjectCreated:CompleteMultipartUpload",
            "ObjectCreated:Post",
        ] {
            assert_eq!(classify(name, "b", "k", &q()), Disposition::Scan, "{name}");
        }
    }

    #[test]
    fn quarantine_copies_are_ignored() {
        let qb = Quarantine {
            bucket: Some("quarantine".into()),
            prefix: String::new(),
        };
        assert!(matches!(
            classify("s3:ObjectCreated:Copy", "quarantine", "x", &qb),
            Disposition::Ignore(_)
        ));
        assert_eq!(
            classify("s3:ObjectCreated:Copy", "uploads", "x", &qb),
            Disposition::Scan
        );
        let qp = Quarantine {
            bucket: None,
            prefix: "quarantine/".into(),
        };
        assert!(matches!(
            classify("s3:ObjectCreated:Copy", "uploads", "quarantine/x", &qp),
            Disposition::Ignore(_)
        ));
        assert_eq!(
            classify("s3:ObjectCreated:Put", "uploads", "q/x", &qp),
            Disposition::Scan
        );
        // An empty same-bucket prefix would match everything: never treated as quarantine.
        assert_eq!(
            classify("s3:ObjectCreated:Put", "uploads", "x", &q()),
            Disposition::Scan
        );
    }

    #[test]
    fn test_event() {
        let p = parse(br#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2024-01-01T00:00:00Z","Bucket":"b"}"#, &q()).unwrap();
        assert!(p.objects.is_empty());
        assert!(p.ignored.is_some());
    }

    #[test]
    fn malformed_is_a_clear_error() {
        for (body, want) in [
            (&b"not json"[..], "not JSON"),
            (br#"{"EventName":"s3:ObjectCreated:Put","Key":"b/k"}"#, "without Records"),
            (br#"{"Records":[]}"#, "empty Records"),
            (br#"{"Records":[{"eventName":"ObjectCreated:Put"}]}"#, "record 0"),
            (br#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":""},"object":{"key":"k"}}}]}"#, "empty bucket"),
            (br#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"%ff"}}}]}"#, "UTF-8"),
            (br#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k","size":-1}}}]}"#, "record 0"),
            (br#"[1,2]"#, "not JSON"),
            (br#"{}"#, "no Records"),
        ] {
            let e = parse(body, &q()).unwrap_err().to_string();
            assert!(e.contains(want), "{e} (wanted {want})");
            assert!(e.starts_with("malformed event"), "{e}");
        }
    }

    #[test]
    fn key_decoding() {
        assert_eq!(decode_key("a+b%2Bc%20d").unwrap(), "a b+c d");
        assert_eq!(decode_key("%E2%9C%93").unwrap(), "✓");
        assert_eq!(decode_key("100%").unwrap(), "100%");
    }
}

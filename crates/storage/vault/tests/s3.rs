//! The S3 backend against moto_server (MOAT_TEST_MOTO_SERVER from
//! scripts/test-deps.sh): objects round-trip (single PUT and multipart),
//! ranges, tamper detection, deletion, and only ciphertext in the bucket.
mod common;

use common::{contains_plaintext, pattern};
use futures_util::StreamExt;
use moat_vault::{BackendConfig, DataKey, Vault, VaultConfig, VaultError};

fn moto() -> (moat_testkit::Moto, String) {
    let m = moat_testkit::Moto::start();
    let endpoint = m.endpoint().to_string();
    (m, endpoint)
}

async fn read(
    v: &Vault,
    k: &DataKey,
    o: &str,
    r: Option<(u64, u64)>,
) -> Result<Vec<u8>, VaultError> {
    let mut s = v.read(k, o, r).await?;
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        out.extend_from_slice(&b?);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_backend_stores_only_ciphertext_and_reads_ranges_back() {
    let (_moto, endpoint) = moto();
    let s3cfg = moat_s3::S3Config {
        endpoint: Some(endpoint),
        access_key: Some("test".into()),
        secret_key: Some("test".into()),
        ..Default::default()
    };
    let client = moat_s3::S3::new(&s3cfg).await.unwrap();
    client
        .client()
        .create_bucket()
        .bucket("vault")
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::open(&VaultConfig {
        dir: dir.path().to_path_buf(),
        backend: BackendConfig::S3 {
            bucket: "vault".into(),
            prefix: "moat/".into(),
            s3: s3cfg,
            part_size_mib: Some(5),
        },
    })
    .await
    .unwrap();
    assert_eq!(v.backend_name(), "s3");
    let k = DataKey::generate();
    let small = pattern(150_000, 1);
    // 11 MiB + a bit: three multipart parts of 5 MiB
    let big = pattern(11 * 1024 * 1024 + 77, 2);
    let info = v.put(&k, "small", &small[..]).await.unwrap();
    assert_eq!(info.size, small.len() as u64);
    v.put(&k, "big", &big[..]).await.unwrap();
    assert_eq!(v.size("big").await.unwrap(), big.len() as u64);
    assert_eq!(read(&v, &k, "small", None).await.unwrap(), small);
    assert_eq!(read(&v, &k, "big", None).await.unwrap(), big);
    let (a, b) = (5 * 1024 * 1024 - 3, 6 * 1024 * 1024 + 9);
    assert_eq!(
        read(&v, &k, "big", Some((a, b))).await.unwrap(),
        &big[a as usize..b as usize]
    );
    // staging is empty again: nothing kept locally
    assert_eq!(
        std::fs::read_dir(dir.path().join("staging"))
            .unwrap()
            .count(),
        0
    );

    // the bucket holds ciphertext only
    let c = client.client();
    for key in ["moat/small", "moat/big"] {
        let o = c
            .get_object()
            .bucket("vault")
            .key(key)
            .send()
            .await
            .unwrap();
        let bytes = o.body.collect().await.unwrap().into_bytes();
        let plain = if key.ends_with("small") { &small } else { &big };
        assert!(!contains_plaintext(&bytes, plain), "{key}");
    }
    // a flipped byte in the bucket fails the read
    let o = c
        .get_object()
        .bucket("vault")
        .key("moat/small")
        .send()
        .await
        .unwrap();
    let mut bytes = o.body.collect().await.unwrap().into_bytes().to_vec();
    bytes[100] ^= 4;
    c.put_object()
        .bucket("vault")
        .key("moat/small")
        .body(bytes.into())
        .send()
        .await
        .unwrap();
    assert!(matches!(
        read(&v, &k, "small", None).await,
        Err(VaultError::Tampered)
    ));

    assert!(v.exists("big").await.unwrap());
    v.delete("big").await.unwrap();
    assert!(!v.exists("big").await.unwrap());
    assert!(matches!(
        v.read(&k, "big", None).await.err(),
        Some(VaultError::NotFound)
    ));
}

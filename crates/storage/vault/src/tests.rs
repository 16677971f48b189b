#![allow(clippy::disallowed_methods)] // files the tests just wrote
use super::*;
use crate::upload::AppendEnd;
use futures_util::StreamExt;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

const S: u64 = SEGMENT as u64;

pub(crate) fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn local(dir: &Path) -> Vault {
    Vault::open(&VaultConfig {
        dir: dir.to_path_buf(),
        backend: BackendConfig::Local,
    })
    .await
    .unwrap()
}

/// Everything a read yields, and the error that ended it.
async fn collect(mut s: ByteStream) -> (Vec<u8>, Option<VaultError>) {
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        match b {
            Ok(b) => out.extend_from_slice(&b),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

async fn read_all(v: &Vault, k: &DataKey, o: &str, r: Option<(u64, u64)>) -> Result<Vec<u8>> {
    let (bytes, err) = collect(v.read(k, o, r).await?).await;
    match err {
        Some(e) => Err(e),
        None => Ok(bytes),
    }
}

fn object_path(dir: &Path, o: &str) -> PathBuf {
    dir.join("objects").join(o)
}

#[tokio::test]
async fn round_trip_at_segment_edges() {
    let dir = tempfile::tempdir().unwrap();
    let v = local(dir.path()).await;
    let k = DataKey::generate();
    for (i, n) in [0, 1, S - 1, S, S + 1, 3 * S + 7].into_iter().enumerate() {
        let data = pattern(n as usize, i as u64 + 1);
        let name = format!("obj-{i}");
        let info = v.put(&k, &name, &data[..]).await.unwrap();
        assert_eq!(info.size, n);
        assert_eq!(info.sha256, <[u8; 32]>::from(Sha256::digest(&data)));
        assert_eq!(v.size(&name).await.unwrap(), n);
        assert_eq!(
            read_all(&v, &k, &name, None).await.unwrap(),
            data,
            "size {n}"
        );
        assert_eq!(
            std::fs::metadata(object_path(dir.path(), &name))
                .unwrap()
                .len(),
            crypto::sealed_len(n)
        );
    }
    assert!(v.exists("obj-0").await.unwrap());
    v.delete("obj-0").await.unwrap();
    assert!(!v.exists("obj-0").await.unwrap());
    v.delete("obj-0").await.unwrap();
    assert!(matches!(
        v.read(&k, "obj-0", None).await.err(),
        Some(VaultError::NotFound)
    ));
}

#[tokio::test]
async fn ranges_across_segment_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let v = local(dir.path()).await;
    let k = DataKey::generate();
    let n = 3 * S + 100;
    let data = pattern(n as usize, 7);
    v.put(&k, "r", &data[..]).await.unwrap();
    for (a, b) in [
        (0, 0),
        (0, 1),
        (S - 10, S + 10),
        (S, 2 * S),
        (1, n),
        (n - 1, n),
        (2 * S + 5, n),
        (3 * S, 3 * S + 100),
        (n, n),
        (10, 20),
    ] {
        let got = read_all(&v, &k, "r", Some((a, b))).await.unwrap();
        assert_eq!(got, &data[a as usize..b as usize], "{a}..{b}");
    }
    assert!(matches!(
        v.read(&k, "r", Some((5, n + 1))).await.err(),
        Some(VaultError::Range { .. })
    ));
    assert!(matches!(
        v.read(&k, "r", Some((9, 5))).await.err(),
        Some(VaultError::Range { .. })
    ));
}

/// Flip one byte at `pos` of the stored object; every read must fail and
/// whatever it yielded before failing must be original bytes.
async fn assert_tamper_detected(v: &Vault, dir: &Path, k: &DataKey, data: &[u8], pos: u64) {
    let p = object_path(dir, "t");
    let orig = std::fs::read(&p).unwrap();
    let mut bad = orig.clone();
    bad[pos as usize] ^= 0x01;
    std::fs::write(&p, &bad).unwrap();
    let full = match v.read(k, "t", None).await {
        Err(e) => Err(e),
        Ok(s) => {
            let (got, err) = collect(s).await;
            assert_eq!(
                got,
                &data[..got.len()],
                "yielded altered bytes (flip at {pos})"
            );
            err.map_or(Ok(()), Err)
        }
    };
    assert!(
        matches!(full, Err(VaultError::Tampered | VaultError::Format(_))),
        "flip at {pos}: {full:?}"
    );
    std::fs::write(&p, &orig).unwrap();
}

#[tokio::test]
async fn flipped_bytes_fail_and_yield_no_altered_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let v = local(dir.path()).await;
    let k = DataKey::generate();
    let data = pattern((2 * S + 300) as usize, 3);
    v.put(&k, "t", &data[..]).await.unwrap();
    let seg = |i: u64| HEADER_LEN as u64 + i * SEALED as u64;
    for pos in [
        0,                 // magic
        10,                // salt
        44,                // nonce prefix
        seg(0),            // first ciphertext byte
        seg(1) - 1,        // tag of segment 0
        seg(1) + 500,      // middle segment
        seg(2) + 3,        // last segment
        seg(2) + 300 + 15, // last tag byte
    ] {
        assert_tamper_detected(&v, dir.path(), &k, &data, pos).await;
    }
    // a ranged read inside segment 1 also notices a flip there
    let p = object_path(dir.path(), "t");
    let orig = std::fs::read(&p).unwrap();
    let mut bad = orig.clone();
    bad[(seg(1) + 7) as usize] ^= 0x80;
    std::fs::write(&p, &bad).unwrap();
    let (got, err) = collect(v.read(&k, "t", Some((S + 1, S + 10))).await.unwrap()).await;
    assert!(got.is_empty());
    assert!(matches!(err, Some(VaultError::Tampered)));
    std::fs::write(&p, &orig).unwrap();
    assert_eq!(read_all(&v, &k, "t", None).await.unwrap(), data);
}

#[tokio::test]
async fn truncated_or_reordered_objects_fail() {
    let dir = tempfile::tempdir().unwrap();
    let v = local(dir.path()).await;
    let k = DataKey::generate();
    let data = pattern((3 * S + 10) as usize, 5);
    v.put(&k, "t", &data[..]).await.unwrap();
    let p = object_path(dir.path(), "t");
    let orig = std::fs::read(&p).unwrap();
    let seg = |i: usize| HEADER_LEN + i * SEALED;

    // cut by one byte, by the whole last segment, to the first segment
    for keep in [orig.len() - 1, seg(3), seg(1), seg(2) + 16] {
        std::fs::write(&p, &orig[..keep]).unwrap();
        let r = read_all(&v, &k, "t", None).await;
        assert!(matches!(r, Err(VaultError::Tampered)), "kept {keep}: {r:?}");
        // a range in the intact first segment fails too (the last one is checked)
        let r = read_all(&v, &k, "t", Some((0, 10))).await;
        assert!(r.is_err(), "range after truncation to {keep}");
    }
    // segments 0 and 1 swapped
    let mut swapped = orig.clone();
    swapped[seg(0)..seg(1)].copy_from_slice(&orig[seg(1)..seg(2)]);
    swapped[seg(1)..seg(2)].copy_from_slice(&orig[seg(0)..seg(1)]);
    std::fs::write(&p, &swapped).unwrap();
    let (got, err) = collect(v.read(&k, "t", None).await.unwrap()).await;
    assert!(got.is_empty());
    assert!(matches!(err, Some(VaultError::Tampered)));
    // a segment of another object of the same package spliced in
    std::fs::write(&p, &orig).unwrap();
    v.put(&k, "u", &data[..]).await.unwrap();
    let other = std::fs::read(object_path(dir.path(), "u")).unwrap();
    let mut spliced = orig.clone();
    spliced[seg(1)..seg(2)].copy_from_slice(&other[seg(1)..seg(2)]);
    std::fs::write(&p, &spliced).unwrap();
    assert!(matches!(
        read_all(&v, &k, "t", Some((S, S + 5))).await,
        Err(VaultError::Tampered)
    ));
}

#[tokio::test]
async fn wrong_key_fails() {
    let dir = tempfile::tempdir().unwrap();
    let v = local(dir.path()).await;
    let k = DataKey::generate();
    v.put(&k, "w", &b"secret contents"[..]).await.unwrap();
    let other = DataKey::generate();
    assert!(matches!(
        read_all(&v, &other, "w", None).await,
        Err(VaultError::Tampered)
    ));
    assert!(matches!(
        read_all(&v, &other, "w", Some((0, 3))).await,
        Err(VaultError::Tampered)
    ));
}

#[tokio::test]
async fn kek_rotation_keeps_objects_readable() {
    let dir = tempfile::tempdir().unwrap();
    let v = local(dir.path()).await;
    let (old, _) = Kek::generate();
    let (new, _) = Kek::generate();
    let k = DataKey::generate();
    let wrapped = vec![k.wrap(&old)];
    let data = pattern(100_000, 9);
    v.put(&k, "k", &data[..]).await.unwrap();
    let before = std::fs::read(object_path(dir.path(), "k")).unwrap();
    let rotated = rotate_kek(&old, &new, &wrapped).unwrap();
    let k2 = DataKey::unwrap(&new, &rotated[0]).unwrap();
    assert_eq!(read_all(&v, &k2, "k", None).await.unwrap(), data);
    assert_eq!(std::fs::read(object_path(dir.path(), "k")).unwrap(), before);
}

#[tokio::test]
async fn names_modes_and_no_plaintext_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let v = local(dir.path()).await;
    let k = DataKey::generate();
    for bad in ["", "../x", "a/b", "x.y", &"a".repeat(129)] {
        assert!(matches!(
            v.put(&k, bad, &b""[..]).await,
            Err(VaultError::BadName)
        ));
    }
    let data = b"PLAINTEXT-MARKER ".repeat(10_000);
    v.put(&k, "m", &data[..]).await.unwrap();
    // and an unfinished upload of the same bytes
    v.upload_create(
        "up",
        "m2",
        &k,
        data.len() as u64 + 1,
        SystemTime::now() + Duration::from_secs(60),
    )
    .await
    .unwrap();
    let mut g = v.upload_lock("up", Duration::from_secs(1)).await.unwrap();
    let meta = v.upload_meta("up").await.unwrap().unwrap();
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![Ok(Bytes::from(data.clone()))];
    let (end, off) = v
        .upload_append(
            &mut g,
            &k,
            &meta,
            futures_util::stream::iter(chunks),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!((end, off), (AppendEnd::Complete, data.len() as u64));
    let mut files = 0;
    for e in walk(dir.path()) {
        let md = std::fs::metadata(&e).unwrap();
        if md.is_dir() {
            assert_eq!(md.permissions().mode() & 0o777, 0o700, "{}", e.display());
            continue;
        }
        files += 1;
        assert_eq!(md.permissions().mode() & 0o777, 0o600, "{}", e.display());
        let bytes = std::fs::read(&e).unwrap();
        assert!(
            !bytes.windows(16).any(|w| w == b"PLAINTEXT-MARKER"),
            "plaintext in {}",
            e.display()
        );
    }
    assert!(files >= 4, "{files}");
}

pub(crate) fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if out[i].is_dir() {
            for e in std::fs::read_dir(&out[i]).unwrap() {
                out.push(e.unwrap().path());
            }
        }
        i += 1;
    }
    out
}

fn chunks(data: &[u8], sizes: &[usize]) -> Vec<Result<Bytes, std::io::Error>> {
    let mut out = Vec::new();
    let mut at = 0;
    for &s in sizes {
        let e = (at + s).min(data.len());
        out.push(Ok(Bytes::copy_from_slice(&data[at..e])));
        at = e;
    }
    out
}

#[tokio::test]
async fn upload_resumes_after_interruption_and_survives_crash_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let v = local(dir.path()).await;
    let k = DataKey::generate();
    let n = 3 * S as usize + 1234;
    let data = pattern(n, 11);
    v.upload_create(
        "u1",
        "obj1",
        &k,
        n as u64,
        SystemTime::now() + Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(v.upload_status("u1").await.unwrap().unwrap().offset, 0);
    let meta = v.upload_meta("u1").await.unwrap().unwrap();

    // first PATCH: 100 000 bytes, then the connection breaks
    let mut g = v.upload_lock("u1", Duration::from_secs(1)).await.unwrap();
    let mut c = chunks(&data[..100_000], &[1000, 50_000, 49_000]);
    c.push(Err(std::io::Error::other("connection reset")));
    let (end, off) = v
        .upload_append(
            &mut g,
            &k,
            &meta,
            futures_util::stream::iter(c),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!((end, off), (AppendEnd::Interrupted, 100_000));
    drop(g);
    assert_eq!(
        v.upload_status("u1").await.unwrap().unwrap().offset,
        100_000
    );

    // a crash mid-append: a torn half segment at the end of the data file
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("uploads/u1.data"))
            .unwrap();
        f.write_all(&[0u8; 777]).unwrap();
    }
    // wrong key: refused, nothing appended
    let mut g = v.upload_lock("u1", Duration::from_secs(1)).await.unwrap();
    let other = DataKey::generate();
    let c = chunks(&data[100_000..110_000], &[10_000]);
    assert!(matches!(
        v.upload_append(
            &mut g,
            &other,
            &meta,
            futures_util::stream::iter(c),
            Duration::from_secs(5)
        )
        .await,
        Err(VaultError::Tampered)
    ));
    // a process restart: the running hash is gone
    drop(g);
    let v = local(dir.path()).await;
    let mut g = v.upload_lock("u1", Duration::from_secs(1)).await.unwrap();
    let c = chunks(&data[100_000..], &[S as usize, 7, 90_000, n]);
    let (end, off) = v
        .upload_append(
            &mut g,
            &k,
            &meta,
            futures_util::stream::iter(c),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!((end, off), (AppendEnd::Complete, n as u64));
    let (meta2, info) = v.upload_finish(&mut g, &k).await.unwrap();
    assert_eq!(info.size, n as u64);
    assert_eq!(info.sha256, <[u8; 32]>::from(Sha256::digest(&data)));
    assert!(meta2.finished.is_some());
    // idempotent
    let (_, again) = v.upload_finish(&mut g, &k).await.unwrap();
    assert_eq!(again, info);
    assert_eq!(read_all(&v, &k, "obj1", None).await.unwrap(), data);
    assert!(!dir.path().join("uploads/u1.data").exists());
    assert_eq!(
        v.upload_status("u1").await.unwrap().unwrap().offset,
        n as u64
    );
}

#[tokio::test]
async fn upload_overflow_is_refused_and_stale_tail_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let v = local(dir.path()).await;
    let k = DataKey::generate();
    let n = S as usize + 10;
    let data = pattern(n + 50, 12);
    v.upload_create(
        "u2",
        "obj2",
        &k,
        n as u64,
        SystemTime::now() + Duration::from_secs(60),
    )
    .await
    .unwrap();
    let meta = v.upload_meta("u2").await.unwrap().unwrap();
    let mut g = v.upload_lock("u2", Duration::from_secs(1)).await.unwrap();
    let c = chunks(&data[..1000], &[1000]);
    v.upload_append(
        &mut g,
        &k,
        &meta,
        futures_util::stream::iter(c),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let stale_tail = std::fs::read(dir.path().join("uploads/u2.tail")).unwrap();
    // completes segment 0 and sends 60 bytes too many in the last chunk
    let c = chunks(&data[1000..], &[S as usize - 1000, 60]);
    let (end, off) = v
        .upload_append(
            &mut g,
            &k,
            &meta,
            futures_util::stream::iter(c),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!((end, off), (AppendEnd::Overflow, S));
    // simulate a crash between the segment append and the tail rewrite
    std::fs::write(dir.path().join("uploads/u2.tail"), &stale_tail).unwrap();
    drop(g);
    assert_eq!(v.upload_status("u2").await.unwrap().unwrap().offset, S);
    let mut g = v.upload_lock("u2", Duration::from_secs(1)).await.unwrap();
    let c = chunks(&data[S as usize..n], &[10]);
    let (end, off) = v
        .upload_append(
            &mut g,
            &k,
            &meta,
            futures_util::stream::iter(c),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!((end, off), (AppendEnd::Complete, n as u64));
    v.upload_finish(&mut g, &k).await.unwrap();
    assert_eq!(read_all(&v, &k, "obj2", None).await.unwrap(), &data[..n]);
}

#[tokio::test]
async fn purge_expired_removes_unfinished_uploads_only_when_expired() {
    let dir = tempfile::tempdir().unwrap();
    let v = local(dir.path()).await;
    let k = DataKey::generate();
    v.upload_create(
        "old",
        "o1",
        &k,
        10,
        SystemTime::now() - Duration::from_secs(1),
    )
    .await
    .unwrap();
    v.upload_create(
        "new",
        "o2",
        &k,
        10,
        SystemTime::now() + Duration::from_secs(3600),
    )
    .await
    .unwrap();
    let gone = v.purge_expired().await.unwrap();
    assert_eq!(gone, vec!["old".to_string()]);
    assert!(v.upload_meta("old").await.unwrap().is_none());
    assert!(!dir.path().join("uploads/old.data").exists());
    assert!(!dir.path().join("uploads/old.tail").exists());
    assert!(v.upload_meta("new").await.unwrap().is_some());
}

/// A multi-megabyte upload in several PATCHes (one broken off): the
/// digest, hashed beside the sealing on the blocking pool once a body
/// passes `digest::OFFLOAD_AFTER`, is carried from one PATCH to the next and
/// equals SHA-256 of the plaintext; the object reads back whole and in
/// ranges across the read-ahead's block boundaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_digest_hashed_beside_sealing_equals_sha256_of_the_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let v = local(dir.path()).await;
    let k = DataKey::generate();
    let n = 40 * S as usize + 4321;
    let data = pattern(n, 21);
    v.upload_create(
        "big",
        "bigobj",
        &k,
        n as u64,
        SystemTime::now() + Duration::from_secs(60),
    )
    .await
    .unwrap();
    let meta = v.upload_meta("big").await.unwrap().unwrap();
    let mut g = v.upload_lock("big", Duration::from_secs(1)).await.unwrap();
    // 2.5 MiB in odd pieces, then the connection breaks
    let cut = 2_621_447;
    let sizes: Vec<usize> = std::iter::repeat_n(16_411, cut / 16_411 + 1).collect();
    let mut c = chunks(&data[..cut], &sizes);
    c.push(Err(std::io::Error::other("connection reset")));
    let (end, off) = v
        .upload_append(
            &mut g,
            &k,
            &meta,
            futures_util::stream::iter(c),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!((end, off), (AppendEnd::Interrupted, cut as u64));
    assert_eq!(g.hashed_offset(), Some(cut as u64), "digest kept");
    let c = chunks(&data[cut..], &[300_000; 1000]);
    let (end, off) = v
        .upload_append(
            &mut g,
            &k,
            &meta,
            futures_util::stream::iter(c),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!((end, off), (AppendEnd::Complete, n as u64));
    assert_eq!(g.hashed_offset(), Some(n as u64), "digest kept");
    let (_, info) = v.upload_finish(&mut g, &k).await.unwrap();
    assert_eq!(info.size, n as u64);
    assert_eq!(info.sha256, <[u8; 32]>::from(Sha256::digest(&data)));
    assert_eq!(
        std::fs::metadata(object_path(dir.path(), "bigobj"))
            .unwrap()
            .len(),
        crypto::sealed_len(n as u64)
    );
    assert_eq!(read_all(&v, &k, "bigobj", None).await.unwrap(), data);
    let b = READ_SEGS * S;
    for (a, z) in [
        (b - 5, b + 5),
        (b, 2 * b),
        (15 * S + 3, 33 * S + 1),
        (0, n as u64),
        (n as u64 - 1, n as u64),
        (2 * b + 1, 2 * b + 1),
    ] {
        assert_eq!(
            read_all(&v, &k, "bigobj", Some((a, z))).await.unwrap(),
            &data[a as usize..z as usize],
            "{a}..{z}"
        );
    }
    // put() takes the same path and agrees
    let info2 = v.put(&k, "bigput", &data[..]).await.unwrap();
    assert_eq!(info2, info);
    assert_eq!(read_all(&v, &k, "bigput", None).await.unwrap(), data);
}

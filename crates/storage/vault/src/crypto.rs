//! Keys and the segment format.
//!
//! * [`Kek`]: the key-encryption key (32 bytes from a file or an environment
//!   variable, hex or base64).
//! * [`DataKey`]: a random 256-bit key per package, stored only wrapped by
//!   the KEK (AES-256-GCM, random nonce: `01 | nonce(12) | ct(32) | tag(16)`).
//! * [`ObjectCipher`]: one object's encryption. The object key is
//!   HKDF-SHA256(data key, salt from the header), so objects of one package
//!   never share a GCM key. The plaintext is cut into [`SEGMENT`]-byte
//!   segments, each sealed with AES-256-GCM under the nonce
//!   `prefix(7) | counter(u32 BE) | last(1)` (the STREAM construction of
//!   Hoang, Reyhanitabar, Rogaway and Vizár, as in `aead::stream`'s
//!   `StreamBE32`) and the header as associated data. Every segment but the
//!   last is full; the last holds 0..SEGMENT-1 bytes and carries the last
//!   flag, so truncation, reordering, splicing of another object's segments
//!   and bit flips all fail authentication.
//!
//! Object layout: `header(48) | seg 0 | seg 1 | ... | last seg`, each segment
//! its ciphertext followed by its 16-byte tag.
use crate::VaultError;
use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{AeadInPlace, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use hkdf::Hkdf;
use sha2::Sha256;
use std::path::Path;
use zeroize::{Zeroize, Zeroizing};

/// Plaintext bytes per segment.
pub const SEGMENT: usize = 64 * 1024;
/// GCM tag bytes after each segment.
pub const TAG: usize = 16;
/// Ciphertext bytes of a full segment.
pub const SEALED: usize = SEGMENT + TAG;
/// Object header bytes.
pub const HEADER_LEN: usize = 48;

const MAGIC: &[u8; 4] = b"MVLT";
const VERSION: u8 = 1;
const SEGMENT_LOG2: u8 = 16;
const WRAP_VERSION: u8 = 1;
const WRAPPED_LEN: usize = 1 + 12 + 32 + TAG;
const WRAP_AAD: &[u8] = b"moat-vault data key v1";

/// The key-encryption key: it only wraps and unwraps [`DataKey`]s.
pub struct Kek {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

/// The segments' key for aws-lc's AES-256-GCM.
fn segment_key(k: &[u8; 32]) -> aws_lc_rs::aead::LessSafeKey {
    // A 32-byte key is always a valid AES-256 key.
    let key = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, k)
        .unwrap_or_else(|_| unreachable_len());
    aws_lc_rs::aead::LessSafeKey::new(key)
}

fn decode_key(text: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
    let mut out = Zeroizing::new([0u8; 32]);
    let s = std::str::from_utf8(text).ok()?.trim();
    if s.len() == 64 && hex::decode_to_slice(s, &mut out[..]).is_ok() {
        return Some(out);
    }
    let mut raw = Zeroizing::new(Vec::with_capacity(48));
    for engine in [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE,
    ] {
        raw.clear();
        if engine.decode_vec(s, &mut raw).is_ok() && raw.len() == 32 {
            out.copy_from_slice(&raw);
            return Some(out);
        }
    }
    None
}

impl Kek {
    pub fn from_bytes(bytes: &[u8; 32]) -> Kek {
        Kek {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(bytes)),
        }
    }

    /// A fresh random KEK (tests, first start).
    pub fn generate() -> (Kek, Zeroizing<String>) {
        let mut k = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(&mut k[..]);
        (Kek::from_bytes(&k), Zeroizing::new(hex::encode(&k[..])))
    }

    /// A key file: 64 hex characters or base64 of 32 bytes (surrounding
    /// white space ignored), or exactly 32 raw bytes. A file readable by
    /// group or others is accepted with a warning.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Kek, VaultError> {
        use std::io::Read;
        let path = path.as_ref();
        let f = std::fs::File::open(path)
            .map_err(|e| VaultError::Key(format!("KEK file {}: {e}", path.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = f.metadata()
                && m.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(path = %path.display(), "KEK file is readable by group or others; chmod 600 it");
            }
        }
        let mut buf = Zeroizing::new(Vec::with_capacity(128));
        #[allow(clippy::disallowed_methods)] // bounded by take()
        f.take(4096)
            .read_to_end(&mut buf)
            .map_err(|e| VaultError::Key(format!("KEK file {}: {e}", path.display())))?;
        if let Some(k) = decode_key(&buf) {
            return Ok(Kek::from_bytes(&k));
        }
        if buf.len() == 32 {
            let mut k = Zeroizing::new([0u8; 32]);
            k.copy_from_slice(&buf);
            return Ok(Kek::from_bytes(&k));
        }
        Err(VaultError::Key(format!(
            "KEK file {}: expected 64 hex characters, base64 of 32 bytes or 32 raw bytes",
            path.display()
        )))
    }

    /// An environment variable holding 64 hex characters or base64 of 32 bytes.
    pub fn from_env(var: &str) -> Result<Kek, VaultError> {
        let v = Zeroizing::new(
            std::env::var(var)
                .map_err(|_| VaultError::Key(format!("environment variable {var} is not set")))?,
        );
        decode_key(v.as_bytes())
            .map(|k| Kek::from_bytes(&k))
            .ok_or_else(|| {
                VaultError::Key(format!(
                    "{var}: expected 64 hex characters or base64 of 32 bytes"
                ))
            })
    }

    /// Load the key file, or create it (0600, 64 hex characters) with a new
    /// random key when it does not exist.
    pub fn load_or_create(path: impl AsRef<Path>) -> Result<Kek, VaultError> {
        let path = path.as_ref();
        if path.exists() {
            return Kek::from_file(path);
        }
        let (kek, text) = Kek::generate();
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".kek-")
            .tempfile_in(dir)
            .map_err(|e| VaultError::Key(format!("KEK file {}: {e}", path.display())))?;
        use std::io::Write;
        tmp.write_all(text.as_bytes())
            .and_then(|_| tmp.write_all(b"\n"))
            .and_then(|_| tmp.as_file().sync_all())
            .map_err(|e| VaultError::Key(format!("KEK file {}: {e}", path.display())))?;
        // persist_noclobber: two processes starting at once agree on one key.
        match tmp.persist_noclobber(path) {
            Ok(_) => Ok(kek),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Kek::from_file(path),
            Err(e) => Err(VaultError::Key(format!(
                "KEK file {}: {}",
                path.display(),
                e.error
            ))),
        }
    }
}

/// A package's data key. Zeroed on drop; never printed.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    pub fn generate() -> DataKey {
        let mut k = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(&mut k[..]);
        DataKey(k)
    }

    /// `01 | nonce(12) | AES-256-GCM(KEK, data key) with tag` (61 bytes).
    pub fn wrap(&self, kek: &Kek) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.push(WRAP_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&self.0[..]);
        let tag = kek
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), WRAP_AAD, &mut out[13..])
            .unwrap_or_else(|_| unreachable_len());
        out.extend_from_slice(&tag);
        out
    }

    /// Fails with [`VaultError::Tampered`] for a wrong KEK or an altered blob.
    pub fn unwrap(kek: &Kek, wrapped: &[u8]) -> Result<DataKey, VaultError> {
        if wrapped.len() != WRAPPED_LEN || wrapped[0] != WRAP_VERSION {
            return Err(VaultError::Format("wrapped data key".into()));
        }
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(&wrapped[13..45]);
        kek.cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(&wrapped[1..13]),
                WRAP_AAD,
                &mut k[..],
                aes_gcm::Tag::from_slice(&wrapped[45..]),
            )
            .map_err(|_| VaultError::Tampered)?;
        Ok(DataKey(k))
    }
}

// AES-GCM encryption only fails for messages over 64 GiB; ours are 64 KiB.
#[cold]
fn unreachable_len<T>() -> T {
    panic!("AES-GCM refused a segment-sized message")
}

/// Re-wrap data keys under a new KEK without touching any object: each
/// input is unwrapped with `old` and wrapped with `new`, in order. One key
/// that does not unwrap fails the whole call (nothing is half rotated).
pub fn rotate_kek(old: &Kek, new: &Kek, wrapped: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, VaultError> {
    wrapped
        .iter()
        .map(|w| DataKey::unwrap(old, w).map(|k| k.wrap(new)))
        .collect()
}

/// One object's cipher: derived key, nonce prefix and the header bound to
/// every segment.
pub struct ObjectCipher {
    /// The segments' AES-256-GCM (aws-lc: about 4x the throughput of the
    /// `aes-gcm` crate on this path, whose one-block GHASH was a quarter of
    /// an upload's CPU; the same standard AES-GCM, byte for byte).
    aead: aws_lc_rs::aead::LessSafeKey,
    tail: Aes256Gcm,
    prefix: [u8; 7],
    header: [u8; HEADER_LEN],
}

impl ObjectCipher {
    /// A new object: random salt and nonce prefix.
    pub fn new(key: &DataKey) -> ObjectCipher {
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(MAGIC);
        header[4] = VERSION;
        header[5] = SEGMENT_LOG2;
        OsRng.fill_bytes(&mut header[8..47]);
        Self::build(key, header)
    }

    /// An existing object's cipher from its header.
    pub fn from_header(key: &DataKey, header: &[u8]) -> Result<ObjectCipher, VaultError> {
        if header.len() != HEADER_LEN || &header[..4] != MAGIC {
            return Err(VaultError::Format("not a vault object".into()));
        }
        if header[4] != VERSION || header[5] != SEGMENT_LOG2 {
            return Err(VaultError::Format(format!(
                "object version {} segment 2^{}",
                header[4], header[5]
            )));
        }
        if header[6] != 0 || header[7] != 0 || header[47] != 0 {
            return Err(VaultError::Format("reserved header bytes set".into()));
        }
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(header);
        Ok(Self::build(key, h))
    }

    fn build(key: &DataKey, header: [u8; HEADER_LEN]) -> ObjectCipher {
        let hk = Hkdf::<Sha256>::new(Some(&header[8..40]), &key.0[..]);
        let mut k = Zeroizing::new([0u8; 32]);
        let mut t = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit.
        let _ = hk.expand(b"moat-vault v1 segments", &mut k[..]);
        let _ = hk.expand(b"moat-vault v1 upload tail", &mut t[..]);
        let mut prefix = [0u8; 7];
        prefix.copy_from_slice(&header[40..47]);
        ObjectCipher {
            aead: segment_key(&k),
            tail: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&t[..])),
            prefix,
            header,
        }
    }

    pub fn header(&self) -> &[u8; HEADER_LEN] {
        &self.header
    }

    fn nonce(&self, index: u32, last: bool) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[..7].copy_from_slice(&self.prefix);
        n[7..11].copy_from_slice(&index.to_be_bytes());
        n[11] = u8::from(last);
        n
    }

    /// Encrypt `buf` (a full segment, or the last one) in place and append its tag.
    pub fn seal(&self, index: u32, last: bool, buf: &mut Vec<u8>) {
        let tag = self.seal_detached(index, last, buf);
        buf.extend_from_slice(&tag);
    }

    /// Encrypt `buf` (a full segment, or the last one) in place; returns its tag.
    pub fn seal_detached(&self, index: u32, last: bool, buf: &mut [u8]) -> [u8; TAG] {
        debug_assert!(buf.len() <= SEGMENT && (last || buf.len() == SEGMENT));
        let nonce = aws_lc_rs::aead::Nonce::assume_unique_for_key(self.nonce(index, last));
        let tag = self
            .aead
            .seal_in_place_separate_tag(nonce, aws_lc_rs::aead::Aad::from(&self.header[..]), buf)
            .unwrap_or_else(|_| unreachable_len());
        let mut out = [0u8; TAG];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Decrypt a sealed segment in place (the tag is removed).
    pub fn open(&self, index: u32, last: bool, buf: &mut Vec<u8>) -> Result<(), VaultError> {
        if buf.len() < TAG {
            return Err(VaultError::Tampered);
        }
        let nonce = aws_lc_rs::aead::Nonce::assume_unique_for_key(self.nonce(index, last));
        match self
            .aead
            .open_in_place(nonce, aws_lc_rs::aead::Aad::from(&self.header[..]), buf)
        {
            Ok(plain) => {
                let n = plain.len();
                buf.truncate(n);
                Ok(())
            }
            Err(_) => {
                buf.zeroize();
                buf.clear();
                Err(VaultError::Tampered)
            }
        }
    }

    /// The record of a partial upload's unfinished segment `base`:
    /// `base(4) | random nonce(12) | ciphertext | tag`, under a key of its
    /// own (it is rewritten on every PATCH, so it cannot use the segment
    /// nonces).
    pub fn seal_tail(&self, base: u32, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 12 + plain.len() + TAG);
        out.extend_from_slice(&base.to_be_bytes());
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .tail
            .encrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                &tail_aad(&self.header, base),
                &mut out[16..],
            )
            .unwrap_or_else(|_| unreachable_len());
        out.extend_from_slice(&tag);
        out
    }

    /// Returns `(base, plaintext)`.
    pub fn open_tail(&self, rec: &[u8]) -> Result<(u32, Vec<u8>), VaultError> {
        if rec.len() < 16 + TAG || rec.len() > 16 + SEGMENT + TAG {
            return Err(VaultError::Tampered);
        }
        let base = u32::from_be_bytes([rec[0], rec[1], rec[2], rec[3]]);
        let split = rec.len() - TAG;
        let mut plain = rec[16..split].to_vec();
        self.tail
            .decrypt_in_place_detached(
                Nonce::from_slice(&rec[4..16]),
                &tail_aad(&self.header, base),
                &mut plain,
                aes_gcm::Tag::from_slice(&rec[split..]),
            )
            .map_err(|_| VaultError::Tampered)?;
        Ok((base, plain))
    }
}

fn tail_aad(header: &[u8; HEADER_LEN], base: u32) -> [u8; HEADER_LEN + 4] {
    let mut a = [0u8; HEADER_LEN + 4];
    a[..HEADER_LEN].copy_from_slice(header);
    a[HEADER_LEN..].copy_from_slice(&base.to_be_bytes());
    a
}

/// Ciphertext length of an object holding `plain` bytes.
pub fn sealed_len(plain: u64) -> u64 {
    let full = plain / SEGMENT as u64;
    let rest = plain % SEGMENT as u64;
    HEADER_LEN as u64 + full * SEALED as u64 + rest + TAG as u64
}

/// Plaintext length of an object whose ciphertext is `sealed` bytes, or
/// `None` when no object can have that length (truncated or padded).
pub fn plain_len(sealed: u64) -> Option<u64> {
    let body = sealed.checked_sub(HEADER_LEN as u64)?;
    let full = body / SEALED as u64;
    let rem = body % SEALED as u64;
    let last = rem.checked_sub(TAG as u64)?;
    Some(full * SEGMENT as u64 + last)
}

/// Segments needed for `plain` bytes (the last one possibly empty).
pub fn segment_count(plain: u64) -> u64 {
    plain / SEGMENT as u64 + 1
}

/// The largest object the format can hold (u32 segment counter).
pub const MAX_PLAIN: u64 = (u32::MAX as u64) * SEGMENT as u64;

#[cfg(test)]
mod tests {
    use super::*;

    /// Segments sealed through aws-lc are the AES-256-GCM the `aes-gcm`
    /// crate wrote before (objects stored by earlier versions still open,
    /// and the other way round).
    #[test]
    fn segments_are_standard_aes_gcm_interchangeable_with_the_aes_gcm_crate() {
        let key = DataKey::generate();
        let c = ObjectCipher::new(&key);
        let hk = Hkdf::<Sha256>::new(Some(&c.header()[8..40]), &key.0[..]);
        let mut k = [0u8; 32];
        let _ = hk.expand(b"moat-vault v1 segments", &mut k[..]);
        let old = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&k));
        let plain: Vec<u8> = (0..SEGMENT).map(|i| (i * 7 % 251) as u8).collect();
        // Sealed here, opened by aes-gcm.
        let mut seg = plain.clone();
        c.seal(5, false, &mut seg);
        let split = seg.len() - TAG;
        let tag = aes_gcm::Tag::clone_from_slice(&seg[split..]);
        let mut body = seg[..split].to_vec();
        old.decrypt_in_place_detached(
            Nonce::from_slice(&c.nonce(5, false)),
            c.header(),
            &mut body,
            &tag,
        )
        .unwrap();
        assert_eq!(body, plain);
        // Sealed by aes-gcm (as stored before), opened here.
        let mut body = plain[..1000].to_vec();
        let tag = old
            .encrypt_in_place_detached(Nonce::from_slice(&c.nonce(9, true)), c.header(), &mut body)
            .unwrap();
        body.extend_from_slice(&tag);
        c.open(9, true, &mut body).unwrap();
        assert_eq!(body, &plain[..1000]);
        // A wrong index (nonce) is refused and leaves nothing behind.
        let mut again = seg.clone();
        assert!(c.open(6, false, &mut again).is_err());
        assert!(again.is_empty());
    }

    #[test]
    fn lengths_round_trip() {
        for n in [
            0u64,
            1,
            100,
            SEGMENT as u64 - 1,
            SEGMENT as u64,
            SEGMENT as u64 + 1,
            3 * SEGMENT as u64,
            10_000_000,
        ] {
            assert_eq!(plain_len(sealed_len(n)), Some(n), "{n}");
        }
        assert_eq!(plain_len(HEADER_LEN as u64 + 15), None);
        assert_eq!(plain_len(HEADER_LEN as u64 + SEALED as u64 + 3), None);
    }

    #[test]
    fn wrap_unwrap_and_wrong_kek() {
        let (kek, _) = Kek::generate();
        let (other, _) = Kek::generate();
        let dk = DataKey::generate();
        let w = dk.wrap(&kek);
        assert_eq!(w.len(), WRAPPED_LEN);
        let back = DataKey::unwrap(&kek, &w).unwrap();
        assert_eq!(back.0[..], dk.0[..]);
        assert!(matches!(
            DataKey::unwrap(&other, &w),
            Err(VaultError::Tampered)
        ));
        let mut bad = w.clone();
        bad[20] ^= 1;
        assert!(matches!(
            DataKey::unwrap(&kek, &bad),
            Err(VaultError::Tampered)
        ));
        assert!(DataKey::unwrap(&kek, &w[..40]).is_err());
    }

    #[test]
    fn rotate_kek_rewraps_every_key_and_refuses_a_foreign_one() {
        let (old, _) = Kek::generate();
        let (new, _) = Kek::generate();
        let keys: Vec<DataKey> = (0..3).map(|_| DataKey::generate()).collect();
        let wrapped: Vec<Vec<u8>> = keys.iter().map(|k| k.wrap(&old)).collect();
        let rotated = rotate_kek(&old, &new, &wrapped).unwrap();
        for (k, w) in keys.iter().zip(&rotated) {
            assert_eq!(DataKey::unwrap(&new, w).unwrap().0[..], k.0[..]);
            assert!(DataKey::unwrap(&old, w).is_err());
        }
        let mut mixed = wrapped.clone();
        mixed.push(DataKey::generate().wrap(&new));
        assert!(rotate_kek(&old, &new, &mixed).is_err());
    }

    #[test]
    fn kek_from_file_and_env_formats() {
        let dir = tempfile::tempdir().unwrap();
        let raw = [7u8; 32];
        let hexp = dir.path().join("hex");
        std::fs::write(&hexp, format!("{}\n", hex::encode(raw))).unwrap();
        let b64p = dir.path().join("b64");
        std::fs::write(&b64p, base64::engine::general_purpose::STANDARD.encode(raw)).unwrap();
        let rawp = dir.path().join("raw");
        std::fs::write(&rawp, raw).unwrap();
        let dk = DataKey::generate();
        let w = dk.wrap(&Kek::from_bytes(&raw));
        for p in [&hexp, &b64p, &rawp] {
            let k = Kek::from_file(p).unwrap();
            assert!(DataKey::unwrap(&k, &w).is_ok(), "{}", p.display());
        }
        std::fs::write(dir.path().join("short"), "abcd").unwrap();
        assert!(Kek::from_file(dir.path().join("short")).is_err());
        assert!(Kek::from_env("MOAT_VAULT_TEST_SURELY_UNSET").is_err());

        let created = dir.path().join("created.key");
        let k1 = Kek::load_or_create(&created).unwrap();
        let w1 = dk.wrap(&k1);
        let k2 = Kek::load_or_create(&created).unwrap();
        assert!(DataKey::unwrap(&k2, &w1).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&created).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn segment_nonce_binds_index_and_last_flag() {
        let dk = DataKey::generate();
        let c = ObjectCipher::new(&dk);
        let mut seg = vec![5u8; SEGMENT];
        c.seal(3, false, &mut seg);
        let sealed = seg.clone();
        let mut s = sealed.clone();
        assert!(c.open(4, false, &mut s).is_err());
        let mut s = sealed.clone();
        assert!(c.open(3, true, &mut s).is_err());
        let mut s = sealed.clone();
        c.open(3, false, &mut s).unwrap();
        assert_eq!(s, vec![5u8; SEGMENT]);
        // another object of the same package (same data key) cannot open it
        let c2 = ObjectCipher::new(&dk);
        let mut s = sealed.clone();
        assert!(c2.open(3, false, &mut s).is_err());
        // the header is authenticated: a reopened cipher works, a changed one not
        let c3 = ObjectCipher::from_header(&dk, c.header()).unwrap();
        let mut s = sealed.clone();
        c3.open(3, false, &mut s).unwrap();
        let mut h = *c.header();
        h[45] ^= 1;
        let c4 = ObjectCipher::from_header(&dk, &h).unwrap();
        let mut s = sealed;
        assert!(c4.open(3, false, &mut s).is_err());
    }

    #[test]
    fn tail_record_round_trip_and_tamper() {
        let dk = DataKey::generate();
        let c = ObjectCipher::new(&dk);
        let rec = c.seal_tail(9, b"partial bytes");
        let (base, plain) = c.open_tail(&rec).unwrap();
        assert_eq!((base, plain.as_slice()), (9, &b"partial bytes"[..]));
        let mut bad = rec.clone();
        bad[3] ^= 1; // base changed
        assert!(c.open_tail(&bad).is_err());
        let mut bad = rec;
        bad[20] ^= 1;
        assert!(c.open_tail(&bad).is_err());
    }
}

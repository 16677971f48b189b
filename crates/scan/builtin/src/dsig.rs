//! ClamAV's digital signatures on its databases (libclamav/dsig.c), checked
//! with ClamAV's published public keys.
//!
//! * A `.cvd` header carries the MD5 of the archive after the header and an
//!   RSA signature of it ([`verify_md5`], `cli_versig`): the signature is a
//!   number written in base 64 (least significant digit first, ClamAV's own
//!   alphabet), raised to `E` modulo `N`; the result, as big-endian bytes,
//!   must be the 16 bytes of the MD5.
//! * The `.info` member of a `.cvd`/`.cld` ends with `DSIG:` and an RSA-PSS
//!   style signature of the SHA-256 of the lines before it, under a second,
//!   2048-bit key ([`verify_sha256`], `cli_versig2`).
//! * A `.cdiff` (incremental update) ends with `:` and a signature of the
//!   SHA-256 of everything before it, in the same scheme under a third key
//!   (`libclamav_rust/src/cdiff.rs`).
//!
//! [`Keys`] holds the three public keys: ClamAV's by default
//! ([`Keys::clamav`]), or one key of the operator's for all three roles
//! ([`Keys::single`], for private mirrors that sign their own databases and
//! for tests), read from a PEM file or ClamAV's decimal `N`/`E` form
//! ([`PublicKey::parse`]).

use num_bigint::BigUint;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// The modulus of the key that signs `.cvd` headers (`CLI_NSTR`).
const CVD_N: &str = "118640995551645342603070001658453189751527774412027743746599405743243142607464144767361060640655844749760788890022283424922762488917565551002467771109669598189410434699034532232228621591089508178591428456220796841621637175567590476666928698770143328137383952820383197532047771780196576957695822641224262693037";
/// Its public exponent (`CLI_ESTR`).
const CVD_E: &str = "100001027";
/// The modulus of the key that signs `.info` members (`INFO_NSTR`).
const INFO_N: &str = "11088894983048545473659556106627194923928941791795047620591658697413581043322715912172496806525381055880964520618400224333320534660299233983755341740679502866829909679955734391392668378361221524205396631090105151641270857277080310734320951653700508941717419168723942507890702904702707587451621691050754307850383399865346487203798464178537392211402786481359824461197231102895415093770394216666324484593935762408468516826633192140826667923494822045805347809932848454845886971706424360558667862775876072059437703365380209101697738577515476935085469455279994113145977994084618328482151013142393373316337519977244732747977";
/// Its public exponent (`INFO_ESTR`).
const INFO_E: &str = "100002049";

/// The modulus of the key that signs `.cdiff` files (`PUBLIC_KEY_MODULUS` in cdiff.rs).
const CDIFF_N: &str = "14783905874077467090262228516557917570254599638376203532031989214105552847269687489771975792123442185817287694951949800908791527542017115600501303394778618535864845235700041590056318230102449612217458549016089313306591388590790796515819654102320725712300822356348724011232654837503241736177907784198700834440681124727060540035754699658105895050096576226753008596881698828185652424901921668758326578462003247906470982092298106789657211905488986281078346361469524484829559560886227198091995498440676639639830463593211386055065360288422394053998134458623712540683294034953818412458362198117811990006021989844180721010947";
/// Its public exponent (`PUBLIC_KEY_EXPONENT`).
const CDIFF_E: &str = "100002053";

const HASH_LEN: usize = 32;
/// Salt bytes of a `cli_versig2` signature.
pub const SALT_LEN: usize = 32;
/// Longest signature text accepted (a 2048-bit number is 342 digits; a
/// `.cdiff` signature is at most 350 bytes).
const MAX_SIG_CHARS: usize = 1024;
/// The rsaEncryption algorithm of a SubjectPublicKeyInfo.
const RSA_ENCRYPTION: spki::ObjectIdentifier =
    spki::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// Largest key accepted (bits).
const MAX_KEY_BITS: u64 = 8192;

fn decimal(s: &str) -> Option<BigUint> {
    BigUint::parse_bytes(s.as_bytes(), 10)
}

/// An RSA public key, as ClamAV's signatures use it (raw modular
/// exponentiation; the padding is checked by the verifiers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    n: BigUint,
    e: BigUint,
}

/// Why a public key could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM RSA public key nor ClamAV's N=/E= decimal form")]
    Unrecognised,
    #[error("bad PEM public key: {0}")]
    Pem(String),
    #[error("bad {0} value (expected a decimal number)")]
    BadNumber(&'static str),
    #[error("the key's modulus is {0} bits; between 512 and 8192 are accepted")]
    Size(u64),
}

impl PublicKey {
    /// From decimal strings (ClamAV's form: `CLI_NSTR`/`CLI_ESTR`).
    pub fn from_decimal(n: &str, e: &str) -> Result<PublicKey, KeyError> {
        let n = decimal(n.trim()).ok_or(KeyError::BadNumber("N"))?;
        let e = decimal(e.trim()).ok_or(KeyError::BadNumber("E"))?;
        PublicKey::new(n, e)
    }

    /// From big-endian bytes.
    pub fn from_be_bytes(n: &[u8], e: &[u8]) -> Result<PublicKey, KeyError> {
        PublicKey::new(BigUint::from_bytes_be(n), BigUint::from_bytes_be(e))
    }

    fn new(n: BigUint, e: BigUint) -> Result<PublicKey, KeyError> {
        if !(512..=MAX_KEY_BITS).contains(&n.bits()) {
            return Err(KeyError::Size(n.bits()));
        }
        if e.bits() == 0 {
            return Err(KeyError::BadNumber("E"));
        }
        Ok(PublicKey { n, e })
    }

    /// Read a key file's text: a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) or
    /// `RSA PUBLIC KEY` (PKCS#1), or ClamAV's decimal form, one `N=` and one
    /// `E=` line (`#` comments and blank lines ignored).
    pub fn parse(text: &str) -> Result<PublicKey, KeyError> {
        let t = text.trim();
        if t.starts_with("-----BEGIN") {
            return PublicKey::from_pem(t);
        }
        let (mut n, mut e) = (None, None);
        for line in t.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once(['=', ':']) else {
                return Err(KeyError::Unrecognised);
            };
            match k.trim() {
                "N" | "n" => n = Some(v),
                "E" | "e" => e = Some(v),
                _ => {}
            }
        }
        match (n, e) {
            (Some(n), Some(e)) => PublicKey::from_decimal(n, e),
            _ => Err(KeyError::Unrecognised),
        }
    }

    fn from_pem(text: &str) -> Result<PublicKey, KeyError> {
        use pkcs1::der::Decode;
        let pem = |e: &dyn std::fmt::Display| KeyError::Pem(e.to_string());
        let (label, der) = pkcs1::der::pem::decode_vec(text.as_bytes()).map_err(|e| pem(&e))?;
        let pkcs1_der = match label {
            "RSA PUBLIC KEY" => der,
            "PUBLIC KEY" => {
                let spki = spki::SubjectPublicKeyInfoRef::from_der(&der).map_err(|e| pem(&e))?;
                if spki.algorithm.oid != RSA_ENCRYPTION {
                    return Err(KeyError::Pem("not an RSA key".into()));
                }
                spki.subject_public_key
                    .as_bytes()
                    .ok_or_else(|| KeyError::Pem("unaligned key bits".into()))?
                    .to_vec()
            }
            other => return Err(KeyError::Pem(format!("unexpected PEM label {other:?}"))),
        };
        let k = pkcs1::RsaPublicKey::from_der(&pkcs1_der).map_err(|e| pem(&e))?;
        PublicKey::from_be_bytes(k.modulus.as_bytes(), k.public_exponent.as_bytes())
    }

    /// Bytes of the modulus.
    fn len(&self) -> usize {
        self.n.bits().div_ceil(8) as usize
    }

    /// The modulus and exponent (for signing test databases with the
    /// matching private exponent).
    pub fn parts(&self) -> (&BigUint, &BigUint) {
        (&self.n, &self.e)
    }
}

/// The public keys that sign the three kinds of signed data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// `.cvd` headers (the MD5 of the archive).
    pub cvd: PublicKey,
    /// `.info` members (`DSIG:` lines).
    pub info: PublicKey,
    /// `.cdiff` incremental updates.
    pub cdiff: PublicKey,
}

static CLAMAV: LazyLock<Keys> = LazyLock::new(|| {
    let k = |n: &str, e: &str| PublicKey {
        n: decimal(n).unwrap_or_default(),
        e: decimal(e).unwrap_or_default(),
    };
    Keys {
        cvd: k(CVD_N, CVD_E),
        info: k(INFO_N, INFO_E),
        cdiff: k(CDIFF_N, CDIFF_E),
    }
});

impl Keys {
    /// ClamAV's published keys (what the official databases are signed with).
    pub fn clamav() -> &'static Keys {
        &CLAMAV
    }

    /// One key for all three roles.
    pub fn single(k: PublicKey) -> Keys {
        Keys {
            cvd: k.clone(),
            info: k.clone(),
            cdiff: k,
        }
    }

    /// [`Keys::single`] over a key file's text ([`PublicKey::parse`]).
    pub fn parse(text: &str) -> Result<Keys, KeyError> {
        PublicKey::parse(text).map(Keys::single)
    }
}

/// Read a key file (at most 1 MiB) into [`Keys`] ([`Keys::parse`]).
pub fn read_key_file(p: &std::path::Path) -> Result<Keys, String> {
    use std::io::Read;
    let f = std::fs::File::open(p).map_err(|e| e.to_string())?;
    let mut text = String::new();
    #[allow(clippy::disallowed_methods)] // bounded by take()
    f.take(1 << 20)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    Keys::parse(&text).map_err(|e| e.to_string())
}

fn digit(c: u8) -> Option<u32> {
    Some(match c {
        b'a'..=b'z' => u32::from(c - b'a'),
        b'A'..=b'Z' => 26 + u32::from(c - b'A'),
        b'0'..=b'9' => 52 + u32::from(c - b'0'),
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    })
}

/// `cli_decodesig`: decode, raise to `e` mod `n`, and lay the big-endian
/// bytes at the start of `plen` zero bytes (as `BN_bn2bin` into a zeroed
/// buffer does); `None` when the text is not base 64 or the number is too long.
fn decode(sig: &str, plen: usize, key: &PublicKey) -> Option<Vec<u8>> {
    let sig = sig.trim_end_matches(['\r', '\n']);
    if sig.is_empty() || sig.len() > MAX_SIG_CHARS {
        return None;
    }
    let (n, e) = (&key.n, &key.e);
    let mut c = BigUint::default();
    for (i, ch) in sig.bytes().enumerate() {
        c += BigUint::from(digit(ch)?) << (6 * i);
    }
    let p = c.modpow(e, n);
    let bytes = if p.bits() == 0 {
        Vec::new()
    } else {
        p.to_bytes_be()
    };
    if bytes.len() > plen {
        return None;
    }
    let mut out = vec![0u8; plen];
    out[..bytes.len()].copy_from_slice(&bytes);
    Some(out)
}

/// Whether `dsig` signs `md5_hex` (32 hex digits) under ClamAV's `.cvd` key.
pub fn verify_md5(md5_hex: &str, dsig: &str) -> bool {
    verify_md5_with(&Keys::clamav().cvd, md5_hex, dsig)
}

/// Whether `dsig` signs `md5_hex` (32 hex digits) under `key` (`cli_versig`).
pub fn verify_md5_with(key: &PublicKey, md5_hex: &str, dsig: &str) -> bool {
    if md5_hex.len() != 32 || !md5_hex.as_bytes()[0].is_ascii_alphanumeric() {
        return false;
    }
    match decode(dsig, 16, key) {
        Some(plain) => hex::encode(plain).eq_ignore_ascii_case(md5_hex),
        None => false,
    }
}

/// Whether `dsig` signs `sha256` under ClamAV's `.info` key.
pub fn verify_sha256(sha256: &[u8; 32], dsig: &str) -> bool {
    verify_sha256_with(&Keys::clamav().info, sha256, dsig)
}

/// Whether `dsig` signs `sha256` under `key` (`cli_versig2`: the PSS-like
/// scheme with SHA-256, MGF1 and a 32-byte salt).
pub fn verify_sha256_with(key: &PublicKey, sha256: &[u8; 32], dsig: &str) -> bool {
    let pad_len = key.len();
    if pad_len < HASH_LEN + SALT_LEN + 2 {
        return false;
    }
    let blk_len = pad_len - HASH_LEN - 1;
    let Some(decoded) = decode(dsig, pad_len, key) else {
        return false;
    };
    if decoded[pad_len - 1] != 0xbc {
        return false;
    }
    let (mask, digest2) = (&decoded[..blk_len], &decoded[blk_len..blk_len + HASH_LEN]);
    let mut data = mgf1(digest2, blk_len);
    for (d, m) in data.iter_mut().zip(mask) {
        *d ^= m;
    }
    data[0] &= 0x7f;
    let Some(one) = data.iter().position(|&b| b == 0x01) else {
        return false;
    };
    let salt = &data[one + 1..];
    if salt.len() != SALT_LEN {
        return false;
    }
    pss_digest(sha256, salt).as_slice() == digest2
}

/// `SHA-256(0^8 || hash || salt)`, the digest a `cli_versig2` signature carries.
pub fn pss_digest(sha256: &[u8; 32], salt: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update([0u8; 8])
        .chain_update(sha256)
        .chain_update(salt)
        .finalize()
        .into()
}

/// MGF1 with SHA-256: `len` bytes of mask from `seed`.
pub fn mgf1(seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + HASH_LEN);
    let mut i: u32 = 0;
    while out.len() < len {
        let d = Sha256::new()
            .chain_update(seed)
            .chain_update(i.to_be_bytes())
            .finalize();
        out.extend_from_slice(&d);
        i += 1;
    }
    out.truncate(len);
    out
}

/// Encode a number in ClamAV's signature text (base 64, least significant
/// digit first; the inverse of the decoding the verifiers do).
pub fn encode_sig(c: &BigUint) -> String {
    const ALPHABET: &[u8; 64] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/";
    let digits = c.bits().div_ceil(6).max(1);
    (0..digits)
        .map(|i| {
            let d = (c >> (6 * i as usize)) & BigUint::from(63u8);
            let d = d.iter_u32_digits().next().unwrap_or(0) as usize;
            ALPHABET[d] as char
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The header of ClamAV's own unit-test database
    // unit_tests/input/freshclam_testfiles/test-1.cvd, signed with the
    // official key (`sigtool --info` says "Verification OK").
    const MD5: &str = "a4ab60ae1c1c4e8f787459102dcfd90b";
    const DSIG: &str = "ttQeKzTSL5iF5/IWsA8weveL64WDVkhgfbm/ABaW3xAWalVKcAp65Q/cWmhkhKFfHSLIXNfCzTLbhfTeISKpfWAheL7NZk+t6nQ8NEFBBst6CQcoFTwwyVLwwTSN38VYLW/vZFYphnkBcCotyo++NYU5VQ9JUA6dFQXxaU00b6c";

    #[test]
    fn a_real_cvd_signature_verifies_and_a_changed_one_does_not() {
        assert!(verify_md5(MD5, DSIG));
        assert!(!verify_md5("a4ab60ae1c1c4e8f787459102dcfd90c", DSIG));
        let mut bad = DSIG.to_string();
        bad.replace_range(0..1, "u");
        assert!(!verify_md5(MD5, &bad));
        assert!(!verify_md5(MD5, "not base64!"));
        assert!(!verify_md5(MD5, ""));
        assert!(!verify_md5("", DSIG));
    }

    /// The test key committed for signing test databases
    /// (crates/scan/update/testdata): the PEM and the N/E forms are the same key.
    #[test]
    fn a_key_reads_from_pem_and_from_clamav_form() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../update/testdata/");
        let pem = std::fs::read_to_string(format!("{dir}test-key.pub.pem")).unwrap();
        let ne = std::fs::read_to_string(format!("{dir}test-key.public.txt")).unwrap();
        let a = PublicKey::parse(&pem).unwrap();
        let b = PublicKey::parse(&ne).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.n.bits(), 2048);
        assert!(matches!(
            PublicKey::parse("hello"),
            Err(KeyError::Unrecognised)
        ));
        assert!(matches!(
            PublicKey::parse("N=12\nE=3"),
            Err(KeyError::Size(4))
        ));
        assert!(
            PublicKey::parse("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err()
        );
        // ClamAV's own keys are well formed.
        for k in [
            &Keys::clamav().cvd,
            &Keys::clamav().info,
            &Keys::clamav().cdiff,
        ] {
            assert!(k.n.bits() >= 1024, "{}", k.n.bits());
        }
    }

    #[test]
    fn encode_sig_is_the_inverse_of_decoding() {
        let key = &Keys::clamav().cvd;
        for v in [0u64, 1, 63, 64, 4095, 123_456_789_012] {
            let c = BigUint::from(v);
            let text = encode_sig(&c);
            let mut back = BigUint::default();
            for (i, ch) in text.bytes().enumerate() {
                back += BigUint::from(digit(ch).unwrap()) << (6 * i);
            }
            assert_eq!(back, c);
        }
        // The real signature re-encodes to itself.
        let mut c = BigUint::default();
        for (i, ch) in DSIG.bytes().enumerate() {
            c += BigUint::from(digit(ch).unwrap()) << (6 * i);
        }
        assert_eq!(encode_sig(&c), DSIG);
        assert!(verify_md5_with(key, MD5, DSIG));
    }
}

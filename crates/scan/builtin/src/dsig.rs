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

use num_bigint::BigUint;
use sha2::{Digest, Sha256};

/// The modulus of the key that signs `.cvd` headers (`CLI_NSTR`).
const CVD_N: &str = "118640995551645342603070001658453189751527774412027743746599405743243142607464144767361060640655844749760788890022283424922762488917565551002467771109669598189410434699034532232228621591089508178591428456220796841621637175567590476666928698770143328137383952820383197532047771780196576957695822641224262693037";
/// Its public exponent (`CLI_ESTR`).
const CVD_E: &str = "100001027";
/// The modulus of the key that signs `.info` members (`INFO_NSTR`).
const INFO_N: &str = "11088894983048545473659556106627194923928941791795047620591658697413581043322715912172496806525381055880964520618400224333320534660299233983755341740679502866829909679955734391392668378361221524205396631090105151641270857277080310734320951653700508941717419168723942507890702904702707587451621691050754307850383399865346487203798464178537392211402786481359824461197231102895415093770394216666324484593935762408468516826633192140826667923494822045805347809932848454845886971706424360558667862775876072059437703365380209101697738577515476935085469455279994113145977994084618328482151013142393373316337519977244732747977";
/// Its public exponent (`INFO_ESTR`).
const INFO_E: &str = "100002049";

const HASH_LEN: usize = 32;
const SALT_LEN: usize = 32;
/// Bytes of a decoded `.info` signature (2048 bits).
const PAD_LEN: usize = 2048 / 8;
const BLK_LEN: usize = PAD_LEN - HASH_LEN - 1;
/// Longest signature text accepted (a 2048-bit number is 342 digits).
const MAX_SIG_CHARS: usize = 1024;

fn decimal(s: &str) -> Option<BigUint> {
    BigUint::parse_bytes(s.as_bytes(), 10)
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
fn decode(sig: &str, plen: usize, n: &str, e: &str) -> Option<Vec<u8>> {
    let sig = sig.trim_end_matches(['\r', '\n']);
    if sig.is_empty() || sig.len() > MAX_SIG_CHARS {
        return None;
    }
    let (n, e) = (decimal(n)?, decimal(e)?);
    let mut c = BigUint::default();
    for (i, ch) in sig.bytes().enumerate() {
        c += BigUint::from(digit(ch)?) << (6 * i);
    }
    let p = c.modpow(&e, &n);
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
    if md5_hex.len() != 32 || !md5_hex.as_bytes()[0].is_ascii_alphanumeric() {
        return false;
    }
    match decode(dsig, 16, CVD_N, CVD_E) {
        Some(plain) => hex::encode(plain).eq_ignore_ascii_case(md5_hex),
        None => false,
    }
}

/// Whether `dsig` signs `sha256` under ClamAV's `.info` key.
pub fn verify_sha256(sha256: &[u8; 32], dsig: &str) -> bool {
    let Some(decoded) = decode(dsig, PAD_LEN, INFO_N, INFO_E) else {
        return false;
    };
    if decoded[PAD_LEN - 1] != 0xbc {
        return false;
    }
    let mask = &decoded[..BLK_LEN];
    let digest2 = &decoded[BLK_LEN..BLK_LEN + HASH_LEN];
    let mut data = [0u8; BLK_LEN];
    let rounds = BLK_LEN.div_ceil(HASH_LEN);
    for i in 0..rounds {
        let d3 = Sha256::new()
            .chain_update(digest2)
            .chain_update([0, 0, (i / 256) as u8, i as u8])
            .finalize();
        let at = i * HASH_LEN;
        let n = HASH_LEN.min(BLK_LEN - at);
        data[at..at + n].copy_from_slice(&d3[..n]);
    }
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
    let digest1 = Sha256::new()
        .chain_update([0u8; 8])
        .chain_update(sha256)
        .chain_update(salt)
        .finalize();
    digest1.as_slice() == digest2
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
}

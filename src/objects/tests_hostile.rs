//! Hostile material from a host answering for the vault: each is refused
//! with an error that names what is wrong and never the input's bytes,
//! without a panic and within the limits of `pfx_guard` and `jwk`.

use std::path::Path;

use base64::Engine;

use super::bundle::{from_secret, MAX_CERTIFICATES, MAX_PEM_BYTES};
use super::jwk::{to_pem, PublicJwk, MAX_RSA_BITS};
use super::pfx_guard::{self, Refusal, MAX_ELEMENTS, MAX_PFX_BYTES};
use super::tests::{openssl, self_signed};
use super::{ObjectError, PEM, PKCS12};

/// One DER element.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// A PFX-shaped file whose authenticated safe holds `safe`.
fn pfx_with(safe: Vec<u8>) -> Vec<u8> {
    let data_oid = tlv(
        0x06,
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01],
    );
    seq(&[
        tlv(0x02, &[3]),
        seq(&[data_oid, tlv(0xa0, &tlv(0x04, &safe))]),
    ])
}

fn b64(der: &[u8]) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .encode(der)
        .into_bytes()
}

fn refused(value: &[u8]) -> String {
    match from_secret(value, Some(PKCS12)) {
        Err(e @ ObjectError::Refused(_)) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn deep_nesting_is_refused() {
    let mut der = tlv(0x05, &[]);
    for _ in 0..64 {
        der = seq(&[der]);
    }
    assert_eq!(pfx_guard::check(&der), Err(Refusal::TooDeep));
    assert!(refused(&b64(&der)).contains("deeper than"));
}

#[test]
fn huge_bag_counts_are_refused() {
    let bags: Vec<Vec<u8>> = (0..MAX_ELEMENTS).map(|_| seq(&[])).collect();
    let pfx = pfx_with(seq(&bags));
    assert!(pfx.len() <= MAX_PFX_BYTES);
    assert_eq!(pfx_guard::check(&pfx), Err(Refusal::TooManyElements));
    assert!(refused(&b64(&pfx)).contains("DER elements"));
}

#[test]
fn absurd_iteration_counts_are_refused_before_any_derivation() {
    let salt = tlv(0x04, b"saltsalt");
    // PKCS#12 PBE parameters (salt, iterations) with 2^31 iterations.
    let params = seq(&[salt.clone(), tlv(0x02, &[0x00, 0x80, 0, 0, 0])]);
    let pfx = pfx_with(seq(&[seq(&[params])]));
    assert_eq!(pfx_guard::check(&pfx), Err(Refusal::TooManyIterations));
    // An integer longer than any count.
    let params = seq(&[salt.clone(), tlv(0x02, &[0x7f; 12])]);
    assert_eq!(
        pfx_guard::check(&pfx_with(seq(&[params]))),
        Err(Refusal::TooManyIterations)
    );
    // Many small counts add up.
    let many: Vec<Vec<u8>> = (0..40)
        .map(|_| seq(&[salt.clone(), tlv(0x02, &[0x00, 0x9c, 0x40])]))
        .collect();
    assert_eq!(
        pfx_guard::check(&pfx_with(seq(&many))),
        Err(Refusal::TooManyIterations)
    );
    let message = refused(&b64(&pfx));
    assert!(message.contains("iterations"), "{message}");
}

#[test]
fn scrypt_and_oversized_and_indefinite_lengths_are_refused() {
    let scrypt = tlv(
        0x06,
        &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xda, 0x47, 0x04, 0x0b],
    );
    assert_eq!(
        pfx_guard::check(&pfx_with(seq(&[seq(&[scrypt])]))),
        Err(Refusal::Scrypt)
    );
    let big = pfx_with(tlv(0x04, &vec![0u8; MAX_PFX_BYTES]));
    assert_eq!(pfx_guard::check(&big), Err(Refusal::TooLarge));
    assert!(refused(&b64(&big)).contains("larger than"));
    assert_eq!(
        pfx_guard::check(&[0x30, 0x80, 0x00, 0x00]),
        Err(Refusal::Malformed)
    );
}

/// A self-signed EC certificate and its key as a PFX, made by OpenSSL with
/// `extra` export options.
fn openssl_pfx(dir: &Path, extra: &[&str]) -> Vec<u8> {
    self_signed(dir, "hostile");
    let mut args = vec![
        "pkcs12", "-export", "-inkey", "k.pem", "-in", "c.pem", "-out", "h.pfx",
    ];
    args.extend_from_slice(extra);
    openssl(dir, &args);
    std::fs::read(dir.join("h.pfx")).unwrap()
}

#[test]
fn a_real_pfx_with_absurd_iterations_or_a_bad_mac_fails_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    // Three derivations (MAC, certificates, key) of 400,000 each.
    let slow = openssl_pfx(tmp.path(), &["-passout", "pass:", "-iter", "400000"]);
    assert_eq!(pfx_guard::check(&slow), Err(Refusal::TooManyIterations));
    let normal = openssl_pfx(tmp.path(), &["-passout", "pass:"]);
    assert_eq!(pfx_guard::check(&normal), Ok(()));
    // Another password: the MAC does not verify with the empty one.
    let other = openssl_pfx(tmp.path(), &["-passout", "pass:not-empty"]);
    match from_secret(&b64(&other), Some(PKCS12)) {
        Err(ObjectError::Pkcs12(m)) => assert!(!m.is_empty()),
        other => panic!("expected a PKCS#12 error, got {other:?}"),
    }
    // Truncated and bit-flipped files: errors, never panics.
    for cut in [1, normal.len() / 3, normal.len() - 1] {
        assert!(from_secret(&b64(&normal[..cut]), Some(PKCS12)).is_err());
    }
    for at in (0..normal.len()).step_by(97) {
        let mut flipped = normal.clone();
        flipped[at] ^= 0x55;
        let _ = from_secret(&b64(&flipped), Some(PKCS12));
    }
    assert!(from_secret(b"not base64 at all!", Some(PKCS12)).is_err());
}

#[test]
fn malformed_pem_is_refused_without_its_bytes() {
    let marker = "SECRETMARKER";
    let bad = format!("-----BEGIN CERTIFICATE-----\n{marker}!!\n-----END CERTIFICATE-----\n");
    let err = from_secret(bad.as_bytes(), Some(PEM)).unwrap_err();
    assert!(matches!(err, ObjectError::Pem(_)), "{err:?}");
    assert!(!err.to_string().contains(marker), "{err}");
    assert_eq!(
        from_secret(b"no blocks here", Some(PEM)).unwrap_err(),
        ObjectError::NoCertificate
    );
    let block = "-----BEGIN X-----\nAAAA\n-----END X-----\n";
    let many = block.repeat(MAX_CERTIFICATES + 1);
    assert!(matches!(
        from_secret(many.as_bytes(), Some(PEM)),
        Err(ObjectError::Refused(_))
    ));
    let huge = vec![b'A'; MAX_PEM_BYTES + 1];
    assert!(matches!(
        from_secret(&huge, Some(PEM)),
        Err(ObjectError::Refused(_))
    ));
    // A BEGIN without an END, and an END without a BEGIN.
    assert!(from_secret(b"-----BEGIN CERTIFICATE-----\nAAAA", Some(PEM)).is_err());
    assert!(from_secret(b"-----END CERTIFICATE-----\n", Some(PEM)).is_err());
}

fn rsa(n: Vec<u8>, e: Vec<u8>) -> PublicJwk {
    PublicJwk {
        kty: "RSA".into(),
        n: Some(n),
        e: Some(e),
        ..Default::default()
    }
}

#[test]
fn hostile_jwks_are_refused() {
    let mut huge = vec![0xffu8; MAX_RSA_BITS / 8 + 1];
    let err = to_pem(&rsa(huge.clone(), vec![1, 0, 1])).unwrap_err();
    assert!(matches!(err, ObjectError::Refused(_)), "{err:?}");
    assert!(err.to_string().contains("16384 bits"), "{err}");
    // Leading zero bytes do not count; the limit itself is accepted.
    huge[0] = 0;
    assert!(to_pem(&rsa(huge, vec![1, 0, 1])).is_ok());
    let err = to_pem(&rsa(vec![0xc5; 256], vec![0xff; 64])).unwrap_err();
    assert!(matches!(err, ObjectError::Refused(_)), "{err:?}");
    let ec = |crv: &str, len: usize| PublicJwk {
        kty: "EC".into(),
        crv: Some(crv.into()),
        x: Some(vec![1; len]),
        y: Some(vec![2; len]),
        ..Default::default()
    };
    for (jwk, what) in [
        (ec("P-256K", 32), "P-256K"),
        (ec("P-256", 4096), "too long"),
        (ec("P-256", 32), "not on P-256"),
    ] {
        let err = to_pem(&jwk).unwrap_err().to_string();
        assert!(err.contains(what), "{err}");
    }
    let err = to_pem(&PublicJwk {
        kty: "RSA".into(),
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("\"n\""), "{err}");
}

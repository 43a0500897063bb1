//! Public keys from JWKs byte-compared against OpenSSL's SPKI output.

use super::jwk::{to_pem, PublicJwk};
use super::tests::openssl;

#[test]
fn jwk_public_keys_match_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // RSA: n from the modulus, e = 65537.
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "rsa.key",
        ],
    );
    let modulus = openssl(d, &["rsa", "-in", "rsa.key", "-noout", "-modulus"]);
    let hex = String::from_utf8_lossy(&modulus)
        .trim()
        .trim_start_matches("Modulus=")
        .to_string();
    let n: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let jwk = PublicJwk {
        kty: "RSA".into(),
        n: Some(n),
        e: Some(vec![1, 0, 1]),
        ..Default::default()
    };
    assert_eq!(
        to_pem(&jwk).unwrap(),
        openssl(d, &["pkey", "-in", "rsa.key", "-pubout"])
    );
    for (crv, name, size) in [
        ("P-256", "prime256v1", 32),
        ("P-384", "secp384r1", 48),
        ("P-521", "secp521r1", 66),
    ] {
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                &format!("ec_paramgen_curve:{name}"),
                "-out",
                "ec.key",
            ],
        );
        let der = openssl(d, &["pkey", "-in", "ec.key", "-pubout", "-outform", "DER"]);
        let point = &der[der.len() - (1 + 2 * size)..];
        let jwk = PublicJwk {
            kty: "EC-HSM".into(),
            crv: Some(crv.into()),
            x: Some(point[1..1 + size].to_vec()),
            y: Some(point[1 + size..].to_vec()),
            ..Default::default()
        };
        assert_eq!(
            to_pem(&jwk).unwrap(),
            openssl(d, &["pkey", "-in", "ec.key", "-pubout"]),
            "{crv}"
        );
    }
}

#[test]
fn symmetric_and_secp256k1_keys_are_refused_clearly() {
    let oct = PublicJwk {
        kty: "oct".into(),
        ..Default::default()
    };
    let err = to_pem(&oct).unwrap_err().to_string();
    assert!(
        err.contains("oct") && err.contains("only RSA and EC"),
        "{err}"
    );
    let k1 = PublicJwk {
        kty: "EC".into(),
        crv: Some("P-256K".into()),
        x: Some(vec![1; 32]),
        y: Some(vec![2; 32]),
        ..Default::default()
    };
    let err = to_pem(&k1).unwrap_err().to_string();
    assert!(err.contains("P-256K"), "{err}");
    let off_curve = PublicJwk {
        kty: "EC".into(),
        crv: Some("P-256".into()),
        x: Some(vec![1; 32]),
        y: Some(vec![2; 32]),
        ..Default::default()
    };
    assert!(to_pem(&off_curve)
        .unwrap_err()
        .to_string()
        .contains("not on P-256"));
}

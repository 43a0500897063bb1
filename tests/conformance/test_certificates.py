"""The official Azure SDK for Python (azure-keyvault-certificates) against the emulator.

Self-signed creation (RSA and EC, PKCS#12 and PEM), PKCS#12 and PEM imports of chains made by the
emulator's admin API, versions, paging, policy, the backing secret read with
azure-keyvault-secrets and parsed independently with ``cryptography``, errors and deletion.
"""

import base64
import hashlib

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import WorkloadIdentityCredential
from azure.keyvault.certificates import (
    CertificateClient,
    CertificateContentType,
    CertificatePolicy,
    KeyCurveName,
    KeyType,
)
from azure.keyvault.secrets import SecretClient
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12


def clients(emulator):
    credential = WorkloadIdentityCredential()
    url = emulator.info["vault_url"]
    return (
        CertificateClient(url, credential, verify_challenge_resource=False),
        SecretClient(url, credential, verify_challenge_resource=False),
    )


def chain(emulator, kty="RSA"):
    return emulator.admin("POST", "/test-chain", {"kty": kty, "cn": "tls.example.com"}, expect=200)


def der(pem_text):
    return x509.load_pem_x509_certificate(pem_text.encode()).public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    "key_type,curve,content_type",
    [
        (KeyType.rsa, None, CertificateContentType.pkcs12),
        (KeyType.ec, KeyCurveName.p_256, CertificateContentType.pem),
        (KeyType.ec, KeyCurveName.p_521, CertificateContentType.pkcs12),
    ],
)
def test_create_self_signed_and_read_the_secret(emulator, key_type, curve, content_type):
    certs, secrets = clients(emulator)
    policy = CertificatePolicy(
        issuer_name="Self",
        subject="CN=app.example.com",
        san_dns_names=["app.example.com"],
        key_type=key_type,
        key_curve_name=curve,
        content_type=content_type,
        exportable=True,
        validity_in_months=12,
    )
    cert = certs.begin_create_certificate("app", policy, _polling_interval=0).result()
    assert cert.name == "app"
    assert cert.properties.x509_thumbprint == hashlib.sha1(cert.cer).digest()
    assert cert.key_id.endswith(f"/keys/app/{cert.properties.version}")
    assert cert.secret_id.endswith(f"/secrets/app/{cert.properties.version}")
    leaf = x509.load_der_x509_certificate(bytes(cert.cer))
    assert leaf.subject.rfc4514_string() == "CN=app.example.com"
    assert cert.policy.key_type == key_type
    assert cert.policy.content_type == content_type
    assert certs.get_certificate_policy("app").subject == "CN=app.example.com"

    secret = secrets.get_secret("app")
    assert secret.properties.managed is True
    assert secret.properties.key_id == cert.key_id
    assert secret.properties.content_type == content_type
    if content_type == CertificateContentType.pem:
        key = serialization.load_pem_private_key(secret.value.encode(), password=None)
        assert secret.value.startswith("-----BEGIN PRIVATE KEY-----")
        assert der(secret.value[secret.value.index("-----BEGIN CERTIFICATE-----"):]) == bytes(cert.cer)
    else:
        key, certificate, extra = pkcs12.load_key_and_certificates(base64.b64decode(secret.value), b"")
        assert certificate.public_bytes(serialization.Encoding.DER) == bytes(cert.cer)
        assert extra == []
    assert key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_import_pfx_and_pem_versions_and_secret_contents(emulator):
    certs, secrets = clients(emulator)
    ec = chain(emulator, "EC")
    first = certs.import_certificate("tls", base64.b64decode(ec["pfx_complete"]))
    assert bytes(first.cer) == der(ec["leaf"])
    assert first.policy.content_type == CertificateContentType.pkcs12
    secret = secrets.get_secret("tls")
    key, leaf, extra = pkcs12.load_key_and_certificates(base64.b64decode(secret.value), b"")
    assert leaf.public_bytes(serialization.Encoding.DER) == der(ec["leaf"])
    assert [c.public_bytes(serialization.Encoding.DER) for c in extra] == [
        der(ec["intermediate"]),
        der(ec["root"]),
    ]

    rsa = chain(emulator, "RSA")
    pem_policy = CertificatePolicy(
        issuer_name="Unknown", subject="CN=tls.example.com", content_type=CertificateContentType.pem
    )
    second = certs.import_certificate(
        "tls", rsa["pem_incomplete"].encode(), policy=pem_policy
    )
    assert second.properties.version != first.properties.version
    assert secrets.get_secret("tls").value == rsa["pem_incomplete"]
    assert bytes(certs.get_certificate_version("tls", first.properties.version).cer) == der(ec["leaf"])
    versions = [p.version for p in certs.list_properties_of_certificate_versions("tls")]
    assert versions == [first.properties.version, second.properties.version]
    secret_versions = {p.version for p in secrets.list_properties_of_secret_versions("tls")}
    assert secret_versions == set(versions)
    listed = {p.name: p for p in secrets.list_properties_of_secrets()}
    assert listed["tls"].managed is True


def test_import_with_password_and_non_exportable(emulator):
    certs, secrets = clients(emulator)
    ec = chain(emulator, "EC")
    key = serialization.load_pem_private_key(ec["key"].encode(), password=None)
    leaf = x509.load_pem_x509_certificate(ec["leaf"].encode())
    blob = pkcs12.serialize_key_and_certificates(
        b"x", key, leaf, None, serialization.BestAvailableEncryption(b"s3cret")
    )
    # The SDK sends key properties only when one of them is truthy: name the key type too.
    policy = CertificatePolicy(
        issuer_name="Unknown", subject="CN=tls.example.com", exportable=False, key_type=KeyType.ec
    )
    certs.import_certificate("locked", blob, password="s3cret", policy=policy)
    value = base64.b64decode(secrets.get_secret("locked").value)
    k, c, _ = pkcs12.load_key_and_certificates(value, b"")
    assert k is None, "a non-exportable certificate's secret holds no private key"
    with pytest.raises(HttpResponseError) as wrong:
        certs.import_certificate("other", blob, password="wrong")
    assert wrong.value.status_code == 400


def test_paging_errors_and_delete(emulator):
    certs, secrets = clients(emulator)
    pem = chain(emulator)["pem_complete"]
    for i in range(7):
        emulator.admin("POST", f"/certificates/cert-{i}", {"pem": pem}, expect=200)
    pages = list(certs.list_properties_of_certificates(max_page_size=3).by_page())
    assert len(pages) == 3
    assert [p.name for page in pages for p in page] == [f"cert-{i}" for i in range(7)]

    with pytest.raises(ResourceNotFoundError) as missing:
        certs.get_certificate("nope")
    assert missing.value.error.code == "CertificateNotFound"
    emulator.admin(
        "PUT",
        f"/identities/{emulator.info['client_id']}",
        {"certificates": ["list"], "federated_subjects": ["system:serviceaccount:akvfs:akvfs"]},
        expect=204,
    )
    with pytest.raises(HttpResponseError) as forbidden:
        certs.get_certificate("cert-0")
    assert forbidden.value.status_code == 403
    assert forbidden.value.error.code == "Forbidden"
    emulator.admin(
        "PUT",
        f"/identities/{emulator.info['client_id']}",
        {"federated_subjects": ["system:serviceaccount:akvfs:akvfs"]},
        expect=204,
    )
    deleted = certs.begin_delete_certificate("cert-0", _polling_interval=0).result()
    assert deleted.recovery_id.endswith("/deletedcertificates/cert-0")
    with pytest.raises(ResourceNotFoundError):
        certs.get_certificate("cert-0")
    with pytest.raises(ResourceNotFoundError):
        secrets.get_secret("cert-0")
    certs.purge_deleted_certificate("cert-0")

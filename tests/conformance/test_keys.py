"""The official Azure SDK for Python (azure-keyvault-keys) against the emulator.

RSA and EC keys created and imported, public JWKs checked against keys made independently with
``cryptography``, versions, paging, a certificate's key, errors, permissions and deletion.
"""

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import WorkloadIdentityCredential
from azure.keyvault.keys import JsonWebKey, KeyClient, KeyCurveName, KeyType
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def key_client(emulator) -> KeyClient:
    return KeyClient(
        emulator.info["vault_url"], WorkloadIdentityCredential(), verify_challenge_resource=False
    )


def int_bytes(n: int, length: int = 0) -> bytes:
    return n.to_bytes(max(length, (n.bit_length() + 7) // 8), "big")


@pytest.mark.parametrize("size", [2048, 3072, 4096])
def test_create_rsa_keys(emulator, size):
    client = key_client(emulator)
    key = client.create_rsa_key("rsa", size=size)
    assert key.key_type == KeyType.rsa
    assert len(key.key.n) == size // 8
    assert key.key.e == b"\x01\x00\x01"
    assert key.key.d is None, "only the public key is served"
    assert set(key.key_operations) >= {"sign", "verify", "encrypt", "decrypt", "wrapKey", "unwrapKey"}
    assert client.get_key("rsa").id == key.id


@pytest.mark.parametrize(
    "curve,length",
    [(KeyCurveName.p_256, 32), (KeyCurveName.p_384, 48), (KeyCurveName.p_521, 66)],
)
def test_create_ec_keys(emulator, curve, length):
    client = key_client(emulator)
    key = client.create_ec_key("ec", curve=curve)
    assert key.key_type == KeyType.ec
    assert key.key.crv == curve
    assert len(key.key.x) == length and len(key.key.y) == length
    assert key.key.d is None


def test_import_rsa_and_ec_keys_serves_the_same_public_key(emulator):
    client = key_client(emulator)
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = private.private_numbers()
    jwk = JsonWebKey(
        kty=KeyType.rsa,
        n=int_bytes(numbers.public_numbers.n),
        e=int_bytes(numbers.public_numbers.e),
        d=int_bytes(numbers.d),
        p=int_bytes(numbers.p),
        q=int_bytes(numbers.q),
        dp=int_bytes(numbers.dmp1),
        dq=int_bytes(numbers.dmq1),
        qi=int_bytes(numbers.iqmp),
    )
    imported = client.import_key("imported", jwk)
    assert imported.key.n == int_bytes(numbers.public_numbers.n)
    assert imported.key.d is None

    ec_private = ec.generate_private_key(ec.SECP384R1())
    pub = ec_private.public_key().public_numbers()
    second = client.import_key(
        "imported",
        JsonWebKey(kty=KeyType.ec, crv=KeyCurveName.p_384, x=int_bytes(pub.x, 48), y=int_bytes(pub.y, 48)),
    )
    assert second.key.x == int_bytes(pub.x, 48)
    versions = [p.version for p in client.list_properties_of_key_versions("imported")]
    assert versions == [imported.properties.version, second.properties.version]
    assert client.get_key("imported", imported.properties.version).key.n == imported.key.n


def test_paging_certificate_keys_errors_and_delete(emulator):
    client = key_client(emulator)
    for i in range(5):
        emulator.admin("POST", f"/keys/key-{i}", {"kty": "EC"}, expect=200)
    version = emulator.admin(
        "POST", "/certificates/web", {"policy": {"subject": "CN=web", "kty": "EC"}}, expect=200
    )["version"]
    pages = list(client.list_properties_of_keys(max_page_size=2).by_page())
    assert len(pages) == 3
    names = [k.name for page in pages for k in page]
    assert names == [f"key-{i}" for i in range(5)] + ["web"]
    web = client.get_key("web")
    assert web.properties.managed is True
    assert web.properties.version == version

    with pytest.raises(ResourceNotFoundError) as missing:
        client.get_key("nope")
    assert missing.value.error.code == "KeyNotFound"
    client.update_key_properties("key-0", enabled=False)
    with pytest.raises(HttpResponseError) as disabled:
        client.get_key("key-0")
    assert disabled.value.status_code == 403

    emulator.admin(
        "PUT",
        f"/identities/{emulator.info['client_id']}",
        {"keys": ["get"], "denied_keys": ["key-1"], "federated_subjects": ["system:serviceaccount:akvfs:akvfs"]},
        expect=204,
    )
    client.get_key("key-2")
    with pytest.raises(HttpResponseError) as denied:
        client.get_key("key-1")
    assert denied.value.status_code == 403
    with pytest.raises(HttpResponseError) as no_list:
        list(client.list_properties_of_keys())
    assert no_list.value.status_code == 403
    emulator.admin(
        "PUT",
        f"/identities/{emulator.info['client_id']}",
        {"federated_subjects": ["system:serviceaccount:akvfs:akvfs"]},
        expect=204,
    )
    deleted = client.begin_delete_key("key-2", _polling_interval=0).result()
    assert deleted.recovery_id.endswith("/deletedkeys/key-2")
    with pytest.raises(ResourceNotFoundError):
        client.get_key("key-2")
    client.purge_deleted_key("key-2")

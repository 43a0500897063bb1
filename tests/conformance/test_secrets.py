"""The official Azure SDK for Python (azure-identity, azure-keyvault-secrets) against the emulator.

The vault URL is https://127.0.0.1:PORT, so the clients pass ``verify_challenge_resource=False``
(the SDK otherwise requires the vault host to end in the challenge resource's domain).
"""

import time

import pytest
import requests
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.identity import (
    ClientSecretCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
)
from azure.keyvault.secrets import SecretClient

NO_RETRY = {"retry_total": 0}


def secret_client(emulator, credential, **kwargs) -> SecretClient:
    return SecretClient(
        emulator.info["vault_url"], credential, verify_challenge_resource=False, **kwargs
    )


def workload_client(emulator, **kwargs) -> SecretClient:
    return secret_client(emulator, WorkloadIdentityCredential(), **kwargs)


def inner_code(error: HttpResponseError):
    inner = error.error.innererror if error.error is not None else None
    return (inner or {}).get("code")


def test_workload_identity_secret_lifecycle(emulator):
    client = workload_client(emulator)

    first = client.set_secret("Db-Password", "one", content_type="text/plain", tags={"env": "dev"})
    assert first.value == "one"
    assert first.properties.content_type == "text/plain"
    assert first.properties.tags == {"env": "dev"}
    assert first.properties.recovery_level == "Recoverable+Purgeable"
    assert first.properties.recoverable_days == 90
    assert first.properties.vault_url == emulator.info["vault_url"]
    second = client.set_secret("db-password", "two")
    assert second.properties.version != first.properties.version
    assert second.name == "Db-Password", "the first spelling of the name is kept"

    assert client.get_secret("DB-PASSWORD").value == "two"
    assert client.get_secret("db-password", first.properties.version).value == "one"

    versions = {p.version for p in client.list_properties_of_secret_versions("db-password")}
    assert versions == {first.properties.version, second.properties.version}

    updated = client.update_secret_properties("db-password", content_type="application/json")
    assert updated.content_type == "application/json"
    assert updated.version == second.properties.version

    client.update_secret_properties("db-password", second.properties.version, enabled=False)
    with pytest.raises(HttpResponseError) as disabled:
        client.get_secret("db-password")
    assert disabled.value.status_code == 403
    assert disabled.value.error.code == "Forbidden"
    assert inner_code(disabled.value) == "SecretDisabled"
    assert disabled.value.error.message == "Operation get is not allowed on a disabled secret."
    listed = {p.name: p for p in client.list_properties_of_secrets()}
    assert listed["Db-Password"].enabled is False
    assert client.get_secret("db-password", first.properties.version).value == "one"

    deleted = client.begin_delete_secret("db-password", _polling_interval=0).result()
    assert deleted.recovery_id.endswith("/deletedsecrets/Db-Password")
    assert deleted.deleted_date is not None and deleted.scheduled_purge_date is not None
    with pytest.raises(ResourceNotFoundError) as missing:
        client.get_secret("db-password")
    assert missing.value.error.code == "SecretNotFound"
    assert [p.name for p in client.list_properties_of_secrets()] == []
    assert [d.name for d in client.list_deleted_secrets()] == ["Db-Password"]

    with pytest.raises(ResourceExistsError) as conflict:
        client.set_secret("db-password", "three")
    assert conflict.value.status_code == 409
    assert conflict.value.error.code == "Conflict"
    assert inner_code(conflict.value) == "ObjectIsDeletedButRecoverable"

    recovered = client.begin_recover_deleted_secret("db-password", _polling_interval=0).result()
    assert recovered.name == "Db-Password"
    client.begin_delete_secret("db-password", _polling_interval=0).result()
    client.purge_deleted_secret("db-password")
    assert client.set_secret("db-password", "three").value == "three"

    counts = emulator.counts()
    assert counts["challenge"] == 1
    assert counts["token_client_assertion"] == 1
    assert counts["purge"] == 1
    assert counts["recover_deleted_secret"] == 1


def test_challenge_token_retry_flow_counts(emulator):
    emulator.set_secret("a", "1")
    client = workload_client(emulator)
    assert client.get_secret("a").value == "1"
    assert emulator.nonzero_counts() == {
        "challenge": 1,
        "token_client_assertion": 1,
        "get_secret": 1,
        "total": 3,
    }
    assert client.get_secret("a").value == "1"
    assert emulator.nonzero_counts()["total"] == 4, "no second challenge or token request"


def test_set_sends_the_body_only_after_the_challenge(emulator):
    client = workload_client(emulator)
    client.set_secret("fresh", "value")
    counts = emulator.nonzero_counts()
    assert counts["challenge"] == 1
    assert counts["set_secret"] == 1
    assert emulator.admin("GET", "/secrets")["secrets"][0]["versions"][0]["value"] == "value"


def test_managed_identity_credential(emulator):
    emulator.set_secret("a", "1")
    client = secret_client(emulator, ManagedIdentityCredential())
    assert client.get_secret("a").value == "1"
    counts = emulator.nonzero_counts()
    assert counts["token_managed_identity"] == 1
    assert "token_client_assertion" not in counts

    user_assigned = "0f0e0d0c-1111-4222-8333-444455556666"
    emulator.admin(
        "PUT", f"/identities/{user_assigned}", {"managed_identity": True, "permissions": ["get"]}, expect=204
    )
    client = secret_client(emulator, ManagedIdentityCredential(client_id=user_assigned))
    assert client.get_secret("a").value == "1"

    with pytest.raises(ClientAuthenticationError):
        secret_client(emulator, ManagedIdentityCredential(client_id="unknown-identity")).get_secret("a")


def test_client_secret_credential_through_msal_discovery(emulator):
    emulator.set_secret("a", "1")
    credential = ClientSecretCredential(
        emulator.info["tenant_id"],
        emulator.info["client_id"],
        emulator.info["client_secret"],
        disable_instance_discovery=True,
    )
    assert secret_client(emulator, credential).get_secret("a").value == "1"
    counts = emulator.nonzero_counts()
    assert counts["token_client_secret"] == 1
    assert counts["openid_configuration"] >= 1

    wrong = ClientSecretCredential(
        emulator.info["tenant_id"], emulator.info["client_id"], "wrong", disable_instance_discovery=True
    )
    with pytest.raises(ClientAuthenticationError) as refused:
        secret_client(emulator, wrong).get_secret("a")
    assert "AADSTS7000215" in str(refused.value)


def test_paging_beyond_sixty_secrets(emulator):
    names = [f"secret-{i:03d}" for i in range(65)]
    emulator.admin("POST", "/seed", {"secrets": [{"name": n, "value": n} for n in names]}, expect=204)
    client = workload_client(emulator)
    assert sorted(p.name for p in client.list_properties_of_secrets()) == names
    assert emulator.counts()["list_secrets"] == 3, "pages of 25, 25 and 15"

    emulator.reset_counts()
    pages = list(client.list_properties_of_secrets(max_page_size=10).by_page())
    assert [len(list(page)) for page in pages] == [10] * 6 + [5]
    assert emulator.counts()["list_secrets"] == 7

    emulator.set_secret("secret-000", "again")
    versions = list(client.list_properties_of_secret_versions("secret-000", max_page_size=1))
    assert len(versions) == 2


def test_errors_raise_the_sdk_exception_types(emulator):
    emulator.set_secret("a", "1")
    emulator.set_secret("b", "2")
    client = workload_client(emulator, **NO_RETRY)

    with pytest.raises(ResourceNotFoundError) as missing:
        client.get_secret("nope")
    assert missing.value.status_code == 404
    assert missing.value.error.code == "SecretNotFound"

    with pytest.raises(HttpResponseError) as bad_name:
        client.get_secret("bad_name")
    assert bad_name.value.status_code == 400
    assert bad_name.value.error.code == "BadParameter"

    with pytest.raises(HttpResponseError) as too_large:
        client.set_secret("big", "x" * 25_601)
    assert too_large.value.error.code == "BadParameter"
    assert client.set_secret("big", "x" * 25_600).value == "x" * 25_600

    client_id = emulator.info["client_id"]
    emulator.set_permissions(client_id, ["get", "list"])
    with pytest.raises(HttpResponseError) as forbidden:
        client.set_secret("a", "new")
    assert forbidden.value.status_code == 403
    assert forbidden.value.error.code == "Forbidden"
    assert inner_code(forbidden.value) == "ForbiddenByPolicy"

    emulator.set_permissions(client_id, ["get", "list"], denied_secrets=["b"])
    with pytest.raises(HttpResponseError) as denied:
        client.get_secret("b")
    assert denied.value.status_code == 403
    assert denied.value.error.code == "Forbidden"
    assert inner_code(denied.value) == "ForbiddenByRbac"


def test_throttling_with_injected_429_and_the_request_budget(emulator):
    emulator.set_secret("a", "1")
    client = workload_client(emulator, **NO_RETRY)
    client.get_secret("a")

    emulator.inject_fault(kind="status", status=429, retry_after=3, operation="get_secret", times=1)
    with pytest.raises(HttpResponseError) as throttled:
        client.get_secret("a")
    assert throttled.value.status_code == 429
    assert throttled.value.error.code == "Throttled"
    assert throttled.value.response.headers["Retry-After"] == "3"

    emulator.admin("PUT", "/throttle", {"requests_per_10s": 2}, expect=204)
    client.get_secret("a")
    client.get_secret("a")
    with pytest.raises(HttpResponseError) as budget:
        client.get_secret("a")
    assert budget.value.status_code == 429
    assert budget.value.error.code == "Throttled"
    counts = emulator.counts()
    assert (counts["faulted"], counts["throttled"]) == (1, 1)


def test_sdk_retries_injected_503(emulator):
    emulator.set_secret("a", "1")
    client = workload_client(emulator, retry_backoff_factor=0.01)
    client.get_secret("a")
    emulator.inject_fault(kind="status", status=503, operation="get_secret", times=2)
    assert client.get_secret("a").value == "1"
    counts = emulator.counts()
    assert counts["faulted"] == 2
    assert counts["get_secret"] == 2


def test_connection_reset_fault(emulator):
    emulator.set_secret("a", "1")
    client = workload_client(emulator, **NO_RETRY)
    client.get_secret("a")
    emulator.inject_fault(kind="reset", operation="get_secret", times=1)
    with pytest.raises(Exception) as reset:
        client.get_secret("a")
    assert not isinstance(reset.value, HttpResponseError) or reset.value.status_code is None
    assert client.get_secret("a").value == "1"


def test_unknown_api_version_is_bad_parameter(emulator):
    token = emulator.admin("POST", "/tokens", {}, expect=200)["access_token"]
    response = requests.get(
        emulator.info["vault_url"] + "/secrets/a",
        params={"api-version": "1999-01-01"},
        headers={"Authorization": f"Bearer {token}"},
        verify=emulator.info["ca_file"],
        timeout=30,
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "BadParameter",
            "message": "The specified version (1999-01-01) is not recognized. "
            "Consider using the latest supported version (2026-04-01).",
        }
    }
    for version in ("7.0", "7.4", "7.6", "2025-07-01"):
        client = workload_client(emulator, api_version=version)
        with pytest.raises(ResourceNotFoundError):
            client.get_secret("a")


def test_rotated_federated_token_rejects_the_stale_assertion(emulator):
    emulator.set_secret("a", "1")
    emulator.admin("PUT", "/token-lifetime", {"seconds": 2}, expect=204)
    stale = workload_client(emulator, **NO_RETRY)
    assert stale.get_secret("a").value == "1"
    emulator.admin("POST", "/federated-token/rotate", expect=200)
    # The credential re-reads the token file only every 600 s; once its access token expires it
    # presents the old assertion, which the emulator now refuses.
    time.sleep(2.1)
    with pytest.raises(ClientAuthenticationError) as refused:
        stale.get_secret("a")
    assert "AADSTS700024" in str(refused.value)
    assert workload_client(emulator).get_secret("a").value == "1"


def test_admin_can_mint_tokens_in_az_cli_format(emulator):
    minted = emulator.admin("POST", "/tokens?format=az", {}, expect=200)
    assert set(minted) >= {"accessToken", "expiresOn", "expires_on", "tenant", "tokenType"}
    assert isinstance(minted["expires_on"], int)
    emulator.set_secret("a", "1")
    response = requests.get(
        emulator.info["vault_url"] + "/secrets/a",
        params={"api-version": "7.4"},
        headers={"Authorization": f"Bearer {minted['accessToken']}"},
        verify=emulator.info["ca_file"],
        timeout=30,
    )
    assert response.status_code == 200
    assert response.json()["value"] == "1"

"""Runs inside the test network namespace (see test_managed_identity.py): the official
``ManagedIdentityCredential`` as a VM or an Arc-enabled server runs it, with no endpoint
override. Usage: ``mi_client.py SCENARIO`` with the emulator's ready line in ``EMULATOR_INFO``;
prints one JSON object with what happened.
"""

import base64
import json
import os
import sys
import time

import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient

SCOPE = "https://vault.azure.net/.default"
IMDS_TOKEN_URL = "http://169.254.169.254/metadata/identity/oauth2/token"


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def token_facts(credential) -> dict:
    token = credential.get_token(SCOPE)
    c = claims(token.token)
    return {"appid": c["appid"], "aud": c["aud"], "exp": c["exp"], "expires_on": token.expires_on}


def read_secret(info: dict, credential, name: str) -> str:
    client = SecretClient(info["vault_url"], credential, verify_challenge_resource=False)
    return client.get_secret(name).value


def admin(info: dict, method: str, path: str, body=None):
    response = requests.request(
        method, info["admin_url"] + path, json=body, verify=info["ca_file"], timeout=30
    )
    response.raise_for_status()
    return response.json() if response.content else None


def imds_identities(info: dict) -> dict:
    user = json.loads(os.environ["USER_ASSIGNED"])
    out = {"system": token_facts(ManagedIdentityCredential())}
    out["secret"] = read_secret(info, ManagedIdentityCredential(), "a")
    out["client_id"] = token_facts(ManagedIdentityCredential(client_id=user["client_id"]))
    out["object_id"] = token_facts(
        ManagedIdentityCredential(identity_config={"object_id": user["object_id"]})
    )
    out["msi_res_id"] = token_facts(
        ManagedIdentityCredential(identity_config={"resource_id": user["resource_id"]})
    )
    try:
        ManagedIdentityCredential(client_id="00000000-0000-4000-8000-000000000000").get_token(SCOPE)
        out["unknown"] = "issued"
    except ClientAuthenticationError as e:
        out["unknown"] = str(e)
    raw = requests.get(
        IMDS_TOKEN_URL,
        params={"api-version": "2018-02-01", "resource": "https://vault.azure.net"},
        timeout=30,
    )
    out["no_metadata_header"] = {"status": raw.status_code, "body": raw.json()}
    raw = requests.get(
        IMDS_TOKEN_URL,
        params={"api-version": "2018-02-01", "resource": "https://vault.azure.net"},
        headers={"Metadata": "true"},
        timeout=30,
    )
    out["raw"] = {"status": raw.status_code, "body": raw.json()}
    return out


def imds_retries(info: dict) -> dict:
    admin(info, "POST", "/faults", {"kind": "status", "status": 429, "operation": "token_managed_identity", "times": 1})
    admin(info, "POST", "/faults", {"kind": "status", "status": 503, "operation": "token_managed_identity", "times": 1})
    started = time.monotonic()
    facts = token_facts(ManagedIdentityCredential())
    return {
        "token": facts,
        "seconds": time.monotonic() - started,
        "counts": admin(info, "GET", "/counts"),
    }


def arc(info: dict) -> dict:
    credential = ManagedIdentityCredential()
    return {
        "token": token_facts(credential),
        "secret": read_secret(info, credential, "a"),
        "counts": admin(info, "GET", "/counts"),
    }


SCENARIOS = {"imds_identities": imds_identities, "imds_retries": imds_retries, "arc": arc}

if __name__ == "__main__":
    result = SCENARIOS[sys.argv[1]](json.loads(os.environ["EMULATOR_INFO"]))
    print(json.dumps(result))

"""The official ``ManagedIdentityCredential`` (azure-identity) against the emulator's Instance
Metadata Service and Azure Arc endpoints, at their real addresses, in a network namespace.

Each test creates a network namespace with 169.254.169.254 on its loopback interface and starts
the emulator inside it (``ip netns exec``), with IMDS on 169.254.169.254:80 and the Arc endpoint
on 127.0.0.1:40342. The emulator's private mount namespace has a tmpfs on /var/opt, so the Arc
key files land in /var/opt/azcmagent/tokens (the only directory the SDK accepts) without touching
the machine's. The SDK then runs in the emulator's network and mount namespaces (``nsenter``)
through ``mi_client.py``, with no endpoint override: exactly as on a VM or an Arc-enabled server.
Nothing leaves the namespace. Needs root and iproute2.
"""

import itertools
import json
import os
import pathlib
import subprocess
import sys

import pytest

from conftest import READY_TIMEOUT_SECS, emulator_binary

HERE = pathlib.Path(__file__).resolve().parent
USER_ASSIGNED = {
    "client_id": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
    "object_id": "6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9",
    "resource_id": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/emulator"
    "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
}
_counter = itertools.count()

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


class Vm:
    """A network namespace with the emulator serving IMDS and Arc inside it."""

    def __init__(self, tmp_path: pathlib.Path):
        self.name = f"akvfs-conf-{os.getpid()}-{next(_counter)}"
        ip("netns", "add", self.name)
        try:
            ip("-n", self.name, "link", "set", "lo", "up")
            ip("-n", self.name, "addr", "add", "169.254.169.254/32", "dev", "lo")
            seed = tmp_path / "seed.json"
            seed.write_text(
                json.dumps(
                    {
                        "secrets": [{"name": "a", "value": "from-imds"}],
                        "identities": [
                            {
                                "client_id": USER_ASSIGNED["client_id"],
                                "object_id": USER_ASSIGNED["object_id"],
                                "permissions": ["get", "list"],
                                "managed_identity": True,
                            }
                        ],
                    }
                )
            )
            script = (
                "mount -t tmpfs -o mode=0755 tmpfs /var/opt && "
                "mkdir -m 0700 -p /var/opt/azcmagent/tokens && exec \"$@\""
            )
            self.process = subprocess.Popen(
                [
                    "ip", "netns", "exec", self.name, "sh", "-c", script, "sh",
                    emulator_binary(),
                    "--state-dir", str(tmp_path / "state"),
                    "--seed", str(seed),
                    "--imds-listen", "169.254.169.254:80",
                    "--arc-listen", "127.0.0.1:40342",
                    "--arc-key-dir", "/var/opt/azcmagent/tokens",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            line = self._ready_line()
            self.info = json.loads(line)
        except BaseException:
            self.close()
            raise

    def _ready_line(self) -> str:
        import queue
        import threading

        lines: "queue.Queue[str]" = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.process.stdout.readline()), daemon=True).start()
        line = lines.get(timeout=READY_TIMEOUT_SECS)
        if not line:
            raise RuntimeError(f"the emulator exited with {self.process.wait()} before it was ready")
        return line

    def client(self, scenario: str, extra_env=None) -> dict:
        """Runs mi_client.py SCENARIO in the emulator's network and mount namespaces."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_"))
        }
        env.update(
            {
                "EMULATOR_INFO": json.dumps(self.info),
                "USER_ASSIGNED": json.dumps(USER_ASSIGNED),
                "REQUESTS_CA_BUNDLE": self.info["ca_file"],
                "SSL_CERT_FILE": self.info["ca_file"],
                "NO_PROXY": "*",
            }
        )
        env.update(extra_env or {})
        done = subprocess.run(
            [
                "nsenter", f"--target={self.process.pid}", "--net", "--mount", "--",
                sys.executable, str(HERE / "mi_client.py"), scenario,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    def close(self) -> None:
        process = getattr(self, "process", None)
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        subprocess.run(["ip", "netns", "del", self.name], check=False)


@pytest.fixture
def vm(tmp_path):
    v = Vm(tmp_path)
    yield v
    v.close()


def test_imds_system_and_user_assigned_identities(vm):
    out = vm.client("imds_identities")
    system = out["system"]
    assert system["appid"] == vm.info["client_id"]
    assert system["aud"] == "https://vault.azure.net"
    assert system["expires_on"] == system["exp"]
    assert out["secret"] == "from-imds", "the vault accepts the IMDS token"
    for how in ("client_id", "object_id", "msi_res_id"):
        assert out[how]["appid"] == USER_ASSIGNED["client_id"], how
    assert "Identity not found" in out["unknown"] or "400" in out["unknown"], out["unknown"]
    assert out["no_metadata_header"] == {
        "status": 400,
        "body": {"error": "invalid_request", "error_description": "Required metadata header not specified"},
    }
    raw = out["raw"]
    assert raw["status"] == 200
    body = raw["body"]
    for field in ("expires_in", "expires_on", "ext_expires_in", "not_before"):
        assert isinstance(body[field], str) and body[field].isdigit(), (field, body)
    assert body["token_type"] == "Bearer"
    assert body["resource"] == "https://vault.azure.net"


def test_imds_throttling_and_server_errors_are_retried(vm):
    out = vm.client("imds_retries")
    assert out["token"]["appid"] == vm.info["client_id"]
    assert out["counts"]["faulted"] == 2
    assert out["counts"]["token_managed_identity"] == 1


def test_azure_arc_challenge_and_key_file(vm):
    out = vm.client(
        "arc",
        {
            "IDENTITY_ENDPOINT": vm.info["arc_identity_endpoint"],
            "IMDS_ENDPOINT": vm.info["arc_imds_endpoint"],
        },
    )
    assert out["token"]["appid"] == vm.info["client_id"]
    assert out["secret"] == "from-imds"
    assert out["counts"]["token_managed_identity"] >= 2, "a challenge, then the token"

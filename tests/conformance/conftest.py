"""Fixtures for the conformance suite: the official Azure SDK for Python against the emulator.

Every test gets its own emulator process (``AKVFS_EMULATOR_BIN``, default
``target/debug/akvfs-emulator`` at the repository root), started with a private state directory.
The fixture reads the ready line, points the SDK's environment variables at the emulator, and on
teardown stops it with SIGTERM and checks that it exits 0.
"""

import json
import os
import pathlib
import queue
import signal
import subprocess
import threading

import pytest
import requests

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
READY_TIMEOUT_SECS = 60


def emulator_binary() -> str:
    configured = os.environ.get("AKVFS_EMULATOR_BIN")
    path = pathlib.Path(configured) if configured else REPO_ROOT / "target" / "debug" / "akvfs-emulator"
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.exists():
        pytest.exit(
            f"emulator binary {path} not found: run `cargo build -p akvfs-emulator` "
            "or set AKVFS_EMULATOR_BIN",
            returncode=2,
        )
    return str(path)


class Emulator:
    """A running emulator process and helpers for its admin API."""

    def __init__(self, process: subprocess.Popen, info: dict):
        self.process = process
        self.info = info
        self.session = requests.Session()
        self.session.verify = info["ca_file"]

    def admin(self, method: str, path: str, body=None, expect: int = None):
        response = self.session.request(method, self.info["admin_url"] + path, json=body, timeout=30)
        if expect is not None:
            assert response.status_code == expect, (path, response.status_code, response.text)
        return response.json() if response.content else None

    def counts(self) -> dict:
        return self.admin("GET", "/counts", expect=200)

    def nonzero_counts(self) -> dict:
        return {k: v for k, v in self.counts().items() if v}

    def reset_counts(self) -> None:
        self.admin("POST", "/counts/reset", expect=200)

    def set_secret(self, name: str, value: str, **attributes) -> str:
        body = {"value": value, **attributes}
        return self.admin("PUT", f"/secrets/{name}", body, expect=200)["version"]

    def inject_fault(self, **fault) -> int:
        return self.admin("POST", "/faults", fault, expect=200)["id"]

    def set_permissions(self, client_id: str, permissions, denied_secrets=None) -> None:
        body = {"permissions": permissions}
        if denied_secrets is not None:
            body["denied_secrets"] = denied_secrets
        self.admin("PUT", f"/identities/{client_id}/permissions", body, expect=204)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def start_emulator(state_dir: pathlib.Path, *args: str) -> Emulator:
    process = subprocess.Popen(
        [emulator_binary(), "--state-dir", str(state_dir), *args],
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
    )
    lines: "queue.Queue[str]" = queue.Queue()
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=READY_TIMEOUT_SECS)
    except queue.Empty:
        process.kill()
        raise RuntimeError("the emulator printed no ready line") from None
    if not line:
        raise RuntimeError(f"the emulator exited with {process.wait()} before it was ready")
    return Emulator(process, json.loads(line))


@pytest.fixture
def emulator(tmp_path, monkeypatch):
    """An emulator with the SDK environment (workload identity and managed identity) pointed at it."""
    emu = start_emulator(tmp_path / "state")
    info = emu.info
    for name, value in {
        "AZURE_AUTHORITY_HOST": info["authority_host"],
        "AZURE_TENANT_ID": info["tenant_id"],
        "AZURE_CLIENT_ID": info["client_id"],
        "AZURE_FEDERATED_TOKEN_FILE": info["federated_token_file"],
        "IDENTITY_ENDPOINT": info["identity_endpoint"],
        "IDENTITY_HEADER": info["identity_header"],
        "REQUESTS_CA_BUNDLE": info["ca_file"],
        "SSL_CERT_FILE": info["ca_file"],
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "MSI_ENDPOINT", "IMDS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    yield emu
    assert emu.stop() == 0, "the emulator must exit 0 on SIGTERM"

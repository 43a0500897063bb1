"""Runs the shipped configurations with the real binary, confined the way
the systemd units confine it, against the Key Vault emulator.

usage: run_configs.py AKVFS EMULATOR UNIT_DIR CONFIG...

For each CONFIG (packaging/config.toml, the ConfigMaps rendered from k8s/),
the vaults are pointed at the emulator and the paths at a scratch directory;
nothing else changes, so every key the file uses goes through akvfs's own
parser. akvfs then runs as akvfs.service's ExecStart would, with the unit's
capability bounding set, no_new_privs and locked-memory limit, under strace,
with NOTIFY_SOCKET set. Checked: READY=1 arrives; every mount serves the
seeded secret; /healthz, /readyz and /metrics answer; SIGHUP reloads and
the mounts keep serving; SIGTERM unmounts everything and exits 0; every system
call made is allowed by the unit's SystemCallFilter. The single-vault
command of akvfs@.service (akvfs mount ... --foreground) gets the same
treatment, and after a SIGKILL its ExecStartPre lines and ExecStart must
recover the dead mount left behind.

Everything runs in a new network namespace with only loopback up, so no
credential can reach an address outside this machine.
"""

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request

LIMIT = 60.0
failures = []


def check(ok, what):
    print(("ok   - " if ok else "FAIL - ") + what, flush=True)
    if not ok:
        failures.append(what)
    return ok


def wait_until(cond, limit=LIMIT):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


# ---- the unit file -------------------------------------------------------


def unit_settings(path):
    """The [Service] settings of a unit file, last value per key, plus the
    whole list for keys that accumulate."""
    settings = {}
    section = None
    with open(path) as f:
        for line in f:
            s = line.strip()
            if not s or s.startswith(("#", ";")):
                continue
            if s.startswith("["):
                section = s
                continue
            if section == "[Service]" and "=" in s:
                k, v = s.split("=", 1)
                settings.setdefault(k.strip(), []).append(v.strip())
    return settings


def syscall_groups():
    out = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"], capture_output=True, text=True).stdout
    groups, current = {}, None
    for line in out.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if not line.startswith(" "):
            current = s
            groups[current] = []
        elif current:
            groups[current].append(s.split()[0])
    return groups


def allowed_syscalls(filter_values):
    groups = syscall_groups()

    def expand(name, seen):
        if not name.startswith("@"):
            return {name}
        if name in seen:
            return set()
        seen.add(name)
        out = set()
        for x in groups.get(name, []):
            out |= expand(x, seen)
        return out

    allowed = set()
    for value in filter_values:
        if value.startswith("~"):
            raise SystemExit("deny-list SystemCallFilter is not handled by this check")
        for name in value.split():
            allowed |= expand(name, set())
    return allowed


_confinement = {}


def confinement(unit):
    if unit not in _confinement:
        _confinement[unit] = _confine(unit)
    return _confinement[unit]


def _confine(unit):
    """The command prefix that applies the unit's process limits."""
    s = unit_settings(unit)
    # Limits first: raising one needs CAP_SYS_RESOURCE, which the bounding
    # set drops (systemd, too, sets limits before dropping capabilities).
    prefix = []
    memlock = s.get("LimitMEMLOCK", [None])[-1]
    if memlock:
        limit = ["prlimit", f"--memlock={'unlimited' if memlock == 'infinity' else memlock}"]
        if subprocess.run(limit + ["true"], capture_output=True).returncode == 0:
            prefix += limit
        else:
            # Raising the hard limit needs CAP_SYS_RESOURCE, which some
            # sandboxes withhold even from root. akvfs keeps CAP_IPC_LOCK,
            # which lets root lock memory regardless of the limit.
            print(f"note - cannot apply LimitMEMLOCK={memlock} here (no CAP_SYS_RESOURCE); running with the current limit")
    if s.get("LimitCORE", [None])[-1] == "0":
        prefix += ["prlimit", "--core=0"]
    caps = " ".join(s.get("CapabilityBoundingSet", [])).split()
    if caps:
        prefix += ["setpriv"]
        if s.get("NoNewPrivileges", ["no"])[-1] in ("yes", "true", "1"):
            prefix += ["--no-new-privs"]
        prefix += ["--bounding-set", "-all," + ",".join("+" + c.lower().removeprefix("cap_") for c in caps)]
    return prefix, allowed_syscalls(s.get("SystemCallFilter", [])), s


def traced_syscalls(trace):
    names = set()
    with open(trace) as f:
        for line in f:
            m = re.match(r"^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)(?:\(| resumed)", line)
            if m:
                names.add(m.group(1))
    return names


# ---- the emulator --------------------------------------------------------


def start_emulator(binary, state, seed):
    seed_path = os.path.join(state, "seed.json")
    with open(seed_path, "w") as f:
        json.dump({"secrets": [{"name": k, "value": v} for k, v in seed.items()]}, f)
    proc = subprocess.Popen(
        [binary, "--state-dir", state, "--seed", seed_path],
        stdout=subprocess.PIPE,
        stderr=open(os.path.join(state, "emulator.log"), "w"),
        text=True,
    )
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("the emulator did not start: " + open(os.path.join(state, "emulator.log")).read())
    return proc, json.loads(line)


def emulator_env(info):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_", "NOTIFY_", "AKVFS_"))}
    env.update(
        {
            # Workload identity (the Kubernetes configs).
            "AZURE_AUTHORITY_HOST": info["authority_host"],
            "AZURE_TENANT_ID": info["tenant_id"],
            "AZURE_CLIENT_ID": info["client_id"],
            "AZURE_FEDERATED_TOKEN_FILE": info["federated_token_file"],
            # Managed identity, App Service style (the VM config).
            "IDENTITY_ENDPOINT": info["identity_endpoint"],
            "IDENTITY_HEADER": info["identity_header"],
        }
    )
    return env


# ---- configs -------------------------------------------------------------


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    raise SystemExit(f"unexpected value in a config: {v!r}")


def write_toml(config, path):
    lines = []
    for k, v in config.items():
        if not isinstance(v, (dict, list)):
            lines.append(f"{k} = {toml_value(v)}")
    if "defaults" in config:
        lines.append("\n[defaults]")
        lines += [f"{k} = {toml_value(v)}" for k, v in config["defaults"].items()]
    for m in config.get("mount", []):
        lines.append("\n[[mount]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in m.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def point_at_emulator(config, info, scratch):
    """The same config with vaults at the emulator and paths under scratch."""
    config = json.loads(json.dumps(config))
    config.pop("metrics_listen", None)
    defaults = config.setdefault("defaults", {})
    defaults["ca_file"] = info["ca_file"]
    defaults["disable_challenge_resource_verification"] = True
    paths = []
    for m in config.get("mount", []):
        m["vault"] = info["vault_url"]
        m["path"] = os.path.join(scratch, m["path"].lstrip("/"))
        m.pop("ca_file", None)
        m.pop("disable_challenge_resource_verification", None)
        paths.append(m["path"])
    return config, paths


def is_mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(l.split(" ")[4] == path and " - fuse.akvfs " in l for l in f)


def http_get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return None, str(e)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Notify:
    """A NOTIFY_SOCKET like systemd's: collects the daemon's messages."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.messages = []

    def poll(self):
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    def saw(self, word):
        return any(word in m.split("\n") for m in self.poll())


def traced_child(proc, binary):
    """The akvfs process under strace (strace forks it; the limits and
    setpriv exec in place). Signals go to it: strace would not pass them on.
    strace also forks short-lived probes at startup, so the child is found
    by its executable."""
    want = os.path.realpath(binary)

    def child():
        try:
            with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            return None
        for pid in pids:
            try:
                if os.path.realpath(f"/proc/{pid}/exe") == want:
                    return pid
            except OSError:
                continue
        return None

    wait_until(lambda: child() is not None or proc.poll() is not None)
    return child()


def run_daemon(name, argv, env, unit, paths, value, scratch, port, reload=True):
    prefix, allowed, _ = confinement(unit)
    notify = Notify(scratch)
    trace = os.path.join(scratch, "trace")
    env = dict(env, NOTIFY_SOCKET=notify.path)
    cmd = prefix + ["strace", "-f", "-qq", "-o", trace, "--"] + argv
    log = open(os.path.join(scratch, "akvfs.log"), "w+")
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    pid = None
    try:
        pid = traced_child(proc, argv[0])
        ready = wait_until(lambda: notify.saw("READY=1") or proc.poll() is not None)
        if not check(ready and proc.poll() is None, f"{name}: READY=1 sent to NOTIFY_SOCKET under the unit's limits"):
            log.seek(0)
            print(log.read(), file=sys.stderr)
            return
        for p in paths:
            mounted = is_mounted(p)
            try:
                got = open(os.path.join(p, "db-password")).read() if mounted else None
            except OSError as e:
                got = f"error: {e}"
            check(mounted and got == value, f"{name}: {p} is a fuse.akvfs mount serving the secret")
        if port:
            status, _ = http_get(port, "/healthz")
            check(status == 200, f"{name}: GET /healthz answers 200")
            status, _ = http_get(port, "/readyz")
            check(status == 200, f"{name}: GET /readyz answers 200")
            status, body = http_get(port, "/metrics")
            check(status == 200 and "akvfs_" in body, f"{name}: GET /metrics answers with akvfs_ metrics")
        if reload:
            before = len(notify.poll())
            os.kill(pid, signal.SIGHUP)
            reloaded = wait_until(lambda: any("READY=1" in m for m in notify.poll()[before:]) or proc.poll() is not None)
            check(reloaded and proc.poll() is None, f"{name}: SIGHUP reloads (RELOADING=1, READY=1) and keeps running")
            for p in paths:
                try:
                    ok = open(os.path.join(p, "db-password")).read() == value
                except OSError:
                    ok = False
                check(ok, f"{name}: {p} still serves after the reload")
        if not check(proc.poll() is None, f"{name}: still running before SIGTERM"):
            log.seek(0)
            print(log.read(), file=sys.stderr)
            return
        os.kill(pid, signal.SIGTERM)
        try:
            code = proc.wait(timeout=LIMIT)
        except subprocess.TimeoutExpired:
            code = None
        check(code == 0, f"{name}: SIGTERM ends akvfs with status 0 (got {code})")
        check(not any(is_mounted(p) for p in paths), f"{name}: SIGTERM unmounted every mount")
        used = traced_syscalls(trace)
        denied = sorted(used - allowed)
        check(bool(used) and not denied, f"{name}: every system call is allowed by SystemCallFilter ({len(used)} used)"
              + (f"; not allowed: {', '.join(denied)}" if denied else ""))
    finally:
        if proc.poll() is None:
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.kill()
            proc.wait()
        for p in paths:
            if is_mounted(p):
                subprocess.run(["umount", "-l", p])
        notify.sock.close()
        log.close()


def restart_after_a_crash(akvfs, env, template, info, state, value):
    """akvfs@.service after SIGKILL or an OOM kill: the mountpoint is a dead
    mount. The unit's ExecStartPre lines run as systemd would run them (a
    failing line without the "-" prefix aborts the start), with /mnt/akvfs
    moved under a scratch directory; then its ExecStart command must detach
    the dead mount and serve again."""
    name = "akvfs@.service after a crash"
    _, _, tpl = confinement(template)
    scratch = tempfile.mkdtemp(prefix="crash-", dir=state)
    base = os.path.join(scratch, "mnt", "akvfs")
    mnt = os.path.join(base, "emu")
    os.makedirs(mnt)
    try:
        _restart_after_a_crash(name, akvfs, env, tpl, info, value, base, mnt)
    finally:
        while is_mounted(mnt):
            if subprocess.run(["umount", "-l", mnt]).returncode != 0:
                break


def _restart_after_a_crash(name, akvfs, env, tpl, info, value, base, mnt):
    argv = [akvfs, "mount", info["vault_url"], mnt, "--foreground",
            "--ca-file", info["ca_file"], "--disable-challenge-resource-verification", "--auth", "managed-identity"]
    first = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not check(wait_until(lambda: is_mounted(mnt) or first.poll() is not None) and is_mounted(mnt),
                     f"{name}: the first akvfs serves"):
            return
        first.send_signal(signal.SIGKILL)
        first.wait()
        check(is_mounted(mnt), f"{name}: SIGKILL leaves a dead mount behind")
        for line in tpl.get("ExecStartPre", []):
            flags = line[: len(line) - len(line.lstrip("-@:+!"))]
            cmd = line[len(flags):].replace("/mnt/akvfs", base).replace("%i", "emu").split()
            r = subprocess.run(cmd, capture_output=True, text=True)
            if not check(r.returncode == 0 or "-" in flags,
                         f"{name}: ExecStartPre={line} does not abort the start on the dead mount"
                         + (f" ({r.stderr.strip()})" if r.returncode else "")):
                return
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    second = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def serving():
            try:
                return open(os.path.join(mnt, "db-password")).read() == value
            except OSError:
                return False
        check(wait_until(lambda: serving() or second.poll() is not None) and serving(),
              f"{name}: ExecStart detaches the dead mount and serves again")
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(timeout=LIMIT)
        except subprocess.TimeoutExpired:
            second.kill()
        log = second.stderr.read()
        check("stale mount" in log, f"{name}: akvfs reports detaching the stale mount")
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()


def main():
    if os.environ.get("AKVFS_RUN_CONFIGS_NETNS") != "1":
        os.execvpe(
            "unshare",
            ["unshare", "--net", "--", sys.executable] + sys.argv,
            dict(os.environ, AKVFS_RUN_CONFIGS_NETNS="1"),
        )
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    akvfs, emulator, unit_dir, configs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    service = os.path.join(unit_dir, "akvfs.service")
    template = os.path.join(unit_dir, "akvfs@.service")
    value = "v-" + secrets.token_hex(12)
    state = tempfile.mkdtemp(prefix="akvfs-configs-")
    emu, info = start_emulator(emulator, state, {"db-password": value})
    env = emulator_env(info)
    try:
        _, _, svc = confinement(service)
        exec_start = svc["ExecStart"][-1].split()
        check(exec_start[:3] == ["/usr/bin/akvfs", "run", "--config"], "akvfs.service runs /usr/bin/akvfs run --config FILE")
        for path in configs:
            name = os.path.basename(path)
            with open(path, "rb") as f:
                config = tomllib.load(f)
            scratch = tempfile.mkdtemp(prefix="run-", dir=state)
            config, paths = point_at_emulator(config, info, scratch)
            cfg_path = os.path.join(scratch, "config.toml")
            write_toml(config, cfg_path)
            port = free_port()
            argv = [akvfs] + exec_start[1:-1] + [cfg_path, "--metrics-listen", f"127.0.0.1:{port}"]
            run_daemon(name, argv, env, service, paths, value, scratch, port)

        # akvfs@.service: the same ExecStart with the instance and the
        # mountpoint replaced (a vault name cannot reach the emulator).
        _, _, tpl = confinement(template)
        exec_start = tpl["ExecStart"][-1].split()
        check(
            exec_start[:2] == ["/usr/bin/akvfs", "mount"] and "--foreground" in exec_start,
            "akvfs@.service runs /usr/bin/akvfs mount VAULT DIR --foreground",
        )
        scratch = tempfile.mkdtemp(prefix="template-", dir=state)
        mnt = os.path.join(scratch, "mnt")
        os.makedirs(mnt)
        argv = [akvfs, "mount", info["vault_url"], mnt, "--foreground",
                "--ca-file", info["ca_file"], "--disable-challenge-resource-verification", "--auth", "managed-identity"]
        run_daemon("akvfs@.service", argv, env, template, [mnt], value, scratch, None, reload=False)
        restart_after_a_crash(akvfs, env, template, info, state, value)
    finally:
        emu.terminate()
        emu.wait()
        shutil.rmtree(state, ignore_errors=True)
    print(f"configs: {len(failures)} failed checks")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

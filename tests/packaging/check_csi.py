"""Checks of a rendered CSI-mode kustomization (k8s/csi and overlays of it):
the CSIDriver object as the plugin's contract has it, a node plugin without
RBAC or an Azure identity of its own, the DaemonSet's sockets, directories
and sidecars, and every consumer of a csi.akvfs.io volume, whose pod must pass
the restricted Pod Security level (psa_restricted.py, rule by rule).

Called by check_manifests.py for every kustomization that renders the
CSIDriver csi.akvfs.io.
"""

import copy
import json
import os
import re
import subprocess
import sys

import psa_restricted

DRIVER = "csi.akvfs.io"
PLUGIN_DIR = f"/var/lib/kubelet/plugins/{DRIVER}"
PODS_DIR = "/var/lib/kubelet/pods"
REGISTRY_DIR = "/var/lib/kubelet/plugins_registry"
REGISTRAR_IMAGE = "registry.k8s.io/sig-storage/csi-node-driver-registrar"
EXPECTED_DRIVER_SPEC = {
    "attachRequired": False,
    "podInfoOnMount": True,
    "requiresRepublish": True,
    "volumeLifecycleModes": ["Ephemeral"],
    "fsGroupPolicy": "File",
    "tokenRequests": [{"audience": "api://AzureADTokenExchange", "expirationSeconds": 3600}],
}
# The SecretProviderClass parameter names a volume may use.
SPC_ATTRIBUTES = {"keyvaultName", "clientID", "tenantId"}
# Option keys that the volume attributes above, or the plugin itself, decide (used only
# where the plugin's own list cannot be read).
NOT_VOLUME_OPTIONS = {"vault", "path", "auth", "client_id", "tenant_id", "ca_file"}
AZURE_IDENTITY_ENV = {"AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_CERTIFICATE_PATH"}


def option_keys(repo):
    """The mount options a volume may set: the node plugin's list (VOLUME_OPTIONS in
    src/csi/request.rs) where it exists, else every mount option of their one definition
    (src/config/options.rs) but those the plugin decides itself."""
    request = os.path.join(repo, "src", "csi", "request.rs")
    if os.path.exists(request):
        with open(request) as f:
            m = re.search(r"VOLUME_OPTIONS: \[&str; \d+\] = \[(.*?)\];", f.read(), re.S)
        if m:
            return set(re.findall(r'"(\w+)"', m.group(1))), "src/csi/request.rs VOLUME_OPTIONS"
    with open(os.path.join(repo, "src", "config", "options.rs")) as f:
        keys = set(re.findall(r"^\s*pub (\w+): Option<", f.read(), re.M))
    return keys - NOT_VOLUME_OPTIONS, "src/config/options.rs"


def pinned(image):
    """A tag other than latest, or a digest."""
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and not last.endswith(":latest")


# ---- RBAC -------------------------------------------------------------------


def resource_matches(resources, resource):
    """Whether a rule's resources cover resource ("pods", "nodes/*" meaning any
    subresource of nodes, "serviceaccounts/token"), wildcards included."""
    base, _, sub = resource.partition("/")
    for r in resources:
        rbase, _, rsub = r.partition("/")
        if r in ("*", resource) or (sub and rbase == base and (rsub == "*" or (sub == "*" and rsub))):
            return True
    return False


def rule_grants(rule, resource, verbs):
    """Whether a PolicyRule grants any of verbs (None: any verb) on resource in the core API group."""
    groups = rule.get("apiGroups") or []
    if "" not in groups and "*" not in groups:
        return False
    rv = rule.get("verbs") or []
    return resource_matches(rule.get("resources") or [], resource) and (
        verbs is None or "*" in rv or any(v in rv for v in verbs)
    )


FORBIDDEN_GRANTS = [
    ("serviceaccounts/token", ["create"], "no serviceaccounts/token (it would mint any account's token)"),
    ("nodes/*", None, "no nodes/* (proxy, log, metrics reach every pod)"),
    ("pods", ["list", "watch"], "no pod listing"),
]


def rbac_findings(docs):
    """[(what, rule name, role)] for every forbidden grant in the render's Roles and ClusterRoles."""
    found = []
    for r in docs:
        if r["kind"] not in ("Role", "ClusterRole"):
            continue
        for rule in r.get("rules") or []:
            for resource, verbs, what in FORBIDDEN_GRANTS:
                if rule_grants(rule, resource, verbs):
                    found.append((what, f"{r['kind']}/{r['metadata']['name']}"))
    return found


def check_rbac(check, name, docs, sa_name, sa_ns):
    for resource, verbs, what in FORBIDDEN_GRANTS:
        bad = [role for w, role in rbac_findings(docs) if w == what]
        check(not bad, f"{name}: RBAC: {what}" + (f" (granted by {', '.join(bad)})" if bad else ""))
    bindings = [
        f"{r['kind']}/{r['metadata']['name']}"
        for r in docs
        if r["kind"] in ("RoleBinding", "ClusterRoleBinding")
        and any(
            s.get("kind") == "ServiceAccount" and s.get("name") == sa_name and s.get("namespace", sa_ns) == sa_ns
            for s in r.get("subjects") or []
        )
    ]
    check(not bindings, f"{name}: the plugin's ServiceAccount {sa_ns}/{sa_name} is bound to no role (it calls no API)"
          + (f": bound by {', '.join(bindings)}" if bindings else ""))
    # The checker itself: a role granting each forbidden thing is caught.
    for resource, verbs, what in FORBIDDEN_GRANTS:
        probe = {"kind": "ClusterRole", "metadata": {"name": "probe"},
                 "rules": [{"apiGroups": [""], "resources": [resource.replace("/*", "/proxy")], "verbs": [(verbs or ["get"])[0]]}]}
        check(any(w == what for w, _ in rbac_findings([probe])), f"RBAC checker catches a role that breaks: {what}")


# ---- CSIDriver and DaemonSet --------------------------------------------------


def check_driver(check, name, docs):
    drivers = [r for r in docs if r["kind"] == "CSIDriver" and r["metadata"]["name"] == DRIVER]
    if not check(len(drivers) == 1, f"{name}: one CSIDriver {DRIVER}"):
        return
    spec = drivers[0]["spec"]
    for field, want in EXPECTED_DRIVER_SPEC.items():
        check(spec.get(field) == want, f"{name}: CSIDriver {field}: {json.dumps(want)} (got {json.dumps(spec.get(field))})")


def env_value(c, key):
    for e in c.get("env") or []:
        if e["name"] == key:
            return e
    return None


def check_daemonset(check, name, docs, repo):
    dss = [r for r in docs if r["kind"] == "DaemonSet"]
    if not check(len(dss) == 1, f"{name}: one DaemonSet (the node plugin)"):
        return
    ds = dss[0]
    ns = ds["metadata"].get("namespace", "")
    tmpl = ds["spec"]["template"]
    spec = tmpl["spec"]
    vols = {v["name"]: v for v in spec.get("volumes", [])}

    def host(mount):
        return (vols.get(mount["name"]) or {}).get("hostPath", {})

    # No Azure identity of its own, and no Kubernetes API token.
    sa_name = spec.get("serviceAccountName", "default")
    sas = [r for r in docs if r["kind"] == "ServiceAccount" and r["metadata"]["name"] == sa_name]
    check(len(sas) == 1, f"{name}: the DaemonSet's ServiceAccount {sa_name} is in the render")
    annotations = sas[0]["metadata"].get("annotations") or {} if sas else {}
    check(not any(k.startswith("azure.workload.identity/") for k in annotations),
          f"{name}: the plugin's ServiceAccount has no Azure identity (no azure.workload.identity/* annotation)")
    check("azure.workload.identity/use" not in (tmpl["metadata"].get("labels") or {}),
          f"{name}: the plugin's pods do not ask the workload identity webhook for a token")
    cms = {r["metadata"]["name"]: r.get("data") or {} for r in docs if r["kind"] == "ConfigMap"}
    envs = set()
    for c in spec.get("containers", []):
        envs |= {e["name"] for e in c.get("env") or []}
        for src in c.get("envFrom") or []:
            envs |= set(cms.get((src.get("configMapRef") or {}).get("name"), {}))
    check(not envs & AZURE_IDENTITY_ENV, f"{name}: no Azure credential in the plugin's environment ({sorted(envs & AZURE_IDENTITY_ENV)})")
    check(spec.get("automountServiceAccountToken") is False or (sas and sas[0].get("automountServiceAccountToken") is False),
          f"{name}: no Kubernetes API token mounted in the plugin")
    check(not any("serviceAccountToken" in s for v in vols.values() for s in (v.get("projected") or {}).get("sources", [])),
          f"{name}: no projected service account token volume")
    check_rbac(check, name, docs, sa_name, ns)

    # The plugin container.
    plugin = [c for c in spec["containers"] if "csi" in (c.get("command", []) + c.get("args", []))[:3]]
    if not check(len(plugin) == 1, f"{name}: one container runs `akvfs csi`"):
        return
    p = plugin[0]
    argv = p.get("command", []) + p.get("args", [])
    flags = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
    check(flags.get("--endpoint") == "unix:///csi/csi.sock", f"{name}: akvfs csi --endpoint unix:///csi/csi.sock")
    node = env_value(p, "NODE_NAME") or {}
    check(flags.get("--node-id") == "$(NODE_NAME)"
          and (node.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName",
          f"{name}: --node-id is the node's name (spec.nodeName)")
    mounts = {m["mountPath"]: m for m in p.get("volumeMounts", [])}
    csi_dir = mounts.get("/csi")
    check(csi_dir is not None and host(csi_dir).get("path") == PLUGIN_DIR, f"{name}: /csi is the host's {PLUGIN_DIR}")
    state = flags.get("--state-dir", "")
    check(state.startswith("/csi/") and state.rstrip("/") != "/csi",
          f"{name}: --state-dir {state} is a directory of its own below {PLUGIN_DIR} on the host")
    pods = mounts.get(PODS_DIR)
    check(pods is not None and pods.get("mountPropagation") == "Bidirectional" and host(pods).get("path") == PODS_DIR,
          f"{name}: {PODS_DIR} from the host with Bidirectional propagation")
    fuse = mounts.get("/dev/fuse")
    check(fuse is not None and host(fuse).get("type") == "CharDevice", f"{name}: /dev/fuse from a CharDevice hostPath")
    check_flags(check, name, argv, repo)
    check(sc_priv(p), f"{name}: the plugin container is privileged (Bidirectional propagation needs it)")
    check(bool(p.get("livenessProbe")), f"{name}: the plugin container has a liveness probe")

    # node-driver-registrar.
    regs = [c for c in spec["containers"] if c["image"].split("@")[0].rsplit(":", 1)[0] == REGISTRAR_IMAGE]
    if check(len(regs) == 1, f"{name}: a {REGISTRAR_IMAGE} sidecar"):
        r = regs[0]
        check(pinned(r["image"]), f"{name}: node-driver-registrar pinned ({r['image']})")
        args = r.get("args", [])
        check("--csi-address=/csi/csi.sock" in args, f"{name}: registrar --csi-address=/csi/csi.sock")
        check(f"--kubelet-registration-path={PLUGIN_DIR}/csi.sock" in args,
              f"{name}: registrar --kubelet-registration-path={PLUGIN_DIR}/csi.sock")
        rm = {m["mountPath"]: m for m in r.get("volumeMounts", [])}
        check("/registration" in rm and host(rm["/registration"]).get("path") == REGISTRY_DIR,
              f"{name}: registrar's /registration is the host's {REGISTRY_DIR}")
        check("/csi" in rm and host(rm["/csi"]).get("path") == PLUGIN_DIR, f"{name}: registrar sees the plugin socket")

    # The liveness probe's port is served by a container of the pod.
    port = (p.get("livenessProbe") or {}).get("httpGet", {}).get("port")
    ports = {pp.get("name"): pp["containerPort"] for pp in p.get("ports", [])}
    number = ports.get(port, port)
    served = any(f"--health-port={number}" in c.get("args", []) for c in spec["containers"])
    check(served, f"{name}: the plugin's liveness probe port {number} is served by the livenessprobe sidecar")
    for c in spec["containers"]:
        check(pinned(c["image"]), f"{name}: container {c['name']} image pinned ({c['image']})")
    check(any(t.get("operator") == "Exists" and "key" not in t for t in spec.get("tolerations", [])),
          f"{name}: tolerates every taint (a consumer anywhere must be publishable)")
    pcs = {r["metadata"]["name"] for r in docs if r["kind"] == "PriorityClass"}
    check(spec.get("priorityClassName") in pcs | {"system-node-critical"}, f"{name}: priorityClassName exists")
    nss = [r for r in docs if r["kind"] == "Namespace" and r["metadata"]["name"] == ns]
    check(len(nss) == 1 and nss[0]["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") == "privileged",
          f"{name}: the plugin's namespace {ns} is in the render and labelled privileged")


def check_flags(check, name, argv, repo):
    """Every flag the DaemonSet passes is one `akvfs csi` knows (its --help, from the binary
    the build step made)."""
    exe = os.environ.get("AKVFS_BIN") or os.path.join(repo, "target", "debug", "akvfs")
    if not check(os.access(exe, os.X_OK), f"{name}: an akvfs binary to check the flags against ({exe})"):
        return
    out = subprocess.run([exe, "csi", "--help"], capture_output=True, text=True)
    if not check(out.returncode == 0, f"{name}: `akvfs csi --help` runs"):
        print(out.stderr, file=sys.stderr)
        return
    known = set(re.findall(r"(--[a-z][a-z0-9-]*)", out.stdout))
    flags = [a.split("=")[0] for a in argv if a.startswith("--")]
    unknown = [f for f in flags if f not in known]
    check(not unknown, f"{name}: akvfs csi knows every flag of the DaemonSet {flags}" + (f"; unknown: {unknown}" if unknown else ""))


def sc_priv(c):
    return (c.get("securityContext") or {}).get("privileged") is True


# ---- consumers --------------------------------------------------------------


def pod_of(r):
    if r["kind"] == "Pod":
        return r.get("metadata") or {}, r.get("spec") or {}
    tmpl = (r.get("spec") or {}).get("template")
    if r["kind"] == "CronJob":
        tmpl = r["spec"]["jobTemplate"]["spec"]["template"]
    if not tmpl:
        return None, None
    return tmpl.get("metadata") or {}, tmpl.get("spec") or {}


def check_consumers(check, name, docs, repo):
    options, source = option_keys(repo)
    check(len(options) > 10 and {"refresh_interval", "file_mode"} <= options,
          f"volume option keys read from {source} ({len(options)})")
    count = 0
    for r in docs:
        if r["kind"] == "DaemonSet":
            continue
        meta, spec = pod_of(r)
        if not spec:
            continue
        vols = [v for v in spec.get("volumes", []) if (v.get("csi") or {}).get("driver") == DRIVER]
        if not vols:
            continue
        count += 1
        ns = r["metadata"].get("namespace", "default")
        who = f"{name}: {r['kind']} {ns}/{r['metadata']['name']}"
        for v in vols:
            csi = v["csi"]
            attrs = csi.get("volumeAttributes") or {}
            check(csi.get("readOnly") is True, f"{who} volume {v['name']}: readOnly: true")
            check(bool(attrs.get("keyvaultName")) and bool(attrs.get("clientID")),
                  f"{who} volume {v['name']}: keyvaultName and clientID set")
            unknown = sorted(k for k in attrs if k not in SPC_ATTRIBUTES and k not in options)
            check(not unknown, f"{who} volume {v['name']}: every attribute is a SecretProviderClass name or a mount option {unknown}")
            check(all(isinstance(x, str) for x in attrs.values()), f"{who} volume {v['name']}: attribute values are strings")
            sa = spec.get("serviceAccountName", "default")
            sas = [d for d in docs if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == sa
                   and d["metadata"].get("namespace") == ns]
            if sas:
                noted = (sas[0]["metadata"].get("annotations") or {}).get("azure.workload.identity/client-id")
                check(noted == attrs.get("clientID"),
                      f"{who} volume {v['name']}: clientID matches ServiceAccount {sa}'s azure.workload.identity/client-id")
            for kind, c in psa_restricted.containers(spec):
                for m in c.get("volumeMounts", []):
                    if m["name"] == v["name"]:
                        check(m.get("readOnly") is True and m.get("mountPropagation") == "HostToContainer",
                              f"{who} container {c['name']}: mounts {v['name']} readOnly with HostToContainer")
        check((spec.get("securityContext") or {}).get("fsGroup") is not None,
              f"{who}: sets fsGroup (the files' group for a non-root reader)")
        nss = [d for d in docs if d["kind"] == "Namespace" and d["metadata"]["name"] == ns]
        check(len(nss) == 1 and nss[0]["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") == "restricted",
              f"{who}: namespace {ns} enforces the restricted Pod Security level")
        for level, rule, bad in psa_restricted.check(meta, spec):
            check(not bad, f"{who}: Pod Security {level} rule \"{rule}\"" + (f": {'; '.join(bad)}" if bad else ""))
        self_test(check, meta, spec)
    return count


# One violation per rule, applied to a copy of a passing pod: the rule must
# then fail (so a rule that can never fail is caught).
def _c(spec):
    return spec["containers"][0].setdefault("securityContext", {})


MUTATIONS = {
    "HostProcess": lambda m, s: _c(s).update(windowsOptions={"hostProcess": True}),
    "Host Namespaces": lambda m, s: s.update(hostPID=True),
    "Privileged Containers": lambda m, s: _c(s).update(privileged=True),
    "Capabilities": lambda m, s: _c(s).update(capabilities={"drop": ["ALL"], "add": ["SYS_ADMIN"]}),
    "HostPath Volumes": lambda m, s: s["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
    "Host Ports": lambda m, s: s["containers"][0].setdefault("ports", []).append({"containerPort": 80, "hostPort": 80}),
    "AppArmor": lambda m, s: m.setdefault("annotations", {}).update(
        {"container.apparmor.security.beta.kubernetes.io/app": "unconfined"}),
    "SELinux": lambda m, s: _c(s).update(seLinuxOptions={"type": "spc_t"}),
    "/proc Mount Type": lambda m, s: _c(s).update(procMount="Unmasked"),
    "Seccomp": lambda m, s: _c(s).update(seccompProfile={"type": "Unconfined"}),
    "Sysctls": lambda m, s: s.setdefault("securityContext", {}).update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
    "Volume Types": lambda m, s: s["volumes"].append({"name": "g", "gitRepo": {"repository": "x"}}),
    "Privilege Escalation": lambda m, s: _c(s).pop("allowPrivilegeEscalation", None),
    "Running as Non-root": lambda m, s: _c(s).update(runAsNonRoot=False),
    "Running as Non-root user": lambda m, s: _c(s).update(runAsUser=0),
}
RESTRICTED_ONLY = {
    # The restricted variants of two rules that share a name with a baseline one.
    ("restricted", "Seccomp"): lambda m, s: (s.get("securityContext", {}).pop("seccompProfile", None),
                                             _c(s).pop("seccompProfile", None)),
    ("restricted", "Capabilities"): lambda m, s: _c(s).update(capabilities={"drop": ["NET_RAW"]}),
}


def self_test(check, meta, spec):
    for level, rule, _ in psa_restricted.RULES:
        mutate = RESTRICTED_ONLY.get((level, rule)) or MUTATIONS[rule]
        m, s = copy.deepcopy(meta), copy.deepcopy(spec)
        mutate(m, s)
        failing = {(lv, rl) for lv, rl, bad in psa_restricted.check(m, s) if bad}
        check((level, rule) in failing, f"restricted-level checker: rule {level} \"{rule}\" rejects a pod that breaks it")


def check_all(check, name, docs, repo):
    check_driver(check, name, docs)
    check_daemonset(check, name, docs, repo)
    return check_consumers(check, name, docs, repo)

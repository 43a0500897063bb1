"""Renders every kustomization under k8s/, validates the result against the
Kubernetes schemas, and checks the properties the deployment depends on:
check_csi.py's for the CSI mode (k8s/csi and its overlays), the ones below
for the hostPath mode.

usage: check_manifests.py REPO OUTDIR

For each kustomization it writes OUTDIR/<name>.yaml (the rendered manifests)
and OUTDIR/<name>.config.toml (the akvfs config from its ConfigMap), which
run_configs.py then feeds to the real binary.
"""

import os
import shutil
import subprocess
import sys
import tomllib

import yaml

import check_csi
import kustomize_lite

# Kubernetes versions to validate against: the oldest and newest minor
# versions whose schemas kubernetes-validate ships that we care about.
K8S_VERSIONS = ["1.30", "1.37"]
HOST_ROOT = "/var/lib/akvfs"
METRICS_PORT = 9464

failures = []


def check(ok, what):
    print(("ok   - " if ok else "FAIL - ") + what)
    if not ok:
        failures.append(what)
    return ok


def kustomize_command():
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


def key(r):
    m = r.get("metadata", {})
    return (r.get("kind"), m.get("namespace", ""), m.get("name"))


def render(directory):
    lite = kustomize_lite.render(directory)
    cmd = kustomize_command()
    if cmd is None:
        print(f"note - neither kubectl nor kustomize is installed; {directory} rendered by kustomize_lite only")
        return lite
    out = subprocess.run(cmd + [directory], capture_output=True, text=True)
    if not check(out.returncode == 0, f"{' '.join(cmd)} {directory}"):
        print(out.stderr, file=sys.stderr)
        return lite
    real = [d for d in yaml.safe_load_all(out.stdout) if d is not None]
    a = {key(r): r for r in real}
    b = {key(r): r for r in lite}
    same = a == b
    check(same, f"kustomize_lite renders {directory} exactly as {' '.join(cmd)}")
    if not same:
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                print(f"       differs: {k}", file=sys.stderr)
    return real


def validate(path):
    exe = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")
    for v in K8S_VERSIONS:
        out = subprocess.run([exe, "--strict", "--quiet", "-k", v, path], capture_output=True, text=True)
        check(out.returncode == 0, f"{os.path.basename(path)} validates against the Kubernetes {v} schemas (strict)")
        if out.returncode != 0:
            print(out.stdout + out.stderr, file=sys.stderr)


def pod_spec(r):
    return r.get("spec", {}).get("template", {}).get("spec")


def check_daemonset(name, docs, config):
    dss = [r for r in docs if r["kind"] == "DaemonSet"]
    if not check(len(dss) == 1, f"{name}: one DaemonSet"):
        return
    ds = dss[0]
    tmpl = ds["spec"]["template"]
    spec = tmpl["spec"]
    labels = tmpl["metadata"].get("labels", {})
    check(labels.get("azure.workload.identity/use") == "true", f"{name}: pod label azure.workload.identity/use=\"true\"")
    sa = [r for r in docs if r["kind"] == "ServiceAccount" and r["metadata"]["name"] == spec.get("serviceAccountName")]
    check(
        len(sa) == 1 and bool(sa[0]["metadata"].get("annotations", {}).get("azure.workload.identity/client-id")),
        f"{name}: the DaemonSet's ServiceAccount exists and carries azure.workload.identity/client-id",
    )
    pcs = {r["metadata"]["name"] for r in docs if r["kind"] == "PriorityClass"}
    pc = spec.get("priorityClassName")
    check(pc in pcs or pc in ("system-node-critical", "system-cluster-critical"), f"{name}: priorityClassName {pc} exists")
    check(bool(spec.get("tolerations")), f"{name}: tolerations set")
    terms = (
        spec.get("affinity", {})
        .get("nodeAffinity", {})
        .get("requiredDuringSchedulingIgnoredDuringExecution", {})
        .get("nodeSelectorTerms", [])
    )
    check(
        bool(terms)
        and all(
            any(
                e.get("key") == "type" and e.get("operator") == "NotIn" and "virtual-kubelet" in e.get("values", [])
                for e in t.get("matchExpressions", [])
            )
            for t in terms
        ),
        f"{name}: node affinity keeps the DaemonSet off AKS virtual nodes (type NotIn virtual-kubelet)",
    )
    check(spec.get("terminationGracePeriodSeconds", 30) >= 10, f"{name}: a grace period for unmounting on SIGTERM")
    c = spec["containers"][0]
    argv = c.get("command", []) + c.get("args", [])
    check(
        argv[-5:] == ["run", "--config", "/etc/akvfs/config.toml", "--metrics-listen", f"0.0.0.0:{METRICS_PORT}"],
        f"{name}: runs akvfs run --config /etc/akvfs/config.toml --metrics-listen 0.0.0.0:{METRICS_PORT}",
    )
    check(c.get("securityContext", {}).get("privileged") is True, f"{name}: privileged (needed for Bidirectional propagation)")
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    fuse = mounts.get("/dev/fuse")
    check(
        fuse is not None and vols[fuse["name"]].get("hostPath", {}).get("type") == "CharDevice",
        f"{name}: /dev/fuse from a CharDevice hostPath",
    )
    host = mounts.get(HOST_ROOT)
    check(
        host is not None
        and host.get("mountPropagation") == "Bidirectional"
        and vols[host["name"]].get("hostPath", {}).get("path") == HOST_ROOT,
        f"{name}: hostPath {HOST_ROOT} mounted with Bidirectional propagation",
    )
    cfg = mounts.get("/etc/akvfs")
    cms = {r["metadata"]["name"] for r in docs if r["kind"] == "ConfigMap"}
    check(
        cfg is not None and vols[cfg["name"]].get("configMap", {}).get("name") in cms,
        f"{name}: /etc/akvfs from a ConfigMap in the same render",
    )
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c.get(probe, {}).get("httpGet", {})
        port = get.get("port")
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        check(
            get.get("path") == path and (port == METRICS_PORT or ports.get(port) == METRICS_PORT),
            f"{name}: {probe} GET {path} on {METRICS_PORT}",
        )
    live = c.get("livenessProbe", {})
    check(
        live.get("failureThreshold", 3) * live.get("periodSeconds", 10) <= 60,
        f"{name}: the liveness probe restarts akvfs within a minute of a dead mount",
    )
    res = c.get("resources", {})
    check(
        {"cpu", "memory"} <= set(res.get("requests", {})) and "memory" in res.get("limits", {}),
        f"{name}: resource requests (cpu, memory) and a memory limit",
    )
    check(c["image"] == "ghcr.io/example/akvfs:0.1.0", f"{name}: image ghcr.io/example/akvfs:0.1.0 (got {c['image']})")
    check_notice_access(name, spec, c, sa, config)
    for m in config.get("mount", []):
        path = m.get("path", "")
        check(
            path.startswith(HOST_ROOT + "/") and path.count("/") >= HOST_ROOT.count("/") + 2,
            f"{name}: mount {m.get('vault')} at {path}, at least two levels below {HOST_ROOT} "
            "(consumers mount the directory above the mountpoint)",
        )


SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def notices_of(config):
    """(namespace, name) of every change notice the config's mounts follow."""
    out = set()
    for m in config.get("mount", []):
        spec = m.get("notice", config.get("defaults", {}).get("notice"))
        if spec:
            ns, _, cm = spec.removeprefix("configmap:").partition("/")
            out.add((ns, cm))
    return out


def check_notice_access(name, spec, c, sa, config):
    """A node that follows notices can reach the API server: a token where
    kube clients look for it, and its node name for its delays."""
    if not notices_of(config):
        return
    token_mounted = spec.get("automountServiceAccountToken")
    if token_mounted is None and sa:
        token_mounted = sa[0].get("automountServiceAccountToken", True)
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    m = next((m for m in c.get("volumeMounts", []) if m["mountPath"] == SA_DIR), None)
    sources = vols.get(m["name"], {}).get("projected", {}).get("sources", []) if m else []
    projected = {next(iter(src)) for src in sources}
    check(
        token_mounted is True
        or (m is not None and m.get("readOnly") is True and {"serviceAccountToken", "configMap", "downwardAPI"} <= projected),
        f"{name}: the notice is followed, and an API token (with its CA and namespace) is mounted read-only at {SA_DIR}",
    )
    env = {e["name"]: e for e in c.get("env", [])}
    check(
        env.get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName",
        f"{name}: NODE_NAME from spec.nodeName (the input of the node's delays)",
    )


def check_watch(name, docs, repo):
    """The watcher's render: it publishes the notices the shipped node config
    follows, and the nodes' service account may get and watch exactly those
    objects and nothing else."""
    deps = [r for r in docs if r["kind"] == "Deployment"]
    if not check(len(deps) == 1, f"{name}: one watcher Deployment"):
        return
    dep = deps[0]
    ns = dep["metadata"].get("namespace")
    c = pod_spec(dep)["containers"][0]
    argv = c.get("command", []) + c.get("args", [])
    check(argv[1:2] == ["watch"], f"{name}: runs akvfs watch")
    vaults = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--vault"]
    published = {(ns, "akvfs-notice-" + v.removeprefix("https://").split(".")[0].lower()) for v in vaults}
    check(bool(published), f"{name}: the watcher publishes {sorted(published)}")
    node_docs = kustomize_lite.render(os.path.join(repo, "k8s", "base"))
    ds = [r for r in node_docs if r["kind"] == "DaemonSet"][0]
    node_sa = (ds["metadata"].get("namespace"), pod_spec(ds).get("serviceAccountName"))
    cm = [r for r in node_docs if r["kind"] == "ConfigMap" and "config.toml" in r.get("data", {})][0]
    wanted = notices_of(tomllib.loads(cm["data"]["config.toml"]))
    check(
        bool(wanted) and wanted <= published,
        f"{name}: the shipped node config follows notices the watcher publishes ({sorted(wanted)})",
    )

    def binds_node(b):
        return any(
            s.get("kind") == "ServiceAccount" and (s.get("namespace"), s.get("name")) == node_sa
            for s in b.get("subjects", [])
        )

    check(
        not any(r["kind"] == "ClusterRoleBinding" and binds_node(r) for r in docs),
        f"{name}: no ClusterRoleBinding for the nodes' service account",
    )
    roles = {(r["metadata"].get("namespace"), r["metadata"]["name"]): r for r in docs if r["kind"] == "Role"}
    rules = []
    for b in (r for r in docs if r["kind"] == "RoleBinding" and binds_node(r)):
        role = roles.get((b["metadata"].get("namespace"), b["roleRef"]["name"]))
        if check(
            b["roleRef"]["kind"] == "Role" and role is not None,
            f"{name}: RoleBinding {b['metadata']['name']} grants the nodes a Role of this render",
        ):
            rules += [(role["metadata"].get("namespace"), r) for r in role.get("rules", [])]
    check(
        len(rules) == 1,
        f"{name}: the nodes' service account gets exactly one rule ({len(rules)})",
    )
    for rns, rule in rules:
        check(
            rule.get("apiGroups") == [""] and rule.get("resources") == ["configmaps"],
            f"{name}: the nodes' rule is on core configmaps only",
        )
        check(
            {(rns, n) for n in rule.get("resourceNames", [])} == wanted and rule.get("resourceNames"),
            f"{name}: the nodes' rule names exactly the notices they follow, in that namespace",
        )
        verbs = set(rule.get("verbs", []))
        check(
            {"get", "watch"} <= verbs <= {"get", "list", "watch"},
            f"{name}: the nodes may get and watch the notice, nothing more (verbs {sorted(verbs)})",
        )


def check_consumers(name, docs, config):
    """Every workload that reads akvfs mounts through hostPath does it so that
    a restart of akvfs reaches it: read-only, HostToContainer, and through a
    directory above a mountpoint (never the mountpoint itself)."""
    mount_paths = [m.get("path", "").rstrip("/") for m in config.get("mount", [])]
    for r in docs:
        if r["kind"] == "DaemonSet":
            continue
        spec = pod_spec(r)
        if not spec:
            continue
        for v in spec.get("volumes", []):
            hp = v.get("hostPath", {}).get("path", "").rstrip("/")
            if not hp.startswith(HOST_ROOT):
                continue
            who = f"{name}: {r['kind']}/{r['metadata']['name']} volume {v['name']} ({hp})"
            check(hp not in mount_paths, f"{who} is not a mountpoint itself (it would pin the mount)")
            check(any(p.startswith(hp + "/") for p in mount_paths), f"{who} is a directory above a configured mountpoint")
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                for m in c.get("volumeMounts", []):
                    if m["name"] == v["name"]:
                        check(
                            m.get("readOnly") is True and m.get("mountPropagation") == "HostToContainer",
                            f"{who} in container {c['name']}: readOnly with HostToContainer propagation",
                        )
            ns = r["metadata"].get("namespace")
            nss = [d for d in docs if d["kind"] == "Namespace" and d["metadata"]["name"] == ns]
            if nss:
                level = nss[0]["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce")
                check(level == "privileged", f"{who}: namespace {ns} allows hostPath (Pod Security enforce=privileged)")


def main():
    repo, outdir = sys.argv[1], sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    dirs = []
    for root, _, files in os.walk(os.path.join(repo, "k8s")):
        if "kustomization.yaml" in files:
            dirs.append(root)
    check(len(dirs) >= 2, f"kustomizations found: {', '.join(sorted(os.path.relpath(d, repo) for d in dirs))}")
    csi_consumers = 0
    for d in sorted(dirs):
        name = os.path.relpath(d, os.path.join(repo, "k8s")).replace(os.sep, "-")
        docs = render(d)
        path = os.path.join(outdir, f"{name}.yaml")
        with open(path, "w") as f:
            yaml.safe_dump_all(docs, f, sort_keys=True)
        validate(path)
        if any(r["kind"] == "CSIDriver" and r["metadata"]["name"] == check_csi.DRIVER for r in docs):
            consumers = check_csi.check_all(check, name, docs, repo)
            csi_consumers += consumers
            continue
        if any(r["kind"] == "Deployment" and "watch" in pod_spec(r)["containers"][0].get("args", []) for r in docs):
            check_watch(name, docs, repo)
            continue
        cms = [r for r in docs if r["kind"] == "ConfigMap" and "config.toml" in r.get("data", {})]
        if not check(len(cms) == 1, f"{name}: one ConfigMap with config.toml"):
            continue
        text = cms[0]["data"]["config.toml"]
        try:
            config = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            check(False, f"{name}: config.toml parses as TOML: {e}")
            continue
        check(bool(config.get("mount")), f"{name}: config.toml has at least one [[mount]]")
        with open(os.path.join(outdir, f"{name}.config.toml"), "w") as f:
            f.write(text)
        check_daemonset(name, docs, config)
        check_consumers(name, docs, config)
    check(csi_consumers >= 1, f"at least one example consumer of a {check_csi.DRIVER} volume checked ({csi_consumers})")
    print(f"manifests: {len(failures)} failed checks")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

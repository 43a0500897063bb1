"""The Pod Security Standards' restricted level, rule by rule, for a pod spec.

No maintained Python library implements the Pod Security Standards offline
(the reference implementation is Go code inside the API server,
k8s.io/pod-security-admission), so each rule of the published list
(kubernetes.io/docs/concepts/security/pod-security-standards, "Baseline" and
"Restricted", policy version "latest") is one function here. Each returns a
list of violations (empty: the rule holds). `check(meta, spec)` runs all of
them; `RULES` names them in the order of the published list.

Windows-only fields (hostProcess) are checked as forbidden; the Linux-only
exemptions for `spec.os.name: windows` do not apply to the pods here.
"""

# Baseline: capabilities a container may add (the container runtime's default set).
BASELINE_CAPS = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}
# Baseline: the "safe" sysctls.
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
# Restricted: the only volume types allowed.
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}
VOLUME_NON_SOURCE_KEYS = {"name"}


def containers(spec):
    """(kind, container) for every container, init container and ephemeral container."""
    for kind in ("containers", "initContainers", "ephemeralContainers"):
        for c in spec.get(kind, []) or []:
            yield kind, c


def sc(c):
    return c.get("securityContext") or {}


def host_process(meta, spec):
    bad = []
    if (sc(spec).get("windowsOptions") or {}).get("hostProcess"):
        bad.append("spec.securityContext.windowsOptions.hostProcess")
    for kind, c in containers(spec):
        if (sc(c).get("windowsOptions") or {}).get("hostProcess"):
            bad.append(f"{kind}[{c['name']}].securityContext.windowsOptions.hostProcess")
    return bad


def host_namespaces(meta, spec):
    return [f"spec.{k}" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k)]


def privileged(meta, spec):
    return [f"{kind}[{c['name']}] privileged" for kind, c in containers(spec) if sc(c).get("privileged")]


def capabilities_baseline(meta, spec):
    bad = []
    for kind, c in containers(spec):
        for cap in (sc(c).get("capabilities") or {}).get("add", []) or []:
            if cap not in BASELINE_CAPS:
                bad.append(f"{kind}[{c['name']}] adds {cap}")
    return bad


def host_path_volumes(meta, spec):
    return [f"volume {v['name']} is hostPath" for v in spec.get("volumes", []) or [] if "hostPath" in v]


def host_ports(meta, spec):
    bad = []
    for kind, c in containers(spec):
        for p in c.get("ports", []) or []:
            if p.get("hostPort", 0):
                bad.append(f"{kind}[{c['name']}] hostPort {p['hostPort']}")
    return bad


def apparmor(meta, spec):
    bad = []
    ok_types = {None, "RuntimeDefault", "Localhost"}
    if (sc(spec).get("appArmorProfile") or {}).get("type") not in ok_types:
        bad.append("spec.securityContext.appArmorProfile")
    for kind, c in containers(spec):
        if (sc(c).get("appArmorProfile") or {}).get("type") not in ok_types:
            bad.append(f"{kind}[{c['name']}].securityContext.appArmorProfile")
    for key, value in (meta.get("annotations") or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/"):
            if not (value == "runtime/default" or value.startswith("localhost/")):
                bad.append(f"annotation {key}: {value}")
    return bad


def selinux(meta, spec):
    bad = []
    places = [("spec.securityContext", sc(spec))] + [(f"{k}[{c['name']}]", sc(c)) for k, c in containers(spec)]
    for where, s in places:
        opts = s.get("seLinuxOptions") or {}
        if opts.get("type", "") not in SELINUX_TYPES:
            bad.append(f"{where}.seLinuxOptions.type {opts['type']}")
        for field in ("user", "role"):
            if opts.get(field):
                bad.append(f"{where}.seLinuxOptions.{field}")
    return bad


def proc_mount(meta, spec):
    return [
        f"{kind}[{c['name']}] procMount {sc(c)['procMount']}"
        for kind, c in containers(spec)
        if sc(c).get("procMount") not in (None, "Default")
    ]


def seccomp_baseline(meta, spec):
    bad = []
    if (sc(spec).get("seccompProfile") or {}).get("type") == "Unconfined":
        bad.append("spec.securityContext.seccompProfile Unconfined")
    for kind, c in containers(spec):
        if (sc(c).get("seccompProfile") or {}).get("type") == "Unconfined":
            bad.append(f"{kind}[{c['name']}] seccompProfile Unconfined")
    return bad


def sysctls(meta, spec):
    return [f"sysctl {s['name']}" for s in sc(spec).get("sysctls", []) or [] if s.get("name") not in SAFE_SYSCTLS]


def volume_types(meta, spec):
    bad = []
    for v in spec.get("volumes", []) or []:
        kinds = set(v) - VOLUME_NON_SOURCE_KEYS
        if not kinds or not kinds <= RESTRICTED_VOLUMES:
            bad.append(f"volume {v['name']} of type {sorted(kinds)}")
    return bad


def privilege_escalation(meta, spec):
    return [
        f"{kind}[{c['name']}] allowPrivilegeEscalation is not false"
        for kind, c in containers(spec)
        if sc(c).get("allowPrivilegeEscalation") is not False
    ]


def run_as_non_root(meta, spec):
    pod = sc(spec).get("runAsNonRoot")
    bad = []
    for kind, c in containers(spec):
        own = sc(c).get("runAsNonRoot")
        if own is False or (own is None and pod is not True):
            bad.append(f"{kind}[{c['name']}] runAsNonRoot is not true (in the pod or the container)")
    return bad


def run_as_user(meta, spec):
    bad = []
    if sc(spec).get("runAsUser") == 0:
        bad.append("spec.securityContext.runAsUser 0")
    for kind, c in containers(spec):
        if sc(c).get("runAsUser") == 0:
            bad.append(f"{kind}[{c['name']}] runAsUser 0")
    return bad


def seccomp_restricted(meta, spec):
    ok = {"RuntimeDefault", "Localhost"}
    pod = (sc(spec).get("seccompProfile") or {}).get("type")
    bad = []
    for kind, c in containers(spec):
        own = (sc(c).get("seccompProfile") or {}).get("type")
        effective = own if own is not None else pod
        if effective not in ok:
            bad.append(f"{kind}[{c['name']}] seccompProfile is {effective} (RuntimeDefault or Localhost needed)")
    return bad


def capabilities_restricted(meta, spec):
    bad = []
    for kind, c in containers(spec):
        caps = sc(c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            bad.append(f"{kind}[{c['name']}] does not drop ALL capabilities")
        for cap in caps.get("add") or []:
            if cap != "NET_BIND_SERVICE":
                bad.append(f"{kind}[{c['name']}] adds {cap}")
    return bad


# (level, name, function), in the order of the published list.
RULES = [
    ("baseline", "HostProcess", host_process),
    ("baseline", "Host Namespaces", host_namespaces),
    ("baseline", "Privileged Containers", privileged),
    ("baseline", "Capabilities", capabilities_baseline),
    ("baseline", "HostPath Volumes", host_path_volumes),
    ("baseline", "Host Ports", host_ports),
    ("baseline", "AppArmor", apparmor),
    ("baseline", "SELinux", selinux),
    ("baseline", "/proc Mount Type", proc_mount),
    ("baseline", "Seccomp", seccomp_baseline),
    ("baseline", "Sysctls", sysctls),
    ("restricted", "Volume Types", volume_types),
    ("restricted", "Privilege Escalation", privilege_escalation),
    ("restricted", "Running as Non-root", run_as_non_root),
    ("restricted", "Running as Non-root user", run_as_user),
    ("restricted", "Seccomp", seccomp_restricted),
    ("restricted", "Capabilities", capabilities_restricted),
]


def check(meta, spec):
    """[(level, rule, violations)] for every rule of the restricted level."""
    return [(level, name, fn(meta or {}, spec)) for level, name, fn in RULES]

"""A small kustomize renderer for the subset k8s/ uses.

Used when neither `kubectl kustomize` nor `kustomize` is installed, and
compared with them when they are (so it stays faithful). Supported:
resources (files and directories with a kustomization.yaml), namespace,
images (name -> newName/newTag/digest), and patches given by path whose
target is found by kind, name and namespace, merged as maps (lists are
replaced, as no patch here touches one). Anything else is refused, so a
kustomization that outgrows this subset fails loudly instead of rendering
differently.
"""

import copy
import os
import sys

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}

# Kinds without a namespace, among those a kustomization here may hold.
CLUSTER_SCOPED = {
    "Namespace",
    "CSIDriver",
    "PriorityClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "StorageClass",
    "PersistentVolume",
    "RuntimeClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}


class Unsupported(Exception):
    pass


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def render(directory):
    """The resources a kustomization directory produces, in order."""
    kpath = os.path.join(directory, "kustomization.yaml")
    with open(kpath) as f:
        k = yaml.safe_load(f)
    extra = set(k) - SUPPORTED
    if extra:
        raise Unsupported(f"{kpath}: fields {sorted(extra)} are not supported by this renderer")
    out = []
    for res in k.get("resources", []):
        p = os.path.normpath(os.path.join(directory, res))
        if os.path.isdir(p):
            out.extend(render(p))
        else:
            out.extend(load_docs(p))
    for patch in k.get("patches", []):
        if set(patch) != {"path"}:
            raise Unsupported(f"{kpath}: only patches with a path are supported: {patch}")
        for doc in load_docs(os.path.join(directory, patch["path"])):
            apply_patch(out, doc, kpath)
    ns = k.get("namespace")
    if ns:
        for r in out:
            if r.get("kind") not in CLUSTER_SCOPED:
                r.setdefault("metadata", {})["namespace"] = ns
    for image in k.get("images", []):
        for r in out:
            set_image(r, image)
    return out


def apply_patch(resources, patch, where):
    meta = patch.get("metadata", {})
    matches = [
        r
        for r in resources
        if r.get("kind") == patch.get("kind")
        and r.get("metadata", {}).get("name") == meta.get("name")
        and ("namespace" not in meta or r.get("metadata", {}).get("namespace", meta["namespace"]) == meta["namespace"])
    ]
    if len(matches) != 1:
        raise Unsupported(f"{where}: patch for {patch.get('kind')}/{meta.get('name')} matches {len(matches)} resources")
    merge(matches[0], patch)


def merge(dst, src):
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            merge(dst[key], value)
        elif isinstance(value, list) and isinstance(dst.get(key), list) and value != dst[key]:
            raise Unsupported(f"patching the list {key!r} needs a strategic merge; not supported")
        else:
            dst[key] = copy.deepcopy(value)


def split_image(ref):
    """name, tag, digest of an image reference."""
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
    tag = None
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref, tag = ref.rsplit(":", 1)
    return ref, tag, digest


def set_image(resource, image):
    spec = resource.get("spec", {})
    pod = spec.get("template", {}).get("spec") if "template" in spec else (spec if resource.get("kind") == "Pod" else None)
    if not pod:
        return
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        name, tag, digest = split_image(c.get("image", ""))
        if name != image["name"]:
            continue
        name = image.get("newName", name)
        if "digest" in image:
            c["image"] = f"{name}@{image['digest']}"
        else:
            tag = image.get("newTag", tag)
            c["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest and "newTag" not in image else "")


if __name__ == "__main__":
    yaml.safe_dump_all(render(sys.argv[1]), sys.stdout, sort_keys=True)

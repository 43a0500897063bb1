"""Static checks of packaging/Dockerfile, for machines that cannot run
`docker build`: every path a COPY takes from the build context exists and is
not excluded by packaging/Dockerfile.dockerignore, and the stages are wired
up (COPY --from names an earlier stage, the final stage has an ENTRYPOINT).

usage: check_dockerfile.py REPO [CONTEXT_OUT]

With CONTEXT_OUT, copies exactly the context paths the Dockerfile uses
there, so the caller can build the builder stage's command in that tree.
"""

import fnmatch
import os
import shlex
import shutil
import sys

failures = []


def check(ok, what):
    print(("ok   - " if ok else "FAIL - ") + what)
    if not ok:
        failures.append(what)
    return ok


def instructions(path):
    """(keyword, argument text) per instruction; continuations joined."""
    out, buf = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not buf and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.rstrip().endswith("\\"):
                buf += line.rstrip()[:-1] + " "
                continue
            buf += line
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def ignore_patterns(path):
    if not os.path.exists(path):
        return []
    pats = []
    with open(path) as f:
        for line in f:
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            neg = s.startswith("!")
            pats.append((neg, os.path.normpath(s.lstrip("!")).lstrip("/")))
    return pats


def excluded(rel, pats):
    """Docker's rule: the last matching pattern wins; a pattern also matches
    everything below a matching directory."""
    parts = rel.split("/")
    result = False
    for neg, pat in pats:
        if any(fnmatch.fnmatchcase("/".join(parts[: i + 1]), pat) for i in range(len(parts))):
            result = not neg
    return result


def files_under(repo, rel):
    p = os.path.join(repo, rel)
    if os.path.isfile(p):
        return [rel]
    found = []
    for root, _, files in os.walk(p):
        for f in files:
            found.append(os.path.relpath(os.path.join(root, f), repo))
    return found


def main():
    repo = sys.argv[1]
    context_out = sys.argv[2] if len(sys.argv) > 2 else None
    dockerfile = os.path.join(repo, "packaging", "Dockerfile")
    pats = ignore_patterns(dockerfile + ".dockerignore")
    ins = instructions(dockerfile)
    stages, sources = [], []
    for word, rest in ins:
        if word == "FROM":
            toks = rest.split()
            stages.append(toks[2].lower() if len(toks) >= 3 and toks[1].upper() == "AS" else None)
        elif word in ("COPY", "ADD"):
            toks = shlex.split(rest)
            flags = [t for t in toks if t.startswith("--")]
            args = [t for t in toks if not t.startswith("--")]
            src_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
            if src_stage:
                check(src_stage.lower() in stages[:-1], f"COPY --from={src_stage} names an earlier stage")
                continue
            check(len(args) >= 2, f"{word} {rest} has a source and a destination")
            for src in args[:-1]:
                sources.append(src)
    check(len(stages) >= 2, f"multi-stage build ({len(stages)} stages)")
    last_stage = [i for i, (w, _) in enumerate(ins) if w == "FROM"][-1]
    check(any(w == "ENTRYPOINT" for w, _ in ins[last_stage:]), "the final stage has an ENTRYPOINT")
    for src in sources:
        rel = os.path.normpath(src).lstrip("/")
        if not check(os.path.exists(os.path.join(repo, rel)), f"COPY source {rel} exists"):
            continue
        kept = [f for f in files_under(repo, rel) if not excluded(f, pats)]
        check(bool(kept), f"COPY source {rel} is in the build context (not excluded by the .dockerignore)")
        if context_out:
            for f in kept:
                dst = os.path.join(context_out, f)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copy2(os.path.join(repo, f), dst)
    print(f"dockerfile: {len(failures)} failed checks")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

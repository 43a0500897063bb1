#!/usr/bin/env python3
"""kubefake: a small in-memory Kubernetes API server for tests (stdlib only).

Serves namespaced ConfigMaps, Leases and DaemonSets (and any other plural given
with --resource) over plain HTTP with the API server's own wire shapes: list
and watch with resourceVersion, BOOKMARK events, 410 Expired after compaction,
optimistic concurrency (409 Conflict on a stale resourceVersion), 409
AlreadyExists, 404 NotFound, and Status bodies as the real server sends them.
See README.md beside this file for what it does not model and for the /_fake/
control endpoints that tests use to inject faults.
"""
import argparse, base64, copy, json, sys, threading, time, uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# (group, version, plural) -> (kind, has a status subresource)
RESOURCES = {
    ("", "v1", "configmaps"): ("ConfigMap", False),
    ("", "v1", "secrets"): ("Secret", False),
    ("coordination.k8s.io", "v1", "leases"): ("Lease", False),
    ("apps", "v1", "daemonsets"): ("DaemonSet", True),
}


def api_version(group, version):
    return f"{group}/{version}" if group else version


def status(code, reason, message, details=None):
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


def qualified(group, plural):
    return f"{plural}.{group}" if group else plural


class ApiError(Exception):
    def __init__(self, code, body, headers=None):
        super().__init__(body["message"])
        self.code, self.body, self.headers = code, body, headers or {}


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def json_patch(doc, ops):
    """RFC 6902 JSON patch (add, remove, replace, test)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        kind = op["op"]
        if kind == "test":
            cur = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if cur != op.get("value"):
                raise ApiError(422, status(422, "Invalid", f"the test operation on {op['path']} failed"))
        elif kind == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        elif kind in ("add", "replace"):
            if isinstance(parent, list):
                if last == "-":
                    parent.append(op["value"])
                else:
                    parent.insert(int(last), op["value"]) if kind == "add" else parent.__setitem__(int(last), op["value"])
            else:
                parent[last] = op["value"]
        else:
            raise ApiError(400, status(400, "BadRequest", f"unsupported JSON patch op {kind}"))
    return doc


def selector_match(labels, selector):
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.split("=", 1)
            if labels.get(k.rstrip("=")) != v.lstrip("="):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def field_match(obj, selector):
    meta = obj.get("metadata", {})
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        neg = "!=" in term
        k, v = term.split("!=" if neg else "=", 1)
        have = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace")}.get(k.rstrip("="))
        if (have == v.lstrip("=")) == neg:
            return False
    return True


class Store:
    def __init__(self, bookmark_interval):
        self.lock = threading.Condition()
        self.objects = {}  # (res, ns, name) -> object
        self.history = []  # (rv, type, res, object)
        self.rv = 100
        self.compacted = 0  # watches from a resourceVersion below this get 410
        self.generation = 0  # bumped to end (or expire) every open watch
        self.expire_generation = 0
        self.faults = []
        self.log = []
        self.bookmark_interval = bookmark_interval

    def bump(self, kind, res, obj):
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.history.append((self.rv, kind, res, copy.deepcopy(obj)))
        self.lock.notify_all()

    def take_fault(self, verb, plural, name):
        for f in self.faults:
            if f["verb"] in ("*", verb) and f.get("resource", plural) == plural and f.get("name", name) == name:
                f["count"] -= 1
                if f["count"] <= 0:
                    self.faults.remove(f)
                return f
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store = None

    def log_message(self, *args):
        pass

    # ---- plumbing
    def send_json(self, code, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, status(400, "BadRequest", "the request body is not JSON"))

    def do_GET(self): self.dispatch("GET")
    def do_POST(self): self.dispatch("POST")
    def do_PUT(self): self.dispatch("PUT")
    def do_PATCH(self): self.dispatch("PATCH")
    def do_DELETE(self): self.dispatch("DELETE")

    def dispatch(self, method):
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if url.path.startswith("/_fake/"):
                return self.control(method, url.path, q)
            self.api(method, url.path, q)
        except ApiError as e:
            self.send_json(e.code, e.body, e.headers)
        except (KeyError, IndexError, ValueError, TypeError) as e:
            self.send_json(400, status(400, "BadRequest", f"bad request: {e}"))

    # ---- the API
    def route(self, path):
        p = path.strip("/").split("/")
        if len(p) >= 5 and p[0] == "api" and p[2] == "namespaces":
            group, version, rest = "", p[1], p[3:]
        elif len(p) >= 6 and p[0] == "apis" and p[3] == "namespaces":
            group, version, rest = p[1], p[2], p[4:]
        else:
            raise ApiError(404, status(404, "NotFound", "the server could not find the requested resource"))
        ns, plural = rest[0], rest[1]
        name = rest[2] if len(rest) > 2 else None
        sub = rest[3] if len(rest) > 3 else None
        if (group, version, plural) not in RESOURCES or len(rest) > 4 or (sub and sub != "status"):
            raise ApiError(404, status(404, "NotFound", "the server could not find the requested resource"))
        return group, version, plural, ns, name, sub

    def api(self, method, path, q):
        group, version, plural, ns, name, sub = self.route(path)
        kind, has_status = RESOURCES[(group, version, plural)]
        res = (group, version, plural)
        watch = method == "GET" and name is None and q.get("watch") in ("1", "true")
        verb = {"GET": "watch" if watch else ("get" if name else "list"), "POST": "create",
                "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
        st = self.store
        with st.lock:
            fault = st.take_fault(verb, plural, name)
            st.log.append({"verb": verb, "resource": plural, "namespace": ns, "name": name,
                           "subresource": sub, "code": fault["code"] if fault else None})
        if fault:
            code = fault["code"]
            reason = {409: "Conflict", 410: "Expired", 429: "TooManyRequests", 403: "Forbidden",
                      500: "InternalError", 503: "ServiceUnavailable", 404: "NotFound"}.get(code, "Unknown")
            msg = fault.get("message") or f"injected {reason}"
            if code == 409:
                msg = (f'Operation cannot be fulfilled on {qualified(group, plural)} "{name}": the object has '
                       "been modified; please apply your changes to the latest version and try again")
            headers = {"Retry-After": "1"} if code == 429 else None
            raise ApiError(code, status(code, reason, msg, {"name": name, "group": group, "kind": plural}), headers)
        av = api_version(group, version)
        if watch:
            return self.watch(res, kind, av, ns, q)
        data = self.body() if method in ("POST", "PUT", "PATCH") else None
        if method == "DELETE":
            data = self.body()
        with st.lock:
            if verb == "list":
                return self.list(res, kind, av, ns, q)
            if verb == "create":
                return self.create(res, kind, av, ns, data, has_status)
            key = (res, ns, name)
            cur = st.objects.get(key)
            notfound = ApiError(404, status(404, "NotFound", f'{qualified(group, plural)} "{name}" not found',
                                            {"name": name, "group": group, "kind": plural}))
            conflict = ApiError(409, status(409, "Conflict",
                                            f'Operation cannot be fulfilled on {qualified(group, plural)} "{name}": the object '
                                            "has been modified; please apply your changes to the latest version and try again",
                                            {"name": name, "group": group, "kind": plural}))
            if verb == "get":
                if cur is None:
                    raise notfound
                return self.send_json(200, cur)
            if verb == "delete":
                if cur is None:
                    raise notfound
                pre = ((data or {}).get("preconditions") or {}).get("resourceVersion")
                if pre and pre != cur["metadata"]["resourceVersion"]:
                    raise conflict
                del st.objects[key]
                st.bump("DELETED", res, cur)
                return self.send_json(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                            "details": {"name": name, "group": group, "kind": plural,
                                                        "uid": cur["metadata"]["uid"]}})
            ctype = (self.headers.get("Content-Type") or "").split(";")[0]
            if cur is None:
                if verb == "patch" and ctype == "application/apply-patch+yaml":
                    data.setdefault("metadata", {})["name"] = name
                    return self.create(res, kind, av, ns, data, has_status)
                raise notfound
            if verb == "update":
                new = data
                if (new.get("metadata") or {}).get("name") != name:
                    raise ApiError(400, status(400, "BadRequest", "the name of the object does not match the name on the URL"))
            elif ctype == "application/json-patch+json":
                new = json_patch(cur, data)
            else:  # merge, strategic merge (treated as merge), apply (no field ownership)
                new = merge_patch(cur, data)
            want = (new.get("metadata") or {}).get("resourceVersion")
            sent = (data.get("metadata") or {}).get("resourceVersion") if isinstance(data, dict) else want
            if sent and sent != cur["metadata"]["resourceVersion"]:
                raise conflict
            new = copy.deepcopy(new)
            new["apiVersion"], new["kind"] = av, kind
            meta = new.setdefault("metadata", {})
            for k in ("name", "namespace", "uid", "creationTimestamp"):
                meta[k] = cur["metadata"][k]
            if has_status:
                if sub == "status":
                    new = dict(copy.deepcopy(cur), status=new.get("status"))
                elif "status" in cur:
                    new["status"] = cur["status"]
                else:
                    new.pop("status", None)
            meta = new["metadata"]
            meta["resourceVersion"] = cur["metadata"]["resourceVersion"]
            if new == cur:  # a no-op write keeps the resourceVersion and sends no event
                return self.send_json(200, cur)
            st.objects[key] = new
            st.bump("MODIFIED", res, new)
            return self.send_json(200, new)

    def create(self, res, kind, av, ns, data, has_status):
        st = self.store
        meta = data.setdefault("metadata", {})
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            else:
                raise ApiError(422, status(422, "Invalid", f"{kind} is invalid: metadata.name: Required value"))
        name = meta["name"]
        key = (res, ns, name)
        if key in st.objects:
            raise ApiError(409, status(409, "AlreadyExists", f'{qualified(res[0], res[2])} "{name}" already exists',
                                       {"name": name, "group": res[0], "kind": res[2]}))
        obj = copy.deepcopy(data)
        obj["apiVersion"], obj["kind"] = av, kind
        meta = obj["metadata"]
        meta.pop("resourceVersion", None)
        meta.update(namespace=ns, uid=str(uuid.uuid4()),
                    creationTimestamp=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        if has_status:
            obj["status"] = {}
        st.objects[key] = obj
        st.bump("ADDED", res, obj)
        self.send_json(201, obj)

    def matching(self, res, ns, q):
        return sorted((o for (r, n, _), o in self.store.objects.items()
                       if r == res and n == ns and selector_match(o["metadata"].get("labels") or {}, q.get("labelSelector"))
                       and field_match(o, q.get("fieldSelector"))), key=lambda o: o["metadata"]["name"])

    def list(self, res, kind, av, ns, q):
        st = self.store
        rv = q.get("resourceVersion")
        if rv and q.get("resourceVersionMatch") == "Exact" and int(rv) < st.compacted:
            raise ApiError(410, status(410, "Expired", f"too old resource version: {rv} ({st.compacted})"))
        items = self.matching(res, ns, q)
        start = int(base64.b64decode(q["continue"]).decode()) if q.get("continue") else 0
        limit = int(q.get("limit") or 0)
        page = items[start:start + limit] if limit else items[start:]
        meta = {"resourceVersion": str(st.rv)}
        if limit and start + limit < len(items):
            meta["continue"] = base64.b64encode(str(start + limit).encode()).decode()
            meta["remainingItemCount"] = len(items) - start - limit
        # The real server leaves apiVersion and kind out of list items.
        out = [{k: v for k, v in o.items() if k not in ("apiVersion", "kind")} for o in page]
        self.send_json(200, {"kind": kind + "List", "apiVersion": av, "metadata": meta, "items": out})

    def watch(self, res, kind, av, ns, q):
        st = self.store
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(event):
            data = json.dumps(event).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        bookmarks = q.get("allowWatchBookmarks") in ("1", "true")
        deadline = time.monotonic() + float(q.get("timeoutSeconds") or 1800)
        rv = q.get("resourceVersion") or ""
        try:
            with st.lock:
                gen = st.generation
                initial = []
                if rv in ("", "0") or q.get("sendInitialEvents") == "true":
                    initial = [{"type": "ADDED", "object": copy.deepcopy(o)} for o in self.matching(res, ns, q)]
                    since = st.rv
                elif int(rv) < st.compacted:
                    initial = [{"type": "ERROR", "object": status(410, "Expired",
                                                                  f"too old resource version: {rv} ({st.compacted})")}]
                    since = None
                else:
                    since = int(rv)
                if q.get("sendInitialEvents") == "true" and since is not None:
                    initial.append({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": av, "metadata": {
                        "resourceVersion": str(since), "annotations": {"k8s.io/initial-events-end": "true"}}}})
            for e in initial:
                send(e)
            last_bookmark = time.monotonic()
            while since is not None:
                with st.lock:
                    cur_rv = st.rv
                    events = [(r, t, o) for (r, t, rs, o) in st.history if r > since and rs == res
                              and o["metadata"].get("namespace") == ns and field_match(o, q.get("fieldSelector"))
                              and selector_match(o["metadata"].get("labels") or {}, q.get("labelSelector"))]
                    if not events and st.generation == gen:
                        st.lock.wait(0.2)
                    ended, expired = st.generation != gen, st.expire_generation > gen
                for r, t, o in events:
                    send({"type": t, "object": copy.deepcopy(o)})
                    since = r
                if ended:
                    if expired:
                        send({"type": "ERROR", "object": status(410, "Expired", f"too old resource version: {since} ({cur_rv})")})
                    break
                if time.monotonic() >= deadline:
                    break
                if bookmarks and time.monotonic() - last_bookmark >= st.bookmark_interval:
                    since = max(since, cur_rv) if not events else since
                    send({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": av,
                                                         "metadata": {"resourceVersion": str(since)}}})
                    last_bookmark = time.monotonic()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    # ---- test control
    def control(self, method, path, q):
        st = self.store
        with st.lock:
            if path == "/_fake/requests" and method == "GET":
                return self.send_json(200, st.log)
            if path == "/_fake/requests" and method == "DELETE":
                st.log.clear()
                return self.send_json(200, {})
            if path == "/_fake/fail" and method == "POST":
                f = self.body()
                f.setdefault("count", 1)
                f.setdefault("verb", "*")
                st.faults.append(f)
                return self.send_json(200, f)
            if path == "/_fake/compact" and method == "POST":
                st.compacted = st.rv
                st.history = [h for h in st.history if h[0] > st.compacted]
                return self.send_json(200, {"compacted": st.compacted})
            if path in ("/_fake/watches/close", "/_fake/watches/expire") and method == "POST":
                st.generation += 1
                if path.endswith("expire"):
                    st.expire_generation = st.generation
                    st.compacted = st.rv
                    st.history = [h for h in st.history if h[0] > st.compacted]
                st.lock.notify_all()
                return self.send_json(200, {"resourceVersion": str(st.rv)})
            if path == "/_fake/state" and method == "GET":
                return self.send_json(200, {"resourceVersion": str(st.rv), "compacted": st.compacted,
                                            "objects": list(st.objects.values())})
        self.send_json(404, status(404, "NotFound", f"no control endpoint {method} {path}"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--bookmark-interval", type=float, default=1.0,
                    help="seconds between BOOKMARK events on watches that allow them (the real server: about 1 min)")
    args = ap.parse_args()
    Handler.store = Store(args.bookmark_interval)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

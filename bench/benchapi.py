"""The benches' API client (bench/lib.sh exports BENCH_PY, this folder):

    sys.path.insert(0, os.environ["BENCH_PY"])
    from benchapi import alive, call, conn

conn([port]) connects to the bench's server on 127.0.0.1 (port: default
BENCH_PORT, the port bench_init chose) (HTTPS with the CA
and the admin token bench_connect exported, or plain HTTP with
BENCH_INSECURE); call(c, method, path, body) sends JSON and returns the
decoded answer, raising RuntimeError on an HTTP error; metrics(c) reads
the server's /metrics (series without labels); alive(pid) tells
whether a process still runs.
"""
import http.client
import json
import os
import ssl

_tls = os.environ.get("BERTH_ADDR", "").startswith("https://")
_ctx = ssl.create_default_context(cafile=os.environ["BERTH_CACERT"]) if _tls else None
_auth = {"Authorization": "Bearer " + os.environ["BERTH_TOKEN"]} if _tls else {}


def conn(port=None, timeout=120):
    port = port or int(os.environ["BENCH_PORT"])
    if _tls:
        return http.client.HTTPSConnection("127.0.0.1", port, context=_ctx, timeout=timeout)
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


def call(c, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    hdrs = dict(_auth, **({"Content-Type": "application/json"} if data else {}))
    c.request(method, path, body=data, headers=hdrs)
    r = c.getresponse()
    payload = r.read()
    if r.status >= 400:
        raise RuntimeError("%s %s: HTTP %d %s" % (method, path, r.status, payload[:200]))
    return json.loads(payload)


def metrics(c):
    """The server's /metrics as {name: value} (series without labels)."""
    c.request("GET", "/metrics", headers=_auth)
    r = c.getresponse()
    out = {}
    for line in r.read().decode().splitlines():
        parts = line.split()
        if len(parts) == 2 and not line.startswith("#") and "{" not in parts[0]:
            out[parts[0]] = float(parts[1])
    return out


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False

#!/usr/bin/env python3
"""A polling client load for the benches: C clients, each calling in a loop
`berth node list --json`, `berth job list --json` and `berth job status KEY
--json` (KEY: the first job of the list, when there is one), through the real
CLI (so its paging is measured too).

Runs until SIGTERM/SIGINT or --seconds, then prints one line:
  reads=… read_errors=… node_list_p50_ms=… node_list_p99_ms=… node_list_max_ms=…
  job_list_p50_ms=… … job_status_p50_ms=… …
Usage: poller.py --berth BIN --addr http(s)://HOST:PORT [--clients C] [--seconds S]
                 [--prefix NAME]   (the prefix of the printed figures)
                 [--cacert FILE] [--token TOKEN]
A TLS server's CA and a token come from --cacert/--token, else from the
environment (BERTH_CACERT, BERTH_TOKEN), as the CLI reads them.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("--berth", required=True)
ap.add_argument("--addr", required=True)
ap.add_argument("--clients", type=int, default=4)
ap.add_argument("--seconds", type=float, default=0)
ap.add_argument("--prefix", default="")
ap.add_argument("--cacert", default=os.environ.get("BERTH_CACERT"))
ap.add_argument("--token", default=os.environ.get("BERTH_TOKEN"))
args = ap.parse_args()
env = dict(os.environ)
for k, v in (("BERTH_CACERT", args.cacert), ("BERTH_TOKEN", args.token)):
    if v:
        env[k] = v

stop = threading.Event()
# The handlers only raise a flag: Event.set() takes a lock that the main
# thread may hold in stop.wait() when the signal comes (a deadlock).
signalled = [False]
signal.signal(signal.SIGTERM, lambda *_: signalled.__setitem__(0, True))
signal.signal(signal.SIGINT, lambda *_: signalled.__setitem__(0, True))

lock = threading.Lock()
times = {"node_list": [], "job_list": [], "job_status": []}
errors = []
job_key = [None]


def run(kind, argv):
    t0 = time.monotonic()
    p = subprocess.run([args.berth, "--addr", args.addr] + argv, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=300, env=env)
    ms = (time.monotonic() - t0) * 1000
    with lock:
        if p.returncode != 0:
            errors.append("%s: %s" % (kind, p.stderr.decode(errors="replace").strip()[:200]))
            return None
        times[kind].append(ms)
    return p.stdout


def client(i):
    # Each client starts at another verb so that the three kinds overlap.
    k = i % 3
    while not stop.is_set():
        try:
            if k == 0:
                run("node_list", ["node", "list", "--json"])
            elif k == 1:
                out = run("job_list", ["job", "list", "--json"])
                if out:
                    jobs = json.loads(out)
                    if jobs:
                        job_key[0] = jobs[0]["job"]
            elif job_key[0]:
                run("job_status", ["job", "status", job_key[0], "--json"])
        except Exception as e:  # noqa: BLE001 - counted as a read error
            with lock:
                errors.append(str(e)[:200])
        k = (k + 1) % 3


threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
for t in threads:
    t.start()
t_end = time.monotonic() + args.seconds if args.seconds > 0 else None
while not signalled[0]:
    if t_end and time.monotonic() >= t_end:
        break
    time.sleep(0.2)
stop.set()
for t in threads:
    t.join(timeout=310)


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))] if v else 0


parts = ["%sreads=%d" % (args.prefix, sum(len(v) for v in times.values())),
         "%sread_errors=%d" % (args.prefix, len(errors))]
for kind, v in times.items():
    parts.append("%s%s_p50_ms=%.0f %s%s_p99_ms=%.0f %s%s_max_ms=%.0f" % (
        args.prefix, kind, pct(v, 0.5), args.prefix, kind, pct(v, 0.99), args.prefix, kind,
        max(v) if v else 0))
if errors:
    print("poller: first read error: %s" % errors[0], file=sys.stderr)
print(" ".join(parts), flush=True)

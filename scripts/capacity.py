#!/usr/bin/env python3
"""Redis memory per job, as README's capacity table states it: queued, retained finished (result
kept for result_ttl) and retained failed (kept for failure_ttl), with Redis's default
stream-node-max-bytes (4096) and with the recommended 512.

    python3 scripts/capacity.py target/release/prosaas [N]

For each setting: a private redis-server, N jobs enqueued through the enqueue API (`diag.noop`,
then `diag.fail` permanent), used_memory read before and after; then one worker runs them and
used_memory is read again. Prints bytes per job. N defaults to 20,000.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

TOKEN = "api-token"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                          text=True).stdout.strip()


def used_memory(port):
    for line in cli(port, "info", "memory").splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    return 0


def start(binary, role, port, extra):
    http = free_port()
    env = {"PATH": os.environ["PATH"], "REDIS_URL": f"redis://127.0.0.1:{port}/0",
           "PORT": str(http), "PROSAAS__HTTP__HOST": "127.0.0.1", "INTERNAL_API_TOKEN": TOKEN,
           "PROSAAS__API__ALLOW_MISSING_SECRETS": "true", "RUST_LOG": "warn",
           "PROSAAS__WORKER__QUEUES": "cap", "PROSAAS__API__QUEUES": "cap"}
    env.update(extra)
    proc = subprocess.Popen([binary, "--role", role], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=1).read()
            return proc, http
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{role} did not come up")


def enqueue(http, n, job_type, args):
    bodies = [json.dumps({"job_type": job_type, "queue": "cap", "args": args}).encode()
              for _ in range(n)]

    def send(chunk):
        for body in chunk:
            req = urllib.request.Request(f"http://127.0.0.1:{http}/api/jobs/enqueue", data=body,
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {TOKEN}"})
            urllib.request.urlopen(req, timeout=10).read()

    threads = [threading.Thread(target=send, args=(bodies[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def measure(binary, node_bytes, n):
    port = free_port()
    d = tempfile.mkdtemp()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly",
                              "no", "--dir", d, "--stream-node-max-bytes", str(node_bytes)],
                             stdout=subprocess.DEVNULL)
    while cli(port, "ping") != "PONG":
        time.sleep(0.05)
    api, http = start(binary, "api", port, {})
    out = {}
    try:
        for kind, job_type, args, registry in (("finished", "diag.noop", {}, "rq:finished:cap"),
                                                ("failed", "diag.fail",
                                                 {"permanent": True, "message": "capacity"},
                                                 "rq:failed:cap")):
            base = used_memory(port)
            enqueue(http, n, job_type, args)
            queued = used_memory(port)
            worker, _ = start(binary, "worker", port, {"PROSAAS__WORKER__RESULT_TTL_SECS": "86400"})
            while int(cli(port, "zcard", registry) or 0) < n:
                time.sleep(0.5)
            worker.terminate()
            worker.wait()
            kept = used_memory(port)
            out["queued"] = (queued - base) / n
            out[kind] = (kept - base) / n
            cli(port, "flushall")
    finally:
        api.kill()
        redis.kill()
        redis.wait()
        shutil.rmtree(d, ignore_errors=True)
    return out


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    version = subprocess.run(["redis-server", "--version"], capture_output=True,
                             text=True).stdout.split()[2]
    for node_bytes in (4096, 512):
        r = measure(binary, node_bytes, n)
        print(f"{version}, stream-node-max-bytes {node_bytes}: {n} jobs: "
              f"queued {r['queued']:.0f} B/job, retained finished {r['finished']:.0f} B/job, "
              f"retained failed {r['failed']:.0f} B/job")

#!/usr/bin/env python3
"""The attacks of issue #15 against one prosaas binary, on loopback, with a private redis-server.

    python3 scripts/edge-attacks.py target/release/prosaas [attack ...]

Attacks (all by default):
  bodies   N unauthenticated 1 MB webhook bodies at once; the api's RSS before and after
  cap      max_concurrent_requests slow authenticated bodies, then /healthz and /readyz
  idle     300 half-open connections (half a request line / half the headers / nothing);
           how many are still open after 10 s, 45 s and 80 s
  worker   200,000 diag.noop jobs through one worker nobody scrapes; its RSS every 50,000

Every load is bounded and stops by itself. Prints one line per figure.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

SECRET, TOKEN = "bridge-secret", "api-token"
RQ_PYTHON = os.environ.get("RQ_PYTHON", "target/rq-venvs/3.0.0/bin/python")
ENQUEUE = """
import sys
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer
q = Queue("default", connection=Redis.from_url(sys.argv[1]), serializer=JSONSerializer)
n = int(sys.argv[2])
for start in range(0, n, 1000):
    q.enqueue_many([Queue.prepare_data("diag.noop", result_ttl=0) for _ in range(min(1000, n - start))])
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


class Redis:
    def __init__(self):
        self.dir = tempfile.mkdtemp()
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", self.dir], stdout=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.1).close()
                return
            except OSError:
                time.sleep(0.05)

    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def start(binary, role, redis, extra=None):
    port = free_port()
    env = {"PATH": os.environ["PATH"], "REDIS_URL": redis.url(), "PORT": str(port),
           "PROSAAS__HTTP__HOST": "127.0.0.1", "INTERNAL_SECRET": SECRET,
           "INTERNAL_API_TOKEN": TOKEN, "TWILIO_AUTH_TOKEN": "t",
           "PUBLIC_BASE_URL": "https://example.com", "RUST_LOG": "warn"}
    env.update(extra or {})
    proc = subprocess.Popen([binary, "--role", role], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{role} did not come up")


def status(port, path, timeout=5.0):
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout).status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError as e:
        return f"no answer ({type(e).__name__})"


def head(path, length, extra=""):
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n{extra}\r\n").encode()


def bodies(binary, n=600):
    redis = Redis()
    proc, port = start(binary, "api", redis)
    try:
        before = rss_kib(proc.pid)
        body = b"x" * 1_000_000
        socks = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            s.setblocking(False)
            s.send(head("/webhook/whatsapp/incoming", len(body)))
            socks.append([s, memoryview(body)])
        deadline = time.time() + 60
        while socks and time.time() < deadline:
            left = []
            for s, rest in socks:
                try:
                    sent = s.send(rest[:262144])
                    rest = rest[sent:]
                except BlockingIOError:
                    pass
                except OSError:
                    s.close()
                    continue
                if len(rest):
                    left.append([s, rest])
                else:
                    s.close()
            socks = left
            time.sleep(0.001)
        for s, _ in socks:
            s.close()
        time.sleep(1)
        after = rss_kib(proc.pid)
        print(f"bodies: {n} unauthenticated 1 MB bodies: RSS {before // 1024} MB -> {after // 1024} MB")
    finally:
        proc.kill()
        redis.stop()


def cap(binary, slots=200):
    redis = Redis()
    proc, port = start(binary, "api", redis, {"PROSAAS__API__MAX_CONCURRENT_REQUESTS": str(slots),
                                              "PROSAAS__API__REQUEST_TIMEOUT_MS": "60000"})
    try:
        held = []
        for _ in range(slots + 20):
            s = socket.create_connection(("127.0.0.1", port))
            s.send(head("/api/jobs/enqueue", 1000, f"Authorization: Bearer {TOKEN}\r\n") + b"{")
            held.append(s)
        time.sleep(1)
        for path in ("/healthz", "/readyz", "/metrics"):
            t = time.time()
            st = status(port, path)
            print(f"cap: {slots} slots held by slow bodies: {path} -> {st} in {1000 * (time.time() - t):.0f} ms")
        for s in held:
            s.close()
    finally:
        proc.kill()
        redis.stop()


def idle(binary, n=300):
    redis = Redis()
    proc, port = start(binary, "api", redis)
    try:
        socks = []
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            s.send([b"GET /heal", b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b""][i % 3])
            s.setblocking(False)
            socks.append(s)
        start_t = time.time()
        for mark in (10, 45, 80):
            time.sleep(max(0, start_t + mark - time.time()))
            still = 0
            for s in socks:
                try:
                    if s.recv(1) == b"":
                        continue
                except BlockingIOError:
                    still += 1
                    continue
                except OSError:
                    continue
            print(f"idle: {n} half-open or silent connections: {still} still open after {mark} s")
        for s in socks:
            s.close()
    finally:
        proc.kill()
        redis.stop()


def worker(binary, total=200_000, batch=50_000):
    redis = Redis()
    try:
        env = {"PATH": os.environ["PATH"], "REDIS_URL": redis.url()}
        proc, port = start(binary, "worker", redis, {"PROSAAS__WORKER__CONCURRENCY": "64"})
        time.sleep(1)
        print(f"worker: RSS at start {rss_kib(proc.pid) // 1024} MB")
        done = 0
        while done < total:
            # Python RQ enqueues (RQ's layout is prosaas's): a venv from scripts/rq-venvs.sh.
            subprocess.run([RQ_PYTHON, "-c", ENQUEUE, redis.url(), str(batch)], check=True)
            done += batch
            deadline = time.time() + 300
            while time.time() < deadline:
                out = subprocess.run([binary, "jobs", "stats", "--json"], env=env,
                                     capture_output=True, text=True).stdout
                if '"queued": 0' in out and '"started": 0' in out:
                    break
                time.sleep(0.5)
            print(f"worker: RSS after {done} jobs, never scraped: {rss_kib(proc.pid) // 1024} MB")
        proc.kill()
    finally:
        redis.stop()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    binary = sys.argv[1]
    chosen = sys.argv[2:] or ["bodies", "cap", "idle", "worker"]
    for name in chosen:
        globals()[name](binary)

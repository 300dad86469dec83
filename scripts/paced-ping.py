#!/usr/bin/env python3
"""What one request costs Redis when requests arrive one at a time: RATE PINGs a second for
SECONDS on one connection to the redis-server on 127.0.0.1:PORT, and the Redis process's CPU time
(from /proc, so the server must run on this machine) per request. docs/BENCHMARKS.md uses it for
the floor of a job's round trips at an everyday rate.

    python3 scripts/paced-ping.py RATE SECONDS PORT
"""
import socket
import sys
import time


def cpu_ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def main():
    rate, seconds, port = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b"INFO server\r\n")
    time.sleep(0.1)
    info = s.recv(65536).decode()
    pid = int(next(l for l in info.split("\r\n") if l.startswith("process_id:")).split(":")[1])
    hz = 100
    n = int(rate * seconds)
    before = cpu_ticks(pid)
    start = time.time()
    for i in range(n):
        delay = start + i / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        s.sendall(b"PING\r\n")
        s.recv(100)
    used = (cpu_ticks(pid) - before) / hz
    print(f"{n} PINGs in {time.time() - start:.2f} s: Redis CPU {used * 1e6 / n:.1f} us per request")


if __name__ == "__main__":
    main()

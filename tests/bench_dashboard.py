#!/usr/bin/env python3
"""Dashboard benchmark: the cost of a snapshot period with 50 replicas, page and fragment
renders per second, and the page's weight.

Starts its own redis-server, fills it with an hour of history as the worker would
(health samples, per-minute series, counters). First it measures what one refresh period
costs a `svc dashboard` (CPU time per period, from /proc) with no replicas and with 50
replicas heartbeating (an nginx answers their /health/ready), each probed every period.
Then, with the 50 replicas still beating, it runs `svc all` on that Redis (release
build) and drives the dashboard's page (/) and live fragment (/partials/status) with wrk,
alternating with nginx serving the same bytes as static files: the ceiling of this
machine. Prints medians, the svc/nginx ratio, and the full page's size (HTML + CSS + JS).

It also kills one of two gateways five times and measures how long the dashboard (1 s
refresh) takes to count it as not ready.

Targets: >= 10,000 fragment renders/s; page under 50 KB uncompressed; a replica's
death shown within two refresh periods.

Usage: tests/bench_dashboard.py [--rounds N] [--duration SECONDS] [--connections N]
Needs: target/release/svc, redis-server, nginx, wrk (tests/bench.sh installs them).
"""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from bench import (SVC, arguments, free_port, side_by_side, start_nginx, start_redis, stop,
                   wait_http)

SERVICES = ("api-gateway", "worker-service", "redis", "dashboard")
TASKS = ("data_processing", "cleanup", "health_check", "metrics_collection")


def redis_commands(url, commands):
    """Sends `commands` (lists of strings) over RESP; returns the raw replies."""
    m = re.match(r"redis://:([^@]*)@([^:]+):(\d+)/", url)
    password, host, port = m.group(1), m.group(2), int(m.group(3))
    out = bytearray()
    for cmd in [["AUTH", password]] + commands:
        out += f"*{len(cmd)}\r\n".encode()
        for arg in cmd:
            b = str(arg).encode()
            out += f"${len(b)}\r\n".encode() + b + b"\r\n"
    with socket.create_connection((host, port)) as s:
        s.sendall(out + b"*1\r\n$4\r\nQUIT\r\n")
        while s.recv(65536):
            pass


def samples(now, ages):
    """LPUSH commands of one health sample per service for each age (seconds), oldest first."""
    cmds = []
    for svc in SERVICES:
        for i, age in enumerate(ages):
            sample = {"service": svc, "timestamp": now - age, "status": "healthy",
                      "response_time_ms": 1.5 + (i * 7 % 11) * 0.4, "error": None}
            cmds.append(["LPUSH", f"svc:health:{svc}", json.dumps(sample)])
        cmds.append(["LTRIM", f"svc:health:{svc}", 0, 59])
    return cmds


def keep_fresh(url, stop_event):
    """Records a sample per service every 5 s, as a worker would, so the history the
    page shows never turns stale (which would make it lighter) during the runs."""
    while not stop_event.wait(5):
        redis_commands(url, samples(time.time(), [0]))


def fill(url):
    """An hour of what the worker writes, so the page is as heavy as in real use."""
    now = time.time()
    minute = int(now // 60)
    cmds = samples(now, range(590, -1, -10))
    for svc in SERVICES:
        for m in range(minute - 60, minute):
            cmds.append(["HSET", f"svc:series:checks:{svc}", m, 6])
            cmds.append(["HSET", f"svc:series:up:{svc}", m, 6])
    for m in range(minute - 60, minute + 1):
        cmds.append(["HSET", "svc:series:requests", m, 900 + m % 37])
    for task in TASKS:
        cmds.append(["SET", f"worker:tasks:{task}", 360])
    cmds.append(["SET", "worker:last_task", "cleanup"])
    cmds.append(["SET", "worker:last_task_time", now])
    redis_commands(url, cmds)


REPLICAS = 50
ROLES = ("gateway", "worker", "dashboard")


def beat(url, port, stop_event):
    """Heartbeats of REPLICAS instances (roles in turn), all probed at nginx on `port`,
    every 2 s as real ones beat, until `stop_event` is set."""
    started = time.time()
    instances = [json.dumps({"role": ROLES[i % 3], "id": f"bench-{i}", "version": "bench",
                             "started_at": started, "address": f"127.0.0.1:{port}"})
                 for i in range(REPLICAS)]
    while True:
        expires = time.time() + 6
        redis_commands(url, [["ZADD", "svc:instances", expires, i] for i in instances])
        if stop_event.wait(2):
            return


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def snapshot_cost(redis_url, replicas_port, seconds=20):
    """CPU milliseconds one refresh period (1 s) costs a `svc dashboard` that probes the
    replicas heartbeating now, and how many replicas it counted."""
    port = free_port()
    target = f"http://127.0.0.1:{replicas_port}"
    env = {"PATH": os.environ["PATH"], "REDIS_URL": redis_url, "DRAIN_DELAY": "0s",
           "LOG_LEVEL": "warn"}
    proc = subprocess.Popen(
        [SVC, "dashboard", "--host", "127.0.0.1", "--port", str(port), "--refresh", "1s",
         "--gateway-url", target, "--worker-url", target],
        env=env, stdout=subprocess.DEVNULL,
    )
    try:
        wait_http(port, "/health/ready")
        time.sleep(3)  # warm-up: connections made, first snapshots taken
        cpu, wall = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        cpu, wall = cpu_seconds(proc.pid) - cpu, time.monotonic() - wall
        check = json.loads(fetch(port, "/api/health-check"))
        counted = sum(s.get("replicas", {}).get("total", 0) for s in check["services"])
    finally:
        stop(proc)
    return cpu * 1000 / wall, counted


def death_to_page(redis_url, rounds=5, refresh=1.0):
    """Seconds from a gateway's SIGKILL to the dashboard (1 s refresh) counting it as
    not ready, one killed of two per round; median and worst."""
    env = {"PATH": os.environ["PATH"], "REDIS_URL": redis_url, "DRAIN_DELAY": "0s",
           "LOG_LEVEL": "warn"}
    dash_port = free_port()
    gateways = []

    def gateway():
        port = free_port()
        proc = subprocess.Popen([SVC, "gateway", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=subprocess.DEVNULL)
        wait_http(port, "/health/ready")
        return proc, port

    def gateway_replicas():
        check = json.loads(fetch(dash_port, "/api/health-check"))
        entry = next(s for s in check["services"] if s["name"] == "api-gateway")
        return entry.get("replicas", {})

    first = gateway()
    gateways.append(first)
    target = f"http://127.0.0.1:{first[1]}"
    dash = subprocess.Popen(
        [SVC, "dashboard", "--host", "127.0.0.1", "--port", str(dash_port),
         "--refresh", f"{refresh}s", "--gateway-url", target, "--worker-url", target],
        env=env, stdout=subprocess.DEVNULL)
    times = []
    try:
        wait_http(dash_port, "/health/ready")
        for _ in range(rounds):
            victim = gateway()
            gateways.append(victim)
            deadline = time.monotonic() + 20
            while gateway_replicas().get("ready") != 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            killed = time.monotonic()
            victim[0].kill()
            victim[0].wait()
            while gateway_replicas().get("ready") != 1 and time.monotonic() < killed + 30:
                time.sleep(0.02)
            times.append(time.monotonic() - killed)
            gateways.remove(victim)
    finally:
        for proc, _ in gateways:
            stop(proc)
        stop(dash)
    times.sort()
    return times[len(times) // 2], times[-1]


def fetch(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as res:
        return res.read()


def serve_files(tmp, files):
    """nginx serving `files` ({name: bytes}) from a directory."""
    root = os.path.join(tmp, "www")
    os.makedirs(root)
    for name, body in files.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(body)
    return start_nginx(tmp, f"root {root}; default_type text/html;", "/" + next(iter(files)))


def main():
    args = arguments()

    with tempfile.TemporaryDirectory() as tmp:
        redis, redis_url = start_redis(tmp)
        svc = nginx = replicas = None
        fresh = threading.Event()
        try:
            fill(redis_url)
            threading.Thread(target=keep_fresh, args=(redis_url, fresh), daemon=True).start()
            replicas_dir = os.path.join(tmp, "replicas")
            os.makedirs(replicas_dir)
            replicas, replicas_port = start_nginx(replicas_dir)
            alone, counted = snapshot_cost(redis_url, replicas_port)
            print(f"snapshot period, no replicas but itself: {alone:.1f} ms CPU per 1 s period "
                  f"({counted} counted)")
            threading.Thread(target=beat, args=(redis_url, replicas_port, fresh),
                             daemon=True).start()
            time.sleep(1)
            busy, counted = snapshot_cost(redis_url, replicas_port)
            print(f"snapshot period, {REPLICAS} replicas probed: {busy:.1f} ms CPU per 1 s period "
                  f"({counted} counted)")
            median, worst = death_to_page(redis_url)
            print(f"a gateway's death shown (1 s refresh): median {median:.2f} s, worst "
                  f"{worst:.2f} s (target: within two periods, 2 s: "
                  f"{'ok' if worst <= 2.0 else 'MISSED'})")
            port, gateway_port = free_port(), free_port()
            env = {"PATH": os.environ["PATH"], "REDIS_URL": redis_url, "DRAIN_DELAY": "0s",
                   "LOG_LEVEL": "warn"}
            svc = subprocess.Popen(
                [SVC, "all", "--gateway-port", str(gateway_port),
                 "--worker-port", str(free_port()), "--dashboard-port", str(port)],
                env=env, stdout=subprocess.DEVNULL,
            )
            wait_http(port, "/health/ready")
            page = fetch(port, "/")
            fragment = fetch(port, "/partials/status")
            assets = re.findall(rb'(?:href|src)="(/static/[^"]+)"', page)
            weight = len(page) + sum(len(fetch(port, a.decode())) for a in assets)
            nginx, nginx_port = serve_files(tmp, {"page.html": page, "fragment.html": fragment})

            print("nginx serves the same bytes as static files")
            fragment_target = 10_000
            side_by_side([
                ("/partials/status", f"http://127.0.0.1:{port}/partials/status",
                 f"http://127.0.0.1:{nginx_port}/fragment.html",
                 lambda rps, _: f">= {fragment_target} "
                                f"{'ok' if rps >= fragment_target else 'MISSED'}"),
                ("/", f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{nginx_port}/page.html",
                 lambda _, __: "-"),
            ], args)
            if b'class="spark"' not in fetch(port, "/partials/status"):
                sys.exit("the history went stale during the runs: the numbers are not comparable")
        finally:
            fresh.set()
            for proc in (svc, nginx, replicas, redis):
                if proc:
                    stop(proc)

    print(f"\nfragment {len(fragment)} bytes; page {len(page)} bytes HTML + "
          f"{weight - len(page)} bytes CSS and JS = {weight} bytes "
          f"(target < 50000: {'ok' if weight < 50_000 else 'MISSED'})")


if __name__ == "__main__":
    main()

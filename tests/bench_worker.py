#!/usr/bin/env python3
"""Worker benchmark: end-to-end job throughput and scheduler tick jitter.

Throughput: wrk submits trivial jobs (`data_processing` of size 1) to `svc gateway` for a
fixed time while 1, then 3, `svc worker` processes drain the queue; jobs/s is the number
submitted over the time from the first submission until the last one is done (counted by
the original's `worker:tasks:data_processing` key). Rounds alternate 1 and 3 workers;
medians are printed.

Jitter: 3 workers with a short interval for a while; for every scheduled job, the time
it was enqueued minus its planned tick time. Prints p50, p99 and max.

Usage: tests/bench_worker.py [--rounds N] [--duration SECONDS]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import SVC, free_port, start_redis, stop, wait_http  # noqa: E402

POST = """wrk.method = "POST"
wrk.body = '{"type":"data_processing","size":1}'
wrk.headers["Content-Type"] = "application/json"
"""


def redis_cli(url, *args):
    # url: redis://:password@127.0.0.1:port/0
    password = url.split(":")[2].split("@")[0]
    port = url.rsplit(":", 1)[1].split("/")[0]
    out = subprocess.run(
        ["redis-cli", "-p", port, "-a", password, "--no-auth-warning", *args],
        check=True, capture_output=True, text=True,
    ).stdout
    return out


def start(role, redis_url, env=None, args=()):
    port = free_port()
    full_env = {"PATH": os.environ["PATH"], "REDIS_URL": redis_url, "DRAIN_DELAY": "0s",
                "API_GATEWAY_URL": "http://127.0.0.1:9", "DASHBOARD_URL": "http://127.0.0.1:9"}
    full_env.update(env or {})
    proc = subprocess.Popen(
        [SVC, role, "--host", "127.0.0.1", "--port", str(port), *args],
        env=full_env, stdout=subprocess.DEVNULL,
    )
    wait_http(port, "/health/ready")
    return proc, port


def throughput(workers, duration, tmp):
    redis, url = start_redis(tmp)
    procs = []
    try:
        gateway, gateway_port = start("gateway", url)
        procs.append(gateway)
        for _ in range(workers):
            procs.append(start("worker", url, {"WORKER_INTERVAL": "24h",
                                                "WORKER_CONCURRENCY": "64"})[0])
        script = os.path.join(tmp, "post.lua")
        with open(script, "w") as f:
            f.write(POST)
        started = time.monotonic()
        out = subprocess.run(
            ["wrk", "-t1", "-c16", f"-d{duration}s", "-s", script,
             f"http://127.0.0.1:{gateway_port}/api/jobs"],
            check=True, capture_output=True, text=True,
        ).stdout
        submitted = int(out.split(" requests in ")[0].split()[-1])
        if "Non-2xx" in out:
            raise RuntimeError(f"some submissions failed:\n{out}")
        # wrk counts only answered requests; the last few in flight may still be
        # accepted, so "all done" is: at least that many done and the stream empty.
        deadline = time.monotonic() + 120
        while True:
            done = int(redis_cli(url, "GET", "worker:tasks:data_processing").strip() or 0)
            if done >= submitted and int(redis_cli(url, "XLEN", "svc:jobs").strip()) == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{done} of {submitted} jobs done after 120 s")
            time.sleep(0.005)
        elapsed = time.monotonic() - started
        return done / elapsed, done
    finally:
        for p in procs:
            stop(p)
        stop(redis)


def jitter(interval_ms, seconds, tmp):
    redis, url = start_redis(tmp)
    procs = []
    try:
        for _ in range(3):
            procs.append(start("worker", url, {"WORKER_INTERVAL": f"{interval_ms}ms"})[0])
        time.sleep(seconds)
    finally:
        for p in procs:
            stop(p)
    try:
        keys = redis_cli(url, "--scan", "--pattern", "svc:job:*").split()
        lags = []
        for i in range(0, len(keys), 500):
            for raw in redis_cli(url, "MGET", *keys[i:i + 500]).splitlines():
                if raw.startswith("{"):
                    job = json.loads(raw)
                    if job.get("scheduled_for") is not None:
                        lags.append((job["created_at"] - job["scheduled_for"]) * 1000)
    finally:
        stop(redis)
    lags.sort()
    return lags


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {1: [], 3: []}
        for _ in range(args.rounds):
            for workers in (1, 3):
                results[workers].append(throughput(workers, args.duration, tmp))
        print(f"\njobs end to end (submit -> done), wrk 1 thread 16 connections {args.duration}s, "
              f"{args.rounds} rounds alternating; medians")
        for workers, runs in results.items():
            rate = statistics.median(r for r, _ in runs)
            count = statistics.median(n for _, n in runs)
            target = "" if workers == 1 else f"  (target >= 5000: {'ok' if rate >= 5000 else 'MISSED'})"
            print(f"  {workers} worker(s): {rate:8.0f} jobs/s  ({count:.0f} jobs){target}")
        lags = jitter(200, 20, tmp)
        if not lags:
            sys.exit("no scheduled jobs were recorded")
        p50 = lags[len(lags) // 2]
        p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
        print(f"\nscheduler tick lag, 3 workers, 200ms interval, 20s ({len(lags)} ticks x types): "
              f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {lags[-1]:.1f} ms "
              f"(target p99 < 20: {'ok' if p99 < 20 else 'MISSED'})")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The operator's page at 1,000 targets in 20 groups: its weight and its render time.

Starts its own redis-server and fills it with a day of history of 1,000 targets as the
workers leave it (examples/fill_targets.rs: one in 100 down for the last 30 minutes),
writes a targets file of those 1,000 targets in 20 groups, and runs `svc dashboard
--targets FILE` on it. Once every target has a state it measures:

- the page (`GET /`): HTML, and HTML + CSS + JS (what a first visit downloads);
- the live fragment the page fetches every period (`GET /partials/status`);
- render time: the plain page is rendered once per snapshot and second and then served
  from memory, so a request for a page that is not the plain one renders anew: `GET
  /?replicas=2` is the same page (there is one page of replicas) rendered for each
  request, N of them in a row, and the same for the fragment; p50 and p99 of the round
  trip on loopback, which bounds the render. Cold renders of the plain page (the first
  request of a new second) are timed too, fewer, as a check that also works on a build
  without the query.

Budgets: page < 150 KB uncompressed (HTML + CSS + JS); fragment < 50 KB; render p99 <
20 ms (and the slowest cold render under it). Prints measured vs budget with ok/MISSED;
exits 0 either way (it prints numbers; tests/api/dashboard.rs holds the size as a test),
non-zero when the setup fails.

Usage: tests/bench_page.py [--targets N] [--renders N] [--cold N] [--filled REDIS_URL]
  (--filled: measure on a Redis that fill_targets has filled already, skipping the fill)
  (other flags, as tests/bench.sh passes every script, are ignored)
Needs: target/release/svc (or SVC_BINARY) and target/release/examples/fill_targets
(or FILL_BINARY), redis-server. It takes about a minute.
"""

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import ROOT, SVC, start_redis, stop  # noqa: E402
from bench_dashboard import fetch  # noqa: E402
from bench_targets import (env, judged, row, start, targets_file,  # noqa: E402
                           timed_get as get)

FILL = os.environ.get("FILL_BINARY") or os.path.join(ROOT, "target", "release", "examples",
                                                     "fill_targets")
GROUPS = ("shop", "payments", "search", "accounts", "media", "internal", "mail", "auth",
          "billing", "catalog", "cdn", "chat", "docs", "edge", "feeds", "geo", "images",
          "ledger", "maps", "notify")
CLOSED_PORT = 9  # nothing listens: the targets' states are the filled ones
REFRESH = 5
BUDGETS = {"page": 150_000, "fragment": 50_000, "render_ms": 20.0}


def arguments():
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--renders", type=int, default=200, help="uncached renders timed")
    ap.add_argument("--cold", type=int, default=10, help="first-of-a-second renders timed")
    ap.add_argument("--filled", help="a Redis URL fill_targets has filled with N targets")
    args, _ = ap.parse_known_args()
    for binary in (SVC,) if args.filled else (SVC, FILL):
        if not os.path.exists(binary):
            sys.exit(f"{binary} not found: cargo build --release --locked --bins "
                     "--example fill_targets")
    return args


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def measure(port, args):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        _, page = get(conn, "/")
        _, fragment = get(conn, "/partials/status")
        assets = re.findall(rb'(?:href|src)="(/static/[^"]+)"', page)
        weight = len(page) + sum(len(get(conn, a.decode())[1]) for a in assets)
        result = {"page": len(page), "weight": weight, "fragment": len(fragment)}
        # A build that ignores the query serves it from its cache: no render to time. The
        # page says whether it took the query (its refresh asks for the same view).
        honoured = b"replicas=2" in get(conn, "/?replicas=2")[1]
        for name, path in (("page", "/?replicas=2"), ("fragment", "/partials/status?replicas=2")):
            runs = [get(conn, path) for _ in range(args.renders)]
            ms = [r[0] for r in runs]
            result[f"{name}_uncached"] = (statistics.median(ms), percentile(ms, 0.99),
                                          len(runs[-1][1])) if honoured else None
        cold = []
        for _ in range(args.cold):
            time.sleep(1.02 - time.time() % 1)  # just after a new second begins
            cold.append(get(conn, "/")[0])
        result["cold"] = (statistics.median(cold), max(cold))
        return result
    finally:
        conn.close()


def main():
    args = arguments()
    with tempfile.TemporaryDirectory() as tmp:
        redis, redis_url = (None, args.filled) if args.filled else start_redis(tmp)
        proc = None
        try:
            if redis:
                subprocess.run([FILL, str(args.targets), "64"], check=True,
                               capture_output=True,
                               env={"REDIS_URL": redis_url, "PATH": os.environ["PATH"]})
            proc, port = start("dashboard", env(redis_url, REFRESH_PERIOD=f"{REFRESH}s",
                                                LOG_LEVEL="warn"),
                               "--targets", targets_file(tmp, args.targets, CLOSED_PORT, GROUPS))
            judged(port, args.targets)
            check = json.loads(fetch(port, "/api/health-check"))
            result = measure(port, args)
        finally:
            for process in (proc, redis):
                if process:
                    stop(process)

    print(f"\nthe operator's page: {args.targets} targets in {len(GROUPS)} groups, a day of "
          f"history ({SVC})")
    if "headline" in check:
        print(f"  headline: {check['headline']}")
    print("  (renders: ?replicas=2, the same page rendered for each request; cold: the first"
          "\n  request of a new second, which renders the plain page)")
    print(f"\n  {'measure':<46} {'value':>32}   {'budget':<10} verdict")
    row("GET / HTML", f"{result['page'] / 1000:.1f} KB")
    row("GET / HTML + CSS + JS, uncompressed", f"{result['weight'] / 1000:.1f} KB",
        "< 150 KB", result["weight"] < BUDGETS["page"])
    row("GET /partials/status (each refresh)", f"{result['fragment'] / 1000:.1f} KB",
        "< 50 KB", result["fragment"] < BUDGETS["fragment"])
    for name, path in (("page", "/"), ("fragment", "/partials/status")):
        if result[f"{name}_uncached"] is None:
            row(f"render {path}", "(this build caches ?replicas=2)")
            continue
        p50, p99, size = result[f"{name}_uncached"]
        row(f"render {path} ({size / 1000:.0f} KB) x{args.renders}, p50 / p99",
            f"{p50:.2f} / {p99:.2f} ms", "p99 < 20 ms", p99 < BUDGETS["render_ms"])
    cold, worst = result["cold"]
    row(f"  cold render of / x{args.cold}, median / max", f"{cold:.1f} / {worst:.1f} ms",
        "max < 20 ms", worst < BUDGETS["render_ms"])


if __name__ == "__main__":
    main()

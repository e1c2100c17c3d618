#!/usr/bin/env python3
"""A public status page and /api/health-check at 1,000 targets with a year of history.

Starts its own redis-server, fills it with a day of history of 1,000 targets
(examples/fill_targets.rs) and the day tallies of the year before (as
tests/bench_targets.py does), runs `svc dashboard` with those targets in 20 groups and
a status page of one group (50 components), and measures:

- `GET /api/health-check`: round trip p50/p99 (each request reads every target's day
  tallies for its 7/30/90/365-day uptime) and size;
- `GET /status/shop`: the first request after a new snapshot (which gathers the page's
  facts from the store and renders the page, its JSON and its feed) and the requests
  after it in the same snapshot (served from memory), p50/p99; the sizes of the
  page (plain and gzipped), its JSON and its feed.

Prints the numbers; exits 0 (no budgets: the issue sets none for these), non-zero when
the setup fails. A build without status pages is measured for the health check only,
to compare (`--without-page`: its targets file must not name them).

Usage: tests/bench_status.py [--requests N] [--snapshots N] [--without-page]
Needs: target/release/svc (or SVC_BINARY), target/release/examples/fill_targets (or
FILL_BINARY), redis-server. It takes about a minute.
"""

import argparse
import gzip
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import SVC, start_redis, stop  # noqa: E402
from bench_page import FILL, GROUPS, CLOSED_PORT, percentile  # noqa: E402
from bench_targets import (env, judged, row, start, targets_file,  # noqa: E402
                           year_of_days)

TARGETS = 1000
REFRESH = 5


def arguments():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=50, help="timed requests of each kind")
    ap.add_argument("--snapshots", type=int, default=5, help="first-of-a-snapshot renders")
    ap.add_argument("--without-page", action="store_true",
                    help="no status_pages: in the file (for a build that refuses the key)")
    args, _ = ap.parse_known_args()
    return args


def timed(conn, path, headers=None):
    """(milliseconds, status, body) of one GET on `conn`."""
    started = time.perf_counter()
    conn.request("GET", path, headers=headers or {})
    res = conn.getresponse()
    body = res.read()
    return (time.perf_counter() - started) * 1000, res.status, body


def spread(ms):
    return f"p50 {statistics.median(ms):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms"


def measure(port, args):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    result = {}
    try:
        runs = [timed(conn, "/api/health-check") for _ in range(args.requests)]
        result["health"] = ([r[0] for r in runs], len(runs[-1][2]))
        _, status, _ = timed(conn, "/status/shop.json")
        if status != 200:
            return result
        cold, warm = [], []
        _, _, body = timed(conn, "/status/shop.json")
        seen = json.loads(body)["updated_at"]
        deadline = time.time() + (args.snapshots + 2) * REFRESH * 2
        while len(cold) < args.snapshots and time.time() < deadline:
            ms, _, body = timed(conn, "/status/shop.json")
            updated = json.loads(body)["updated_at"]
            if updated != seen:
                cold.append(ms)
                seen = updated
                warm.extend(timed(conn, "/status/shop")[0] for _ in range(10))
            time.sleep(0.05)
        _, _, page = timed(conn, "/status/shop")
        _, _, facts = timed(conn, "/status/shop.json")
        _, _, feed = timed(conn, "/status/shop/feed.atom")
        _, _, zipped = timed(conn, "/status/shop", {"Accept-Encoding": "gzip"})
        result["status"] = (cold, warm, len(page), len(zipped), len(facts), len(feed),
                            len(json.loads(facts)["sections"][0]["components"]))
        return result
    finally:
        conn.close()


def main():
    args = arguments()
    with tempfile.TemporaryDirectory() as tmp:
        redis, redis_url = start_redis(tmp)
        proc = None
        try:
            subprocess.run([FILL, str(TARGETS), "64"], check=True, capture_output=True,
                           env={"REDIS_URL": redis_url, "PATH": os.environ["PATH"]})
            year_of_days(redis_url, TARGETS)
            path = targets_file(tmp, TARGETS, CLOSED_PORT, GROUPS)
            with open(path, "a") as f:
                if not args.without_page:
                    f.write("status_pages:\n  - {slug: shop, title: Shop status, groups: [shop]}\n")
            proc, port = start("dashboard", env(redis_url, REFRESH_PERIOD=f"{REFRESH}s",
                                                LOG_LEVEL="warn"), "--targets", path)
            judged(port, TARGETS)
            result = measure(port, args)
        finally:
            for process in (proc, redis):
                if process:
                    stop(process)

    print(f"\nstatus page and health check: {TARGETS} targets, a year of day tallies ({SVC})")
    print(f"\n  {'measure':<46} {'value':>32}   {'budget':<10} verdict")
    ms, size = result["health"]
    row("GET /api/health-check", spread(ms))
    row("GET /api/health-check size", f"{size / 1000:.1f} KB")
    if "status" not in result:
        row("GET /status/shop", "(this build has no status pages)")
        return 0
    cold, warm, page, zipped, facts, feed, components = result["status"]
    row(f"GET /status/shop, first of a snapshot ({len(cold)})", spread(cold))
    row(f"GET /status/shop, then ({len(warm)})", spread(warm))
    row(f"/status/shop HTML, {components} components",
        f"{page / 1000:.1f} KB ({zipped / 1000:.1f} KB gzip)")
    row("/status/shop.json, feed.atom", f"{facts / 1000:.1f} KB, {feed / 1000:.1f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Targets benchmark: 1,000 targets at a 10 s interval on 3 workers, a day of their
history in Redis, and the dashboard that shows them.

Live: a targets file of 1,000 targets (t0000..t0999 in 5 groups, interval 10s, timeout
2s), each at its own path of one local nginx; three `svc worker` processes (release
build) on one redis-server. After a 20 s warm-up, over a window (60 s by default):
each worker's CPU (utime + stime from /proc, % of one core) and RSS; the probe start
lag (`svc_target_probe_lag_seconds`, the three workers' histograms summed, window end
minus window start, interpolated within a bucket: its resolution is the bucket the
quantile falls in); probes made (nginx's requests to /t/ and the workers' histogram
counts) against 1,000 / 10 s x window, and each target's probe count in the window,
which is the window / 10 s if each target is probed once per interval, not once per
worker.

Memory: on a fresh redis-server, examples/fill_targets.rs writes 24 h of history of
1,000 targets through the worker's own `targets::observe` (state, newest 60 samples,
minute tallies, hour tallies). Prints `used_memory` before and after, and the keys.
Then it adds the hour tallies and response-time histograms of the 30 days before (kept
31 days) and prints what a month of steady state adds; then the day tallies of the rest
of a year (kept 400 days): a year of steady state, with the hashes' encodings (a
listpack is the compact one).

Dashboard: `svc dashboard --targets FILE` (REFRESH_PERIOD=5s) on that Redis: its CPU
per 5 s snapshot with nothing asking; GET / and GET /partials/status, 50 sequential
requests each (median, p99), a cold render (the first request of a new second renders;
later ones in that second get its bytes: median and worst of 10) and wrk for
--duration seconds (mostly served from that per-second rendering).

Goals: probe start lag p99 < 100 ms; worker CPU < 10% of a core each; Redis memory for
24 h of history of 1,000 targets < 50 MB, for a year of it < 150 MB. The rest is
reported without a goal. Exits 0 when a goal is missed (it prints numbers; it is no
test), non-zero when the setup fails.

It takes about 4 minutes.

Locations (--locations): the live run twice, each on a fresh Redis: once as above
(one location), once with each worker in a location of its own (LOCATION eu-west,
us-east, ap-south; PROBE_SOURCE_IP 127.0.0.2, .3, .4), so each target is probed once
per interval from each of three locations. Prints beside each other the workers' CPU,
Redis' CPU (utime + stime of redis-server, % of one core), commands per second and
used_memory at the end, probes per target and by source address; the budget of the
three-location run is the single-location figure times three (and each worker under
three times the single run's goal of 10 % of a core). Skips the memory fill
and the dashboard. About 3 minutes.

Usage: tests/bench_targets.py [--duration SECONDS] [--connections N] [--window SECONDS]
                              [--targets N] [--locations]
  (--rounds is accepted and ignored, so tests/bench.sh passes every script the same flags)
Needs: target/release/svc and target/release/examples/fill_targets
(cargo build --release --locked --bins --example fill_targets; FILL_TARGETS names
another build of it), redis-server, redis-cli,
nginx, wrk (tests/bench.sh installs them).
"""

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import (ROOT, SVC, free_port, rss_kib, start_nginx, start_redis, stop,  # noqa: E402
                   wait_http, wrk)
from bench_dashboard import cpu_seconds, fetch, redis_commands  # noqa: E402
from bench_worker import redis_cli  # noqa: E402

FILL = os.environ.get("FILL_TARGETS",
                      os.path.join(ROOT, "target", "release", "examples", "fill_targets"))
INTERVAL = 10
GROUPS = ("payments", "search", "accounts", "media", "internal")
WARM_UP = 20
REFRESH = 5
LAG = "svc_target_probe_lag_seconds"
CLOSED = "http://127.0.0.1:9"  # nothing listens: svc's own services are not measured


def arguments():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3, help="ignored")
    ap.add_argument("--duration", type=int, default=5, help="seconds of each wrk run")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections")
    ap.add_argument("--window", type=int, default=60, help="seconds measured after warm-up")
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--locations", action="store_true",
                    help="one location against three, side by side")
    args, _ = ap.parse_known_args()
    for tool in ("redis-server", "redis-cli", "nginx", "wrk"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: run tests/bench.sh, which installs it")
    for binary in (SVC,) if args.locations else (SVC, FILL):
        if not os.path.exists(binary):
            sys.exit(f"{binary} not found: cargo build --release --locked --bins "
                     "--example fill_targets")
    return args


def targets_file(tmp, count, port, groups=GROUPS):
    path = os.path.join(tmp, "targets.yaml")
    with open(path, "w") as f:
        f.write("targets:\n")
        for i in range(count):
            group = groups[i * len(groups) // count]
            f.write(f"  - {{name: t{i:04d}, url: 'http://127.0.0.1:{port}/t/{i}', "
                    f"group: {group}, interval: {INTERVAL}s, timeout: 2s}}\n")
    return path


def env(redis_url, **extra):
    return {"PATH": os.environ["PATH"], "REDIS_URL": redis_url, "DRAIN_DELAY": "0s",
            "API_GATEWAY_URL": CLOSED, "DASHBOARD_URL": CLOSED, "WORKER_SERVICE_URL": CLOSED,
            **extra}


def start(role, environment, *flags):
    port = free_port()
    proc = subprocess.Popen([SVC, role, "--host", "127.0.0.1", "--port", str(port), *flags],
                            env=environment, stdout=subprocess.DEVNULL)
    wait_http(port, "/health/ready", timeout=30)
    return proc, port


def lag_histogram(port):
    """The worker's probe lag histogram: ({upper bound: cumulative count}, count)."""
    text = fetch(port, "/metrics").decode()
    buckets = {}
    for le, value in re.findall(rf'^{LAG}_bucket{{[^}}]*le="([^"]+)"[^}}]*}} (\S+)$', text, re.M):
        buckets[float(le)] = buckets.get(float(le), 0) + float(value)
    count = sum(float(v) for v in re.findall(rf"^{LAG}_count(?:{{[^}}]*}})? (\S+)$", text, re.M))
    return buckets, count


def quantile(buckets, q):
    """The q-quantile of cumulative `buckets`, linear within its bucket; returns it and
    the bucket's bounds (the resolution)."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if bound == float("inf"):
                return lower, (lower, bound)
            share = (rank - below) / max(buckets[bound] - below, 1e-9)
            return lower + share * (bound - lower), (lower, bound)
        lower, below = bound, buckets[bound]
    return lower, (lower, float("inf"))


def log_lines(log, start, end):
    """The lines in bytes start..end of nginx's access log."""
    with open(log, "rb") as f:
        f.seek(start)
        return f.read(end - start).splitlines()


def probes_by_target(log, start, end):
    """Requests to /t/<i> in bytes start..end of nginx's access log, by target."""
    counts = {}
    for line in log_lines(log, start, end):
        m = re.search(rb'"GET /t/(\d+) ', line)
        if m:
            counts[int(m.group(1))] = counts.get(int(m.group(1)), 0) + 1
    return counts


# The three-location run: each worker's location and the address its probes leave from.
LOCATIONS = (("eu-west", "127.0.0.2"), ("us-east", "127.0.0.3"), ("ap-south", "127.0.0.4"))


def redis_figures(url, pid):
    """redis-server's CPU seconds so far, and the commands it has processed."""
    stats = redis_cli(url, "INFO", "stats")
    commands = re.search(r"^total_commands_processed:(\d+)", stats, re.M).group(1)
    return cpu_seconds(pid), int(commands)


def probes_by_source(log, start, end):
    """Requests to /t/ in bytes start..end of nginx's access log, by client address."""
    counts = {}
    for line in log_lines(log, start, end):
        if b'"GET /t/' in line:
            source = line.split(b" ", 1)[0].decode()
            counts[source] = counts.get(source, 0) + 1
    return counts


def live(tmp, args, locations=()):
    """Three workers on `args.targets` targets, each in its own location of `locations`
    when given: a dict of figures over the window."""
    log = os.path.join(tmp, "targets-access.log")
    nginx, port = start_nginx(tmp, f"""
        location /t/ {{ access_log {log}; default_type text/plain; return 200 'ok'; }}
        location / {{ default_type text/plain; return 200 'ok'; }}""")
    redis, redis_url = start_redis(tmp)
    file = targets_file(tmp, args.targets, port)
    workers = []
    try:
        for i in range(3):
            placed = {}
            if locations:
                placed = {"LOCATION": locations[i][0], "PROBE_SOURCE_IP": locations[i][1]}
            workers.append(start("worker", env(redis_url, TARGETS_FILE=file, **placed)))
        time.sleep(WARM_UP)
        # Metrics first, CPU last at the start and the other way round at the end, so
        # the scrapes (1,000 targets' series each) fall outside the CPU window.
        before = [lag_histogram(p) for _, p in workers]
        log_start = os.path.getsize(log)
        redis_start = redis_figures(redis_url, redis.pid)
        cpu = [cpu_seconds(w.pid) for w, _ in workers]
        began = time.monotonic()
        time.sleep(args.window)
        cpu = [cpu_seconds(w.pid) - c for (w, _), c in zip(workers, cpu)]
        wall = time.monotonic() - began
        redis_end = redis_figures(redis_url, redis.pid)
        redis_memory = used_memory(redis_url)[0]
        log_end = os.path.getsize(log)
        after = [lag_histogram(p) for _, p in workers]
        rss = [rss_kib(w.pid) / 1024 for w, _ in workers]
        claims = redis_cli(redis_url, "--scan", "--pattern", "svc:tick:target:*").split()
        claim_bytes = [int(redis_cli(redis_url, "MEMORY", "USAGE", k).strip() or 0)
                       for k in claims[:50]]
    finally:
        for proc, _ in workers:
            stop(proc)
        stop(nginx)
        stop(redis)

    summed = {}
    for (b0, _), (b1, _) in zip(before, after):
        for le, value in b1.items():
            summed[le] = summed.get(le, 0) + value - b0.get(le, 0)
    if not summed or summed[max(summed)] == 0:
        raise RuntimeError("the workers recorded no probe in the window")
    per_target = probes_by_target(log, log_start, log_end)
    counts = [per_target.get(i, 0) for i in range(args.targets)]
    return {
        "wall": wall,
        "cpu": [100 * c / wall for c in cpu],
        "rss": rss,
        "p50": quantile(summed, 0.50),
        "p99": quantile(summed, 0.99),
        "lag_count": summed[max(summed)],
        "by_worker": [a[1] - b[1] for a, b in zip(after, before)],
        "nginx": sum(counts),
        "per_target": (min(counts), max(counts)),
        "claims": (len(claims), statistics.mean(claim_bytes) if claim_bytes else 0),
        "redis_cpu": 100 * (redis_end[0] - redis_start[0]) / wall,
        "redis_ops": (redis_end[1] - redis_start[1]) / wall,
        "redis_memory": redis_memory,
        "by_source": probes_by_source(log, log_start, log_end),
    }


def used_memory(url):
    info = redis_cli(url, "INFO", "memory")
    return (int(re.search(r"^used_memory:(\d+)", info, re.M).group(1)),
            int(re.search(r"^used_memory_rss:(\d+)", info, re.M).group(1)))


def fill(redis_url, count):
    """24 h of history of `count` targets: used_memory, RSS and keys it added."""
    before = used_memory(redis_url)
    started = time.monotonic()
    out = subprocess.run([FILL, str(count), "64"], env={"REDIS_URL": redis_url,
                         "PATH": os.environ["PATH"]}, check=True, capture_output=True,
                         text=True).stdout.strip()
    seconds = time.monotonic() - started
    after = used_memory(redis_url)
    keys = int(redis_cli(redis_url, "DBSIZE").strip())
    one = redis_cli(redis_url, "--scan", "--pattern", "svc:target:t0000*").split()
    kinds = {"state": sum(k == "svc:target:t0000" for k in one),
             "samples": sum(k.endswith(":samples") for k in one),
             "m:<hour>": sum(":m:" in k for k in one),
             "h:<day>": sum(":h:" in k for k in one),
             "d:<block>": sum(":d:" in k for k in one)}
    return {"used": after[0] - before[0], "rss": after[1] - before[1], "keys": keys,
            "kinds": kinds, "seconds": seconds, "out": out}


def month_of_hours(redis_url, count):
    """Adds the hour tallies of the 30 days before the filled day (kept 31 days, so a
    month of steady state holds them), each hour with its response-time histogram as
    the probe script writes it (360 probes in four buckets): the used_memory that adds."""
    before = used_memory(redis_url)[0]
    today = int(time.time() // 86400)
    fields = [x for h in range(24)
              for x in (f"{h}c", 360, f"{h}u", 360, f"{h}l", "0:41 1:270 2:44 3:5")]
    ttl = 31 * 86400
    for i in range(count):
        cmds = []
        for day in range(today - 31, today - 1):
            key = f"svc:target:t{i:04d}:h:{day}"
            cmds += [["HSET", key, *fields], ["EXPIRE", key, ttl]]
        redis_commands(redis_url, cmds)
    return used_memory(redis_url)[0] - before


def year_of_days(redis_url, count):
    """Adds the day tallies of the 363 days before the filled day, as the probe script
    keeps them (one hash per 32 days, field per day, 8,640 probes a day at 10 s, a few
    down): a year of them with the filled day. Returns the used_memory that adds and
    the day hashes of one target."""
    before = used_memory(redis_url)[0]
    today = int(time.time() // 86400)
    per_key, ttl = 32, (400 + 32) * 86400
    for i in range(count):
        blocks = {}
        for day in range(today - 364, today - 1):
            blocks.setdefault(day // per_key, []).extend(
                (f"{day % per_key}c", 8640, f"{day % per_key}u", 8640 - (i + day) % 7))
        cmds = []
        for block, fields in blocks.items():
            key = f"svc:target:t{i:04d}:d:{block}"
            cmds += [["HSET", key, *fields], ["EXPIRE", key, ttl]]
        redis_commands(redis_url, cmds)
    keys = redis_cli(redis_url, "--scan", "--pattern", "svc:target:t0000:d:*").split()
    return used_memory(redis_url)[0] - before, len(keys)


def timed_get(conn, path):
    """(milliseconds, body) of one GET on `conn`."""
    started = time.perf_counter()
    conn.request("GET", path)
    res = conn.getresponse()
    body = res.read()
    if res.status != 200:
        raise RuntimeError(f"GET {path}: {res.status}")
    return (time.perf_counter() - started) * 1000, body


def judged(port, count, within=30):
    """The dashboard's `/api/health-check` entries of targets, once all `count` have a
    state (within `within` seconds)."""
    deadline = time.monotonic() + within
    while True:
        entries = json.loads(fetch(port, "/api/health-check"))["services"]
        known = [e for e in entries if e.get("kind") == "target" and e["status"] != "unknown"]
        if len(known) == count:
            return known
        if time.monotonic() > deadline:
            raise RuntimeError(f"/api/health-check lists {len(known)} of {count} "
                               f"targets with a state after {within} s")
        time.sleep(0.2)


def dashboard(redis_url, file, args):
    """The dashboard on the filled Redis: CPU per snapshot, latencies, sizes, wrk."""
    refresh = REFRESH
    proc, port = start("dashboard", env(redis_url, REFRESH_PERIOD=f"{refresh}s",
                                        LOG_LEVEL="warn"), "--targets", file)
    try:
        known = judged(port, args.targets)
        down = sum(e["status"] == "down" for e in known)
        cpu, wall = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(4 * refresh)
        snapshot_ms = (cpu_seconds(proc.pid) - cpu) * 1000 / ((time.monotonic() - wall) / refresh)

        result = {"down": down, "snapshot_ms": snapshot_ms, "rss_idle": rss_kib(proc.pid) / 1024}
        for path in ("/", "/partials/status"):
            # A fresh connection: the server closes idle ones (during the last wrk run).
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            runs = sorted(timed_get(conn, path) for _ in range(50))
            ms = [r[0] for r in runs]
            cold = []
            for _ in range(10):
                time.sleep(1.02 - time.time() % 1)  # just after a new second begins
                cold.append(timed_get(conn, path)[0])
            rps, p50, p99 = wrk(f"http://127.0.0.1:{port}{path}", args.duration,
                                args.connections)
            result[path] = {"kb": len(runs[-1][1]) / 1000, "median": statistics.median(ms),
                            "p99": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
                            "cold": statistics.median(cold), "cold_max": max(cold),
                            "rps": rps, "wrk_p50": p50, "wrk_p99": p99}
            conn.close()
        result["rss_loaded"] = rss_kib(proc.pid) / 1024
        return result
    finally:
        stop(proc)


def row(label, value, goal="-", met=None):
    verdict = "" if met is None else "ok" if met else "MISSED"
    print(f"  {label:<46} {value:>32}   {goal:<10} {verdict}")


def compare_locations(args):
    """One location against three, each on a fresh Redis, side by side."""
    runs = []
    for locations in ((), LOCATIONS):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(live(tmp, args, locations))
    one, three = runs
    n, window = args.targets, one["wall"]
    print(f"\nlocations: {n} targets at a {INTERVAL} s interval, 3 workers; one location, then "
          f"each worker in its own of three; {window:.0f} s windows after a {WARM_UP} s warm-up\n")
    print(f"  {'measure':<40} {'1 location':>14} {'3 locations':>14} {'3 x 1 location':>15}"
          "  verdict")

    def side(label, a, b, fmt, budget=False):
        """A row: the two runs and, for a budgeted figure, three times the first."""
        cells = f"{fmt.format(a):>14} {fmt.format(b):>14}"
        if budget:
            verdict = "ok" if b <= 3 * a else "MISSED"
            cells += f" {fmt.format(3 * a):>15}  {verdict}"
        print(f"  {label:<40} {cells}")

    side("worker CPU, % of one core (sum of 3)", sum(one["cpu"]), sum(three["cpu"]), "{:.1f}",
         budget=True)
    for i in range(3):
        side(f"  worker {i + 1}", one["cpu"][i], three["cpu"][i], "{:.1f}")
    worst = max(three["cpu"])
    print(f"  {'  goal: each < 3 x 10 % (the single goal)':<40} {'':>14} {worst:>14.1f} "
          f"{'< 30':>15}  {'ok' if worst < 30 else 'MISSED'}")
    side("worker RSS, MiB (largest)", max(one["rss"]), max(three["rss"]), "{:.1f}")
    side("Redis CPU, % of one core", one["redis_cpu"], three["redis_cpu"], "{:.1f}", budget=True)
    side("Redis commands per second", one["redis_ops"], three["redis_ops"], "{:.0f}",
         budget=True)
    side("Redis used_memory at the end, MB", one["redis_memory"] / 1e6,
         three["redis_memory"] / 1e6, "{:.1f}", budget=True)
    side("probes in window (nginx)", one["nginx"], three["nginx"], "{:.0f}")
    side("  expected: targets x intervals x locations", n * window / INTERVAL,
         3 * n * three["wall"] / INTERVAL, "{:.0f}")
    side("probe start lag p99, ms", one["p99"][0] * 1000, three["p99"][0] * 1000, "{:.1f}")
    per = three["wall"] / INTERVAL
    low, high = three["per_target"]
    print(f"  probes of each target, 3 locations: min {low}, max {high} "
          f"(3 x {per:.1f} intervals: {3 * int(per)}-{3 * (int(per) + 1)})")
    print("  by source address, 1 location: " + ", ".join(
        f"{k} {v}" for k, v in sorted(one["by_source"].items())))
    print("  by source address, 3 locations: " + ", ".join(
        f"{k} {v}" for k, v in sorted(three["by_source"].items())))


def main():
    args = arguments()
    if args.locations:
        compare_locations(args)
        return
    n = args.targets
    with tempfile.TemporaryDirectory() as tmp:
        live_dir, fill_dir = os.path.join(tmp, "live"), os.path.join(tmp, "fill")
        os.makedirs(live_dir)
        os.makedirs(fill_dir)
        run = live(live_dir, args)
        redis, redis_url = start_redis(fill_dir)
        try:
            mem = fill(redis_url, n)
            month = month_of_hours(redis_url, n)
            year, day_keys = year_of_days(redis_url, n)
            encodings = {kind: redis_cli(redis_url, "OBJECT", "ENCODING",
                                         f"svc:target:t0001:{kind}").strip()
                         for kind in (f"h:{int(time.time() // 86400) - 2}",
                                      f"d:{int(time.time() // 86400) // 32}")}
            dash = dashboard(redis_url, targets_file(fill_dir, n, 9), args)
        finally:
            stop(redis)

    expected = n / INTERVAL * run["wall"]
    per_window = run["wall"] / INTERVAL
    low, high = run["per_target"]
    (p50, (p50_lo, p50_hi)), (p99, (p99_lo, p99_hi)) = run["p50"], run["p99"]
    claims, claim_bytes = run["claims"]
    mb = mem["used"] / 1e6
    print(f"\ntargets: {n} at a {INTERVAL} s interval, 3 workers, nginx at /t/<i>; "
          f"{run['wall']:.0f} s window after a {WARM_UP} s warm-up\n")
    print(f"  {'measure':<46} {'value':>32}   {'goal':<10} verdict")
    row("probe start lag p50 (3 workers' histograms)", f"{p50 * 1000:.1f} ms")
    row(f"  within bucket {p50_lo * 1000:g}-{p50_hi * 1000:g} ms", "(interpolated)")
    row("probe start lag p99", f"{p99 * 1000:.1f} ms", "< 100 ms", p99 < 0.1)
    row(f"  within bucket {p99_lo * 1000:g}-{p99_hi * 1000:g} ms", "(interpolated)")
    cpu = run["cpu"]
    row("worker CPU, % of one core (each)", " / ".join(f"{c:.1f}" for c in cpu), "< 10 each",
        max(cpu) < 10)
    row("worker RSS, MiB (each)", " / ".join(f"{r:.1f}" for r in run["rss"]))
    row(f"probes in window, expected {expected:.0f}", f"nginx {run['nginx']}, "
        f"workers {run['lag_count']:.0f}")
    row("  by worker", " / ".join(f"{c:.0f}" for c in run["by_worker"]))
    row(f"probes of each target in window ({per_window:.1f} intervals)",
        f"min {low}, max {high}", f"{int(per_window)}-{int(per_window) + 1}",
        low >= int(per_window) and high <= int(per_window) + 1)
    row("Redis used_memory, 24 h history", f"{mb:.1f} MB", "< 50 MB", mb < 50)
    row("  Redis RSS growth for it", f"{mem['rss'] / 1e6:.1f} MB")
    row("  keys", f"{mem['keys']} ({mem['keys'] / n:.1f} per target)")
    kinds = mem["kinds"]
    row("  keys per target: state + samples + tallies", f"{kinds['state']} + "
        f"{kinds['samples']} + {kinds['m:<hour>']} m:<hour> + {kinds['h:<day>']} h:<day> + "
        f"{kinds['d:<block>']} d:<block>")
    row("  + tick claims at steady state (live run)",
        f"{claims} keys, {claims * claim_bytes / 1e6:.2f} MB")
    row("  + 30 more days of hour tallies and histograms", f"{month / 1e6:.1f} MB")
    steady = (mem["used"] + month) / 1e6 + claims * claim_bytes / 1e6
    row("  = a month of steady state", f"{steady:.1f} MB")
    row(f"  + 363 more days of day tallies ({day_keys} keys a target)", f"{year / 1e6:.1f} MB")
    year_mb = steady + year / 1e6
    row("Redis used_memory, a year of history", f"{year_mb:.1f} MB", "< 150 MB", year_mb < 150)
    row("  encodings: hour hash, day hash", ", ".join(encodings.values()))
    row(f"dashboard CPU per {REFRESH} s snapshot ({dash['down']} down)", f"{dash['snapshot_ms']:.0f} ms")
    row("dashboard RSS idle / after load, MiB", f"{dash['rss_idle']:.1f} / {dash['rss_loaded']:.1f}")
    for path in ("/", "/partials/status"):
        d = dash[path]
        row(f"GET {path}: size", f"{d['kb']:.0f} KB")
        row("  cold render (first of a second), median/max", f"{d['cold']:.1f} / {d['cold_max']:.1f} ms")
        row("  50 sequential, median / p99", f"{d['median']:.2f} / {d['p99']:.2f} ms")
        row(f"  wrk {args.connections} conns {args.duration}s (cached per s), req/s",
            f"{d['rps']:.0f} (p99 {d['wrk_p99']:.1f} ms)")
    print(f"\nfill: {mem['out']} ({mem['seconds']:.0f} s, 64 targets at once)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Notification latency benchmark: from the probe that crosses a target's threshold to
its webhook's arrival, with 1,000 targets on 3 workers.

One Python process serves, on one loopback port, the 1,000 targets (`/t/<i>`, each
answering 200 or 503 from a shared table that the benchmark flips) and the webhook
receiver (`/hook`), and timestamps every probe it answers and every webhook it
receives with the same clock. Three `svc worker` processes (release build) on one
redis-server probe the targets (interval 10 s, the default of a target that names
none, as in tests/bench_targets.py; the default thresholds: down after 2 failed probes,
up after 1 good one) and send every change to one `webhook` channel.

Once every target has been probed (and found up: a first verdict of up is told to
nobody), a sample of targets (200 by default, in 4 batches 5 s apart) is flipped to
503; each one is flipped back to 200 as soon as its `down` webhook has arrived. The
probe that crossed the threshold is, for `down`, the second 503 its target answered
(failure_threshold 2) and, for `up`, the first 200 after its last 503. Prints the
latency from that probe to the webhook (p50, p99, max, count) and its stages, split
at the notify job's record (queued: `created_at`; picked up: `started_at`), checks
that every flip produced exactly one webhook of its state (none missing, none
duplicated, none for a target that was not flipped), and that the webhook's `since`
(the worker's clock at the probe) matches the probe the receiver saw. Also prints
each worker's CPU and Redis's commands over the run.

Goal: p99 < 1 s. Exits 0 when the goal is missed (it prints numbers; it is no test),
non-zero when the setup fails. It takes about a minute.

Usage: tests/bench_notify.py [--targets N] [--flips N] [--batches N]
  (--rounds, --duration and the other scripts' flags are accepted and ignored, so
  tests/bench.sh passes every script the same flags)
Needs: target/release/svc (cargo build --release --locked --bins), redis-server,
redis-cli (tests/bench.sh installs them).
"""

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import SVC, start_redis, stop  # noqa: E402
from bench_dashboard import cpu_seconds  # noqa: E402
from bench_targets import env, row, start  # noqa: E402
from bench_worker import redis_cli  # noqa: E402

INTERVAL = 10
FAILURE_THRESHOLD = 2  # the default, written out so the crossing probe is known
SUCCESS_THRESHOLD = 1
STAGGER = 5.0  # seconds between batches
QUIET = 5.0  # seconds waited after the last expected webhook, for duplicates
GOAL = 1.0


def arguments():
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--flips", type=int, default=200, help="targets flipped down and up")
    ap.add_argument("--batches", type=int, default=4)
    args, _ = ap.parse_known_args()
    for tool in ("redis-server", "redis-cli"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: run tests/bench.sh, which installs it")
    if not os.path.exists(SVC):
        sys.exit(f"{SVC} not found: cargo build --release --locked --bins")
    args.flips = min(args.flips, args.targets)
    args.batches = max(1, min(args.batches, args.flips))
    return args


class Receiver:
    """The targets and the webhook receiver, on one port, in a thread of their own.

    `up[i]` is what target i answers; `probes[i]` lists (arrival, answered 200) of each
    probe of it; `hooks` lists (arrival, Idempotency-Key, body) of each webhook."""

    def __init__(self, count):
        self.up = [True] * count
        self.probes = [[] for _ in range(count)]
        self.hooks = []
        self.port = None
        ready = threading.Event()
        threading.Thread(target=asyncio.run, args=(self._serve(ready),), daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("the receiver did not start")

    async def _serve(self, ready):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        server = await asyncio.start_server(self._handle, sock=sock, backlog=1024)
        ready.set()
        async with server:
            await server.serve_forever()

    async def _handle(self, reader, writer):
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                arrived = time.time()
                path = line.split()[1].decode()
                headers = {}
                while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                status = "404 Not Found"
                if path.startswith("/t/"):
                    i = int(path[3:])
                    ok = self.up[i]
                    self.probes[i].append((arrived, ok))
                    status = "200 OK" if ok else "503 Service Unavailable"
                elif path == "/hook":
                    # Arrival: the whole request is in.
                    self.hooks.append((time.time(), headers.get("idempotency-key"),
                                       json.loads(body)))
                    status = "200 OK"
                writer.write(f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n"
                             "Content-Length: 2\r\n\r\nok".encode())
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, IndexError, ValueError):
            pass
        finally:
            writer.close()


def targets_file(tmp, count, port):
    path = os.path.join(tmp, "targets.yaml")
    with open(path, "w") as f:
        f.write("notify:\n")
        f.write(f"  - {{name: hook, url: 'http://127.0.0.1:{port}/hook'}}\n")
        f.write("targets:\n")
        for i in range(count):
            f.write(f"  - {{name: t{i:04d}, url: 'http://127.0.0.1:{port}/t/{i}', "
                    f"interval: {INTERVAL}s, timeout: 2s, "
                    f"failure_threshold: {FAILURE_THRESHOLD}, "
                    f"success_threshold: {SUCCESS_THRESHOLD}}}\n")
    return path


def commandstats(url):
    """Redis's calls per command so far: {command: calls}."""
    text = redis_cli(url, "INFO", "commandstats")
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"^cmdstat_([^:]+):calls=(\d+)", text, re.M)}


def job_records(url, keys):
    """The stored record of the notify job of each Idempotency-Key in `keys` (the
    channel is `hook`): {key: record}, for the stages of each delivery."""
    keys = [key for key in keys if key]
    found = {}
    for start in range(0, len(keys), 100):
        chunk = keys[start:start + 100]
        lines = redis_cli(url, "MGET", *(f"svc:job:notify-{k}-hook" for k in chunk)).splitlines()
        for key, line in zip(chunk, lines):
            try:
                found[key] = json.loads(line)
            except ValueError:
                pass
    return found


def wait_until(what, done, timeout):
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not within {timeout} s")
        time.sleep(0.05)


def hooks_of(receiver, name, state):
    return [h for h in receiver.hooks
            if h[2].get("target") == name and h[2].get("state") == state
            and not h[2].get("reminder")]


def run(tmp, args):
    """Flips `args.flips` targets down and up: a dict of what happened."""
    n = args.targets
    receiver = Receiver(n)
    redis, redis_url = start_redis(tmp)
    file = targets_file(tmp, n, receiver.port)
    workers = []
    try:
        for _ in range(3):
            workers.append(start("worker", env(redis_url, TARGETS_FILE=file, LOG_LEVEL="warn")))
        # Every target probed once and so found up (a first verdict of up is told to
        # nobody); the verdict is stored right after the probe.
        wait_until("a probe of every target",
                   lambda: all(receiver.probes[i] for i in range(n)), 3 * INTERVAL)
        time.sleep(1)
        early = len(receiver.hooks)

        sample = random.Random(17).sample(range(n), args.flips)
        batches = [sample[b::args.batches] for b in range(args.batches)]
        cpu = [cpu_seconds(w.pid) for w, _ in workers]
        calls = commandstats(redis_url)
        began = time.monotonic()
        flipped_up = set()
        pending = []
        for b, batch in enumerate(batches):
            pending.append((began + b * STAGGER, batch))
        # The last flip down takes up to FAILURE_THRESHOLD intervals to be seen, its
        # flip up one more; a second more for each of the webhooks.
        deadline = began + (len(batches) - 1) * STAGGER + \
            (FAILURE_THRESHOLD + SUCCESS_THRESHOLD + 1) * INTERVAL + 10
        while time.monotonic() < deadline:
            now = time.monotonic()
            while pending and pending[0][0] <= now:
                for i in pending.pop(0)[1]:
                    receiver.up[i] = False
            # Back up as soon as its `down` webhook is in.
            for _, _, body in list(receiver.hooks):
                name = body.get("target", "")
                if body.get("state") == "down" and name.startswith("t"):
                    i = int(name[1:])
                    if i not in flipped_up and i < n and not receiver.up[i]:
                        flipped_up.add(i)
                        receiver.up[i] = True
            if not pending and all(hooks_of(receiver, f"t{i:04d}", "up") for i in sample):
                break
            time.sleep(0.02)
        finished = time.monotonic()
        time.sleep(QUIET)  # a duplicate would arrive now
        wall = time.monotonic() - began
        cpu = [100 * (cpu_seconds(w.pid) - c) / wall for (w, _), c in zip(workers, cpu)]
        after = commandstats(redis_url)
        calls = {k: v - calls.get(k, 0) for k, v in after.items() if v > calls.get(k, 0)}
        jobs = job_records(redis_url, [key for _, key, _ in receiver.hooks])
    finally:
        for proc, _ in workers:
            stop(proc)
        stop(redis)
    return {"receiver": receiver, "sample": sample, "early": early, "wall": wall,
            "flipping": finished - began, "cpu": cpu, "calls": calls, "jobs": jobs}


def crossings(probes):
    """(down, up): the arrival of the probe that made target's `down` (the
    FAILURE_THRESHOLD-th 503) and its `up` (the SUCCESS_THRESHOLD-th 200 after the last
    503); None where there was none."""
    failed = [t for t, ok in probes if not ok]
    if len(failed) < FAILURE_THRESHOLD:
        return None, None
    down = failed[FAILURE_THRESHOLD - 1]
    good = [t for t, ok in probes if ok and t > failed[-1]]
    up = good[SUCCESS_THRESHOLD - 1] if len(good) >= SUCCESS_THRESHOLD else None
    return down, up


def analyse(result):
    receiver, sample = result["receiver"], result["sample"]
    flipped = {f"t{i:04d}" for i in sample}
    latencies, skew = [], []
    # Probe -> queued (the job's created_at), queued -> picked up (started_at),
    # picked up -> arrived.
    stages = ([], [], [])
    missing = duplicated = 0
    for i in sample:
        name = f"t{i:04d}"
        for state, crossed in zip(("down", "up"), crossings(receiver.probes[i])):
            hooks = hooks_of(receiver, name, state)
            if not hooks or crossed is None:
                missing += 1
                continue
            duplicated += len(hooks) - 1
            arrived, key, body = hooks[0]
            latencies.append(arrived - crossed)
            job = result["jobs"].get(key, {})
            if job.get("created_at") and job.get("started_at"):
                for stage, took in zip(stages, (job["created_at"] - crossed,
                                                job["started_at"] - job["created_at"],
                                                arrived - job["started_at"])):
                    stage.append(took)
            skew.append(abs(body.get("since", 0) - crossed))
    keys = [key for _, key, _ in receiver.hooks]
    # No channel repeats, so a reminder is unexpected too.
    unexpected = [h for h in receiver.hooks if h[2].get("reminder")
                  or h[2].get("target") not in flipped or h[2].get("state") not in ("down", "up")]
    latencies.sort()
    for stage in stages:
        stage.sort()
    return {"latencies": latencies, "stages": stages, "skew": max(skew, default=float("nan")),
            "missing": missing, "duplicated": duplicated, "unexpected": len(unexpected),
            "same_key": len(keys) - len(set(keys)),
            "down": sum(bool(hooks_of(receiver, f"t{i:04d}", "down")) for i in sample),
            "up": sum(bool(hooks_of(receiver, f"t{i:04d}", "up")) for i in sample)}


def rank(sorted_values, q):
    """The q-quantile of `sorted_values` by nearest rank."""
    return sorted_values[max(0, min(len(sorted_values) - 1,
                                    int(q * len(sorted_values) + 0.5) - 1))]


def main():
    args = arguments()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(tmp, args)
    a = analyse(result)
    lat = a["latencies"]
    flips = len(result["sample"])
    print(f"\nnotify: {args.targets} targets at a {INTERVAL} s interval, 3 workers, "
          f"failure_threshold {FAILURE_THRESHOLD}, success_threshold {SUCCESS_THRESHOLD}; "
          f"{flips} flipped down and back up "
          + (f"in {args.batches} batches {STAGGER:g} s apart " if args.batches > 1 else "at once ")
          + f"({result['flipping']:.0f} s)\n")
    print(f"  {'measure':<46} {'value':>32}   {'goal':<10} verdict")
    if lat:
        p99 = rank(lat, 0.99)
        row("crossing probe -> webhook p50", f"{rank(lat, 0.50) * 1000:.1f} ms")
        row("crossing probe -> webhook p99", f"{p99 * 1000:.1f} ms", "< 1 s", p99 < GOAL)
        row("crossing probe -> webhook max", f"{lat[-1] * 1000:.1f} ms")
    else:
        row("crossing probe -> webhook p99", "no webhook", "< 1 s", False)
    row("latencies measured", f"{len(lat)} of {2 * flips}")
    for label, stage in zip(("probe -> job queued", "queued -> picked up by a worker",
                             "picked up -> webhook arrived"), a["stages"]):
        if stage:
            row(f"  {label}, p50 / p99",
                f"{rank(stage, 0.5) * 1000:.1f} / {rank(stage, 0.99) * 1000:.1f} ms")
    exact = (a["down"] == flips and a["up"] == flips and a["missing"] == 0
             and a["duplicated"] == 0 and a["unexpected"] == 0 and a["same_key"] == 0
             and result["early"] == 0)
    row("one webhook per flip: down / up", f"{a['down']} / {a['up']} of {flips}",
        "all, once", exact)
    row("  missing / duplicated / unexpected", f"{a['missing']} / {a['duplicated']} / "
        f"{a['unexpected']}")
    row("  repeated Idempotency-Key / before flips", f"{a['same_key']} / {result['early']}")
    row("webhook's since vs probe's arrival, max", f"{a['skew'] * 1000:.1f} ms")
    row("worker CPU, % of one core (each)", " / ".join(f"{c:.1f}" for c in result["cpu"]))
    calls = result["calls"]
    top = sorted(calls.items(), key=lambda kv: -kv[1])[:4]
    row(f"Redis calls/s over {result['wall']:.0f} s",
        f"{sum(calls.values()) / result['wall']:.0f}")
    row("  most called", ", ".join(f"{k} {v / result['wall']:.0f}" for k, v in top))


if __name__ == "__main__":
    main()

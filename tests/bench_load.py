#!/usr/bin/env python3
"""`svc load` benchmark: its closed loop against wrk on the same target, and how closely
its open loop holds the rate it is given.

Target: nginx serving a fixed small JSON body (the fastest thing on this machine, so the
load generator is what is measured). Closed loop: `svc load -c N` and `wrk -t2 -cN`
alternate for several rounds; medians of req/s and the svc/wrk ratio (target >= 0.8).
Open loop: `svc load --rate R` for each R; sent / (R x duration), target within 2%.

Usage: tests/bench_load.py [--rounds N] [--duration SECONDS] [--connections N]
Needs: target/release/svc, nginx, wrk (tests/bench.sh installs them).
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import SVC, arguments, start_nginx, stop, wrk  # noqa: E402

RATES = (500, 2000, 5000)


def svc_load(url, *flags):
    """Runs `svc load URL FLAGS --json`; returns its summary."""
    out = subprocess.run([SVC, "load", url, "--json", *flags],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    args = arguments()
    with tempfile.TemporaryDirectory() as tmp:
        nginx, port = start_nginx(tmp)
        url = f"http://127.0.0.1:{port}/"
        try:
            closed = []
            for _ in range(args.rounds):
                s = svc_load(url, "-c", str(args.connections), "-d", f"{args.duration}s")
                closed.append((s["throughput"], s["latency_ms"]["p50"], s["latency_ms"]["p99"],
                               *wrk(url, args.duration, args.connections)))
            open_runs = {rate: [] for rate in RATES}
            for _ in range(args.rounds):
                for rate in RATES:
                    s = svc_load(url, "--rate", str(rate), "-d", f"{args.duration}s")
                    open_runs[rate].append((s["sent"] / (rate * args.duration),
                                            s["latency_ms"]["p50"], s["latency_ms"]["p99"]))
        finally:
            stop(nginx)

    m = [statistics.median(x) for x in zip(*closed)]
    ratio = m[0] / m[3]
    print(f"svc load vs wrk on nginx: {args.connections} connections, {args.duration}s, "
          f"{args.rounds} rounds alternating; medians\n")
    print(f"{'':<12} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7}")
    print(f"{'svc load':<12} {m[0]:>9.0f} {m[1]:>7.2f} {m[2]:>7.2f}")
    print(f"{'wrk':<12} {m[3]:>9.0f} {m[4]:>7.2f} {m[5]:>7.2f}")
    print(f"ratio svc/wrk {ratio:.2f} (target >= 0.8: {'ok' if ratio >= 0.8 else 'MISSED'})\n")

    print(f"open loop, {args.duration}s per run; medians of {args.rounds}")
    print(f"{'rate':>6} {'sent/due':>9} {'p50 ms':>7} {'p99 ms':>7}  target within 2%")
    for rate, runs in open_runs.items():
        held, p50, p99 = (statistics.median(x) for x in zip(*runs))
        verdict = "ok" if abs(held - 1) <= 0.02 else "MISSED"
        print(f"{rate:>6} {held:>9.4f} {p50:>7.2f} {p99:>7.2f}  {verdict}")


if __name__ == "__main__":
    main()

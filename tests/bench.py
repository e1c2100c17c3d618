#!/usr/bin/env python3
"""Gateway benchmark: svc against nginx serving a fixed small JSON body, side by side.

Starts its own redis-server (with a password) and `svc gateway` (release build), then
drives /health/live, /api/status and /metrics with wrk, alternating with the same load
on nginx, the ceiling of this machine. One core each: the server (svc, or nginx with one
worker process) on CPU 1, wrk with one thread on CPU 0. Prints medians of several
rounds, the svc/nginx ratio, the CPU each spends per request, the gateway's RSS idle
and after load, its RSS during and 30 s after a flood of 2,000 connections, and
start-up-to-ready time.

Usage: tests/bench.py [--rounds N] [--duration SECONDS] [--connections N]
Needs: target/release/svc, redis-server, nginx, wrk (tests/bench.sh installs them).
"""

import argparse
import http.client
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# SVC_BINARY compares another build (e.g. the previous release) on the same run.
SVC = os.environ.get("SVC_BINARY") or os.path.join(ROOT, "target", "release", "svc")
BODY = '{"status":"alive","service":"api-gateway","timestamp":1795810772.116968}'


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port, path, status=200, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", path)
            if conn.getresponse().status == status:
                return
        except OSError:
            pass
        time.sleep(0.0005)
    raise RuntimeError(f"127.0.0.1:{port}{path} did not answer {status}")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def to_ms(value):
    m = re.match(r"([\d.]+)(us|ms|s)", value)
    if not m:
        return float("nan")
    n, unit = float(m.group(1)), m.group(2)
    return n / 1000 if unit == "us" else n * 1000 if unit == "s" else n


# The CPUs of the load and of the server under test, when the machine has two.
LOAD_CPU, SERVER_CPU = (0, 1) if len(os.sched_getaffinity(0)) >= 2 else (None, None)


def on_cpu(cpu, argv):
    """argv run on CPU `cpu` only (as is when cpu is None)."""
    return argv if cpu is None else ["taskset", "-c", str(cpu), *argv]


def wrk(url, duration, connections, threads=2, cpu=None):
    out = subprocess.run(
        on_cpu(cpu, ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
                     url]),
        check=True, capture_output=True, text=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1))
    p99 = to_ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} non-2xx answers")
    return rps, p50, p99


def start_redis(tmp):
    port = free_port()
    password = "bench-" + os.urandom(6).hex()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--requirepass", password,
         "--save", "", "--appendonly", "no", "--dir", tmp],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.01)
    return proc, f"redis://:{password}@127.0.0.1:{port}/0"


def start_nginx(tmp, server=None, probe="/", cpu=None):
    """nginx on a free port; `server` is the body of its server block (default: a fixed
    small JSON body at every path); on CPU `cpu` with one worker process when given.
    Returns the process and the port."""
    port = free_port()
    server = server or f"location / {{ default_type application/json; return 200 '{BODY}'; }}"
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes {"auto" if cpu is None else 1};
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};
  uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
  server {{ listen 127.0.0.1:{port}; {server} }}
}}
""")
    proc = subprocess.Popen(on_cpu(cpu, ["nginx", "-c", conf, "-p", tmp]),
                            stderr=subprocess.DEVNULL)
    wait_http(port, probe)
    return proc, port


def start_svc(redis_url, cpu=None):
    port = free_port()
    env = {"PATH": os.environ["PATH"], "REDIS_URL": redis_url, "DRAIN_DELAY": "0s"}
    started = time.monotonic()
    proc = subprocess.Popen(
        on_cpu(cpu, [SVC, "gateway", "--host", "127.0.0.1", "--port", str(port)]),
        env=env, stdout=subprocess.DEVNULL,
    )
    wait_http(port, "/health/ready")
    return proc, port, (time.monotonic() - started) * 1000


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def arguments():
    """The benchmarks' common flags, after checking their tools are here."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    for tool in ("redis-server", "nginx", "wrk"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: run tests/bench.sh, which installs it")
    if not os.path.exists(SVC):
        sys.exit("target/release/svc not found: cargo build --release --locked")
    return args


def cpu_seconds(pids):
    """CPU time (user and system) the processes `pids` have used, in seconds."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def children(pid):
    """The direct children of `pid` (nginx's worker processes)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def side_by_side(rows, args, threads=2, cpu=None, pids=None):
    """Drives each (label, svc URL, nginx URL, verdict) row with wrk (`threads` threads,
    on CPU `cpu` when given), alternating svc and nginx for args.rounds rounds; prints
    medians and verdict(svc req/s, ratio). With `pids` (svc's, nginx's), also the CPU
    each spent per request (user and system, kernel TCP included), which a machine
    shared with other work disturbs far less than req/s."""
    where = "" if cpu is None else f" on CPU {cpu}"
    print(f"wrk: {threads} thread(s){where}, {args.connections} connections, {args.duration}s, "
          f"{args.rounds} rounds alternating svc and nginx; medians\n")
    cost = "" if pids is None else f"   {'svc us/req':>10} {'nginx us/req':>12} {'ratio':>5}"
    print(f"{'endpoint':<18} {'svc req/s':>10} {'p50 ms':>7} {'p99 ms':>7}   "
          f"{'nginx req/s':>11} {'p50 ms':>7} {'p99 ms':>7}   {'ratio':>5}  target{cost}")

    def run(url, who):
        before = cpu_seconds(who) if who else 0
        rps, p50, p99 = wrk(url, args.duration, args.connections, threads, cpu)
        spent = cpu_seconds(who) - before if who else 0
        return rps, p50, p99, spent / (rps * args.duration) * 1e6

    for label, svc_url, nginx_url, verdict in rows:
        svc_runs, nginx_runs = [], []
        for _ in range(args.rounds):
            svc_runs.append(run(svc_url, pids and pids[0]))
            nginx_runs.append(run(nginx_url, pids and pids[1]))
        s = [statistics.median(x) for x in zip(*svc_runs)]
        n = [statistics.median(x) for x in zip(*nginx_runs)]
        ratio = s[0] / n[0]
        cost = "" if pids is None else f"   {s[3]:>10.1f} {n[3]:>12.1f} {n[3] / s[3]:>5.2f}"
        print(f"{label:<18} {s[0]:>10.0f} {s[1]:>7.2f} {s[2]:>7.2f}   "
              f"{n[0]:>11.0f} {n[1]:>7.2f} {n[2]:>7.2f}   {ratio:>5.2f}  "
              f"{verdict(s[0], ratio):<14}{cost}")


def at_least_ratio(target):
    return lambda _, ratio: f">= {target} {'ok' if ratio >= target else 'MISSED'}"


def flood(pid, url, connections=2000, seconds=5, settle=30):
    """RSS of `pid` at the peak of `connections` connections for `seconds`, and
    `settle` seconds after they closed (KiB)."""
    load = subprocess.Popen(on_cpu(LOAD_CPU, ["wrk", "-t1", f"-c{connections}",
                                              f"-d{seconds}s", url]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while load.poll() is None:
        peak = max(peak, rss_kib(pid))
        time.sleep(0.05)
    # Waiting for the memory to come back is the measurement itself.
    time.sleep(settle)
    return peak, rss_kib(pid)


def main():
    args = arguments()

    with tempfile.TemporaryDirectory() as tmp:
        redis, redis_url = start_redis(tmp)
        nginx, nginx_port = start_nginx(tmp, cpu=SERVER_CPU)
        try:
            startups = []
            for _ in range(5):
                proc, _, ms = start_svc(redis_url)
                startups.append(ms)
                stop(proc)
            svc, svc_port, _ = start_svc(redis_url, SERVER_CPU)
            time.sleep(1)
            idle_rss = rss_kib(svc.pid)

            targets = {"/health/live": 0.9, "/api/status": 0.5, "/metrics": 0.2}
            side_by_side([(path, f"http://127.0.0.1:{svc_port}{path}",
                           f"http://127.0.0.1:{nginx_port}/", at_least_ratio(target))
                          for path, target in targets.items()], args, 1, LOAD_CPU,
                         ([svc.pid], [nginx.pid, *children(nginx.pid)]))
            loaded_rss = rss_kib(svc.pid)
            peak_rss, settled_rss = flood(svc.pid, f"http://127.0.0.1:{svc_port}/health/live")
            stop(svc)
        finally:
            stop(nginx)
            stop(redis)

    startup = statistics.median(startups)
    mib = lambda kib: kib / 1024  # noqa: E731
    print(f"\nRSS idle {mib(idle_rss):.1f} MiB (target < 12: "
          f"{'ok' if idle_rss < 12 * 1024 else 'MISSED'}), after load {mib(loaded_rss):.1f} MiB")
    print(f"2,000-connection flood for 5 s: RSS peak {mib(peak_rss):.1f} MiB, 30 s after "
          f"{mib(settled_rss):.1f} MiB (target < 2x idle: "
          f"{'ok' if settled_rss < 2 * idle_rss else 'MISSED'})")
    print(f"start-up to ready: median {startup:.1f} ms of {len(startups)} "
          f"(target < 100: {'ok' if startup < 100 else 'MISSED'})")


if __name__ == "__main__":
    main()

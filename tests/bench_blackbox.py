#!/usr/bin/env python3
"""Cost of probing: svc against the Prometheus blackbox exporter, side by side.

1,000 loopback targets (each its own path of one local nginx) at a 10 s interval, by
two sides running at the same time:
- svc: one `svc worker` (release build) with a targets file of the 1,000, and its
  redis-server;
- blackbox: `prometheus-blackbox-exporter` and a Prometheus scraping it for the 1,000
  at 10 s with the classic relabelling (what drives blackbox: without it nothing probes).
After a warm-up, over one wall window (60 s by default): each side's CPU seconds (utime
+ stime from /proc of all its processes) and its probes made (svc: the worker's
`svc_target_probe_lag_seconds_count`; blackbox: Prometheus's own count of scrapes of
the probe job), and so CPU milliseconds per probe of each side and their ratio
(svc / blackbox: below 1 is svc cheaper). nginx serves both and is counted by neither.

Then the same for each other check type in KINDS (tcp: svc `tcp://` against blackbox
`tcp_connect`; dns: svc `dns://` against blackbox's `dns` prober, both asking a local
dnsmasq for an A record, counted by neither side, like nginx). A check type is one more
entry there: its svc URL, its blackbox module and target.

Goal (issue 18): svc's CPU per probe at or below blackbox's plus its Prometheus's.
Exits 0 when a goal is missed (it prints numbers; it is no test), non-zero when the
setup fails. It takes about 3 minutes per check type.

Usage: tests/bench_blackbox.py [--window SECONDS] [--targets N] [--kinds http,tcp]
  (--rounds, --duration and --connections are accepted and ignored, so
  tests/bench.sh passes every script the same flags)
Needs: target/release/svc, redis-server, nginx, dnsmasq, prometheus,
prometheus-blackbox-exporter (tests/bench.sh installs them).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import (SVC, children, cpu_seconds, free_port, start_nginx, start_redis,  # noqa: E402
                   stop, wait_http)

INTERVAL = 10
WARM_UP = 25
CLOSED = "http://127.0.0.1:9"  # svc's own services are not measured
BLACKBOX = "prometheus-blackbox-exporter"

# One entry per check type: (name, svc URL of target i, blackbox module, blackbox
# target of target i), given the port of the server it probes (nginx; dnsmasq for dns).
KINDS = {
    "http": (lambda port, i: f"http://127.0.0.1:{port}/t/{i}",
             "http_2xx", lambda port, i: f"http://127.0.0.1:{port}/t/{i}"),
    "tcp": (lambda port, i: f"tcp://127.0.0.1:{port}",
            "tcp_connect", lambda port, i: f"127.0.0.1:{port}"),
    "dns": (lambda port, i: f"dns://127.0.0.1:{port}/t.test?type=A",
            "dns_a", lambda port, i: f"127.0.0.1:{port}"),
}
BLACKBOX_MODULES = """modules:
  http_2xx: {prober: http, timeout: 2s, http: {preferred_ip_protocol: ip4}}
  tcp_connect: {prober: tcp, timeout: 2s, tcp: {preferred_ip_protocol: ip4}}
  dns_a:
    prober: dns
    timeout: 2s
    dns: {query_name: t.test, query_type: A, preferred_ip_protocol: ip4}
"""


def arguments():
    ap = argparse.ArgumentParser()
    for ignored in ("--rounds", "--duration", "--connections"):
        ap.add_argument(ignored, type=int, default=0, help="ignored")
    ap.add_argument("--window", type=int, default=60, help="seconds measured after warm-up")
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--kinds", default=",".join(KINDS), help="check types, comma-separated")
    args, _ = ap.parse_known_args()
    for tool in ("redis-server", "nginx", "dnsmasq", "prometheus", BLACKBOX):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: run tests/bench.sh, which installs it")
    if not os.path.exists(SVC):
        sys.exit(f"{SVC} not found: cargo build --release --locked --bins")
    args.kinds = [k for k in args.kinds.split(",") if k]
    unknown = [k for k in args.kinds if k not in KINDS]
    if unknown:
        sys.exit(f"unknown check types {unknown}; known: {list(KINDS)}")
    return args


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as res:
        return res.read().decode()


def start_svc(tmp, kind, count, nginx_port):
    """redis-server and `svc worker` probing `count` targets of `kind`; their
    processes and the worker's port."""
    url = KINDS[kind][0]
    path = os.path.join(tmp, f"targets-{kind}.yaml")
    with open(path, "w") as f:
        f.write("targets:\n")
        for i in range(count):
            f.write(f"  - {{name: t{i:04d}, url: '{url(nginx_port, i)}', "
                    f"interval: {INTERVAL}s, timeout: 2s}}\n")
    redis, redis_url = start_redis(tmp)
    port = free_port()
    env = {"PATH": os.environ["PATH"], "REDIS_URL": redis_url, "DRAIN_DELAY": "0s",
           "API_GATEWAY_URL": CLOSED, "DASHBOARD_URL": CLOSED, "LOG_LEVEL": "warn"}
    worker = subprocess.Popen(
        [SVC, "worker", "--host", "127.0.0.1", "--port", str(port), "--targets", path],
        env=env, stdout=subprocess.DEVNULL)
    wait_http(port, "/health/ready", timeout=30)
    return [redis, worker], port


def start_blackbox(tmp, kind, count, nginx_port):
    """The blackbox exporter and a Prometheus driving it for `count` targets of `kind`;
    their processes and Prometheus's port."""
    _, module, target = KINDS[kind]
    config = os.path.join(tmp, "blackbox.yml")
    with open(config, "w") as f:
        f.write(BLACKBOX_MODULES)
    bb_port = free_port()
    exporter = subprocess.Popen(
        [BLACKBOX, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{bb_port}",
         "--log.level=warn"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(bb_port, "/-/healthy", timeout=30)
    # One static config per target with a label of its own: targets that share an
    # address (tcp) stay 1,000 targets, not one deduplicated.
    statics = "\n".join(
        f"      - {{targets: ['{target(nginx_port, i)}'], labels: {{t: t{i:04d}}}}}"
        for i in range(count))
    prom_config = os.path.join(tmp, "prometheus.yml")
    with open(prom_config, "w") as f:
        f.write(f"""global: {{scrape_interval: {INTERVAL}s, scrape_timeout: 5s}}
scrape_configs:
  - job_name: probe
    metrics_path: /probe
    params: {{module: [{module}]}}
    static_configs:
{statics}
    relabel_configs:
      - {{source_labels: [__address__], target_label: __param_target}}
      - {{source_labels: [__param_target], target_label: instance}}
      - {{target_label: __address__, replacement: '127.0.0.1:{bb_port}'}}
""")
    prom_port = free_port()
    prometheus = subprocess.Popen(
        ["prometheus", f"--config.file={prom_config}",
         f"--storage.tsdb.path={os.path.join(tmp, f'prometheus-{kind}')}",
         f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(prom_port, "/-/ready", timeout=60)
    return [exporter, prometheus], prom_port


def svc_probes(port):
    text = get(port, "/metrics")
    found = re.search(r"^svc_target_probe_lag_seconds_count(?:{[^}]*})? (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def blackbox_probes(prom_port):
    """Scrapes of the probe job Prometheus has made, from its own metrics (one
    scrape is one probe)."""
    text = get(prom_port, "/metrics")
    found = re.search(
        r'^prometheus_target_interval_length_seconds_count{interval="10s"} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def cpu_each(procs):
    """CPU seconds of each process started (with its children), in order."""
    return [cpu_seconds([p.pid, *children(p.pid)]) for p in procs]


def measure(kind, count, window, tmp, nginx_port):
    svc_procs, svc_port = start_svc(tmp, kind, count, nginx_port)
    bb_procs, prom_port = start_blackbox(tmp, kind, count, nginx_port)
    try:
        time.sleep(WARM_UP)  # a bench, not a test: both sides settle into their rhythm
        before = (cpu_each(svc_procs), svc_probes(svc_port),
                  cpu_each(bb_procs), blackbox_probes(prom_port))
        time.sleep(window)
        after = (cpu_each(svc_procs), svc_probes(svc_port),
                 cpu_each(bb_procs), blackbox_probes(prom_port))
        ups = query(prom_port, 'count(probe_success == 1)')
    finally:
        for proc in svc_procs + bb_procs:
            stop(proc)
    svc_cpu = [a - b for a, b in zip(after[0], before[0])]
    bb_cpu = [a - b for a, b in zip(after[2], before[2])]
    return svc_cpu, after[1] - before[1], bb_cpu, after[3] - before[3], ups


def query(prom_port, expr):
    body = get(prom_port, "/api/v1/query?query=" + urllib.parse.quote(expr))
    result = json.loads(body)["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def start_dnsmasq():
    """dnsmasq on 127.0.0.1 answering every name under .test with 127.0.0.1."""
    port = free_port()
    proc = subprocess.Popen(
        ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
         "--pid-file=", "--user=root", "--bind-interfaces", "--listen-address=127.0.0.1",
         f"--port={port}", "--address=/test/127.0.0.1", "--cache-size=1000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    if proc.poll() is not None:
        sys.exit("dnsmasq did not start")
    return proc, port


def main():
    args = arguments()
    expected = args.targets * args.window / INTERVAL
    print(f"# {args.targets} loopback targets at {INTERVAL} s, window {args.window} s "
          f"(expected probes per side: {expected:.0f}), both sides at once")
    print(f"{'type':<6} {'side':<34} {'CPU s':>7} {'probes':>7} {'ms/probe':>9}  of which")
    missed = []
    with tempfile.TemporaryDirectory() as tmp:
        nginx, nginx_port = start_nginx(tmp)
        dnsmasq, dns_port = start_dnsmasq()
        try:
            for kind in args.kinds:
                port = dns_port if kind == "dns" else nginx_port
                svc_cpu, svc_n, bb_cpu, bb_n, ups = measure(
                    kind, args.targets, args.window, tmp, port)
                svc_ms = 1000 * sum(svc_cpu) / max(svc_n, 1)
                bb_ms = 1000 * sum(bb_cpu) / max(bb_n, 1)
                print(f"{kind:<6} {'svc worker + redis-server':<34} {sum(svc_cpu):>7.2f} "
                      f"{svc_n:>7.0f} {svc_ms:>9.3f}  redis {svc_cpu[0]:.2f}, "
                      f"worker {svc_cpu[1]:.2f}")
                print(f"{kind:<6} {'blackbox exporter + prometheus':<34} {sum(bb_cpu):>7.2f} "
                      f"{bb_n:>7.0f} {bb_ms:>9.3f}  exporter {bb_cpu[0]:.2f}, "
                      f"prometheus {bb_cpu[1]:.2f}")
                ratio = svc_ms / bb_ms if bb_ms else float("inf")
                print(f"{kind:<6} ratio svc/blackbox: {ratio:.2f} "
                      f"(blackbox targets up: {ups:.0f} of {args.targets})")
                if ratio > 1:
                    missed.append(kind)
        finally:
            stop(nginx)
            stop(dnsmasq)
    if missed:
        print(f"goal missed for {', '.join(missed)}: svc costs more per probe than blackbox")


if __name__ == "__main__":
    main()

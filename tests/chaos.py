#!/usr/bin/env python3
"""Chaos suite: real processes on loopback, real faults, one row per scenario.

Each scenario starts its own redis-server(s), svc processes (the release binary) and,
where it needs them, nginx and wrk; injects a fault under load; and prints one row:
scenario, requests, failures, max latency, jobs lost, verdict. The run fails when a
verdict is FAIL, so CI can run it with its bounded durations.

Scenarios:
  rolling-update        two gateways behind nginx replaced one by one while a client
                        sends; a loop plays the endpoints controller (polls readiness,
                        rewrites the upstream, reloads nginx). No failed request.
  rolling-update-nodrain the same with DRAIN_DELAY=0s and nginx retries off: it must
                        show failures, or the first row proves nothing.
  redis-kill            Redis SIGKILLed and restarted under load: every request
                        answered within the store timeout, readiness follows, the
                        counter resumes.
  redis-freeze          Redis frozen (SIGSTOP) 10 s under load: the same.
  worker-crash          3 workers, 500 jobs, one worker SIGKILLed and one SIGTERMed
                        mid-run: every job done, or dead only when told to fail, and
                        each done job counted once.
  hostile-http          malformed and abusive requests on every role while a normal
                        client's latency is measured: no 5xx, nobody dies.
  foreign-values        wrong-typed values under every key the roles read: every route
                        still answers, no role dies.
  overload              wrk -c2000 on the gateway: no errors, answering right after.

Usage: tests/chaos.py [--only NAME[,NAME]] [--svc PATH]
Needs: target/release/svc, redis-server, nginx, wrk (tests/chaos.sh installs them).
"""

import argparse
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SVC = os.path.join(ROOT, "target", "release", "svc")
STORE_TIMEOUT = 1.0  # the store's operation timeout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None, timeout=5.0, headers=None):
    """(status, parsed JSON or text, seconds); status 0 when no answer."""
    start = time.monotonic()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request(method, path, body=body, headers=headers or {})
        res = conn.getresponse()
        raw = res.read()
        conn.close()
        try:
            data = json.loads(raw)
        except ValueError:
            data = raw.decode("utf-8", "replace")
        return res.status, data, time.monotonic() - start
    except OSError as e:
        return 0, str(e), time.monotonic() - start


def eventually(what, check, within=20.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


class Redis:
    def __init__(self, tmp):
        self.port = free_port()
        self.password = "pw-" + uuid.uuid4().hex
        self.dir = tempfile.mkdtemp(dir=tmp)
        self.proc = None
        self.start(fresh=True)

    def start(self, fresh=False):
        """Starts the server, within 20 s. Its port was free when picked (or while the
        server was down); a server that finds it taken exits. The first start then
        tries a fresh port; a restart must come back on its old one, so it tries again
        until the port is free. The password is this server's own: a PONG is its."""
        deadline = time.monotonic() + 20.0
        while True:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--requirepass", self.password, "--save", "", "--appendonly", "yes",
                 "--appendfsync", "always", "--dir", self.dir],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            eventually("redis", lambda: self.proc.poll() is not None or self.cli("PING") == "PONG")
            if self.proc.poll() is None:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            if fresh:
                self.port = free_port()
            else:
                time.sleep(0.1)

    def cli(self, *args):
        out = subprocess.run(
            ["redis-cli", "-p", str(self.port), "-a", self.password, "--no-auth-warning", *args],
            capture_output=True, text=True, timeout=5)
        return out.stdout.strip()

    def url(self):
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.kill()


class Svc:
    """A `svc` process; `ports` maps each service to the port it listens on."""

    def __init__(self, args, env, svc=None):
        full_env = {"PATH": os.environ.get("PATH", ""), "DRAIN_DELAY": "0s", **env}
        self.proc = subprocess.Popen(
            [svc or SVC, *args], env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        self.lines = []
        self.ports = {}
        threading.Thread(target=self._read, daemon=True).start()
        wanted = 3 if args[0] == "all" else 1
        eventually("svc to listen", lambda: len(self.ports) >= wanted)
        self.port = self.ports.get("api-gateway") or next(iter(self.ports.values()))

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            if "listening" in line:
                m = re.search(r"service=(\S+) addr=\S+:(\d+)", line)
                if m:
                    self.ports[m.group(1)] = int(m.group(2))

    def ready(self):
        return request(self.port, "GET", "/health/ready", timeout=2)[0] == 200

    def wait_ready(self, within=30.0):
        eventually("svc ready", self.ready, within)

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=60):
        return self.proc.wait(timeout=timeout)

    def stop(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait()


class Load(threading.Thread):
    """Sequential requests until stopped: counts, failures, worst latency."""

    def __init__(self, port_of, path, ok, timeout=5.0):
        super().__init__(daemon=True)
        self.port_of, self.path, self.ok, self.timeout = port_of, path, ok, timeout
        self.sent = self.failed = 0
        self.max_latency = 0.0
        self.samples = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            status, data, took = request(self.port_of(), "GET", self.path, timeout=self.timeout)
            self.sent += 1
            self.max_latency = max(self.max_latency, took)
            if not self.ok(status, data):
                self.failed += 1
            self.samples.append((time.monotonic(), status, data))
            time.sleep(0.005)

    def finish(self):
        self.halt.set()
        self.join()
        return self


ROWS = []


def row(name, requests, failures, max_latency, jobs_lost, ok, note=""):
    verdict = "ok" if ok else "FAIL"
    ROWS.append((name, requests, failures, max_latency, jobs_lost, verdict, note))
    lat = f"{max_latency * 1000:.0f} ms" if max_latency is not None else "-"
    print(f"{name:24} {requests!s:>9} {failures!s:>9} {lat:>10} {jobs_lost!s:>9}  {verdict}  {note}",
          flush=True)


# ------------------------------------------------------------------ rolling update

NGINX_CONF = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  include {tmp}/upstream.conf;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://gateways;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      {retries}
    }}
  }}
}}
"""


def rolling_update(tmp, drain, retries):
    redis = Redis(tmp)
    env = {"REDIS_URL": redis.url(), "DRAIN_DELAY": drain, "GRACE_PERIOD": "5s"}
    serve = lambda: Svc(["gateway", "--host", "127.0.0.1", "--port", "0"], env)
    gateways = [serve()]
    gateways[0].wait_ready()
    ndir = tempfile.mkdtemp(dir=tmp)
    upstream = os.path.join(ndir, "upstream.conf")

    def write_upstream(ports):
        servers = "".join(f"server 127.0.0.1:{p};" for p in ports) or "server 127.0.0.1:9 down;"
        with open(upstream, "w") as f:
            f.write(f"upstream gateways {{ {servers} keepalive 8; }}\n")

    write_upstream([gateways[0].port])
    conf = os.path.join(ndir, "nginx.conf")
    pid_file = os.path.join(ndir, "nginx.pid")
    # nginx cannot bind port 0 and say which port it got: a port picked then released,
    # and a fresh one when nginx finds it taken (it exits). It writes its pid file only
    # once it listens.
    for _ in range(5):
        nginx_port = free_port()
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(
                tmp=ndir, port=nginx_port,
                retries="proxy_next_upstream error timeout http_502;" if retries
                else "proxy_next_upstream off;"))
        nginx = subprocess.Popen(["nginx", "-c", conf, "-g", "daemon off;"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        eventually("nginx", lambda: nginx.poll() is not None or os.path.exists(pid_file))
        if nginx.poll() is None:
            break
    else:
        raise RuntimeError("nginx did not start on any of 5 ports")
    eventually("nginx", lambda: request(nginx_port, "GET", "/health/live")[0] == 200)

    # The endpoints controller: every 200 ms, the ready gateways become the upstream.
    stop = threading.Event()
    routed = [gateways[0].port]

    def controller():
        nonlocal routed
        while not stop.is_set():
            # The kubelet's default probe timeout (timeoutSeconds: 1).
            ready = [g.port for g in list(gateways) if g.alive() and
                     request(g.port, "GET", "/health/ready", timeout=1.0)[0] == 200]
            if ready != routed:
                write_upstream(ready)
                subprocess.run(["nginx", "-c", conf, "-s", "reload"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                routed = ready
            time.sleep(0.2)

    ctl = threading.Thread(target=controller, daemon=True)
    ctl.start()
    load = Load(lambda: nginx_port, "/api/status", lambda s, d: s == 200)
    load.start()
    try:
        for _ in range(2):
            new = serve()
            gateways.append(new)
            eventually("the new gateway routed", lambda: new.port in routed)
            old = gateways.pop(0)
            old.signal(signal.SIGTERM)
            old.wait(timeout=30)
        time.sleep(0.5)
    finally:
        load.finish()
        stop.set()
        ctl.join()
        nginx.send_signal(signal.SIGQUIT)
        nginx.wait(timeout=10)
        for g in gateways:
            g.stop()
        redis.stop()
    return load


def scenario_rolling(tmp):
    load = rolling_update(tmp, "5s", retries=True)
    row("rolling-update", load.sent, load.failed, load.max_latency, "-", load.failed == 0,
        "drain 5s, retries on")


def scenario_rolling_nodrain(tmp):
    load = rolling_update(tmp, "0s", retries=False)
    # The control run: without the drain the update must visibly fail requests.
    row("rolling-update-nodrain", load.sent, load.failed, load.max_latency, "-",
        load.failed > 0, "drain 0s, retries off: failures expected")


# ------------------------------------------------------------------ Redis faults

def redis_fault(tmp, name, fault):
    redis = Redis(tmp)
    gw = Svc(["gateway", "--host", "127.0.0.1", "--port", "0"], {"REDIS_URL": redis.url()})
    gw.wait_ready()
    answered = lambda s, d: s == 200 and isinstance(d, dict) and "total_requests" in d
    load = Load(lambda: gw.port, "/api/status", answered, timeout=STORE_TIMEOUT + 4)
    load.start()
    before = request(gw.port, "GET", "/api/status")[1]["total_requests"]
    unready = fault(redis, gw)
    ready_again = eventually("ready again", gw.ready, 30)
    after = eventually("the counter to resume", lambda: (
        lambda s: s[1]["total_requests"] if s[0] == 200 and s[1].get("redis_connected") else 0
    )(request(gw.port, "GET", "/api/status")), 30)
    load.finish()
    alive = gw.alive()
    gw.stop()
    redis.stop()
    bound = STORE_TIMEOUT + 1.0
    ok = (load.failed == 0 and load.max_latency <= bound and unready and ready_again
          and after > before and alive)
    row(name, load.sent, load.failed, load.max_latency, "-", ok,
        f"readiness followed: {unready}; counter {before} -> {after}; bound {bound:.1f} s")


def kill_and_restart(redis, gw):
    time.sleep(1)
    redis.kill()
    unready = eventually("unready", lambda: not gw.ready(), 10)
    time.sleep(2)
    redis.start()
    return unready


def freeze(redis, gw):
    time.sleep(1)
    redis.proc.send_signal(signal.SIGSTOP)
    unready = eventually("unready", lambda: not gw.ready(), 10)
    time.sleep(10)
    redis.proc.send_signal(signal.SIGCONT)
    return unready


def scenario_redis_kill(tmp):
    redis_fault(tmp, "redis-kill", kill_and_restart)


def scenario_redis_freeze(tmp):
    redis_fault(tmp, "redis-freeze", freeze)


# ------------------------------------------------------------------ worker crashes

def scenario_workers(tmp):
    redis = Redis(tmp)
    base = {"REDIS_URL": redis.url(), "WORKER_INTERVAL": "24h", "VISIBILITY_TIMEOUT": "2s",
            "GRACE_PERIOD": "1s", "API_GATEWAY_URL": "http://127.0.0.1:9",
            "DASHBOARD_URL": "http://127.0.0.1:9"}
    gw = Svc(["gateway", "--host", "127.0.0.1", "--port", "0"], base)
    workers = [Svc(["worker", "--host", "127.0.0.1", "--port", "0"], base) for _ in range(3)]
    for p in [gw, *workers]:
        p.wait_ready()
    told_to_fail, ids = set(), []
    for n in range(500):
        body = {"type": "data_processing", "size": 200, "hold_ms": 40}
        if n % 50 == 7:
            body["fail"] = "told to fail"
        status, data, _ = request(gw.port, "POST", "/api/jobs", json.dumps(body))
        if status == 202:
            ids.append(data["id"])
            if "fail" in body:
                told_to_fail.add(data["id"])
        if n == 150:
            workers[0].signal(signal.SIGKILL)
        if n == 300:
            workers[1].signal(signal.SIGTERM)
    end = {}

    def settled():
        for i in ids:
            if i in end:
                continue
            status, job, _ = request(gw.port, "GET", f"/api/jobs/{i}")
            if status == 200 and job.get("state") in ("done", "dead"):
                end[i] = job
        return len(end) == len(ids)

    try:
        eventually("every job to end", settled, 120)
    except RuntimeError:
        pass
    done = [j for j in end.values() if j["state"] == "done"]
    wrongly_dead = [i for i, j in end.items() if j["state"] == "dead" and i not in told_to_fail]
    lost = len(ids) - len(end)
    counted = int(redis.cli("GET", "worker:tasks:data_processing") or 0)
    for p in [gw, *workers]:
        p.stop()
    redis.stop()
    ok = lost == 0 and not wrongly_dead and counted == len(done) and len(ids) == 500
    row("worker-crash", len(ids), len(wrongly_dead), None, lost, ok,
        f"done {len(done)}, dead {len(end) - len(done)} (told to fail {len(told_to_fail)}), "
        f"counted {counted}")


# ------------------------------------------------------------------ hostile HTTP

def raw(port, payload, read=True, timeout=3.0):
    """Sends raw bytes; returns the status code answered (0: none)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(payload)
            if not read:
                return 0
            data = s.recv(4096)
            m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
            return int(m.group(1)) if m else 0
    except OSError:
        return 0


def scenario_hostile(tmp):
    svc = Svc(["all", "--gateway-port", "0", "--worker-port", "0", "--dashboard-port", "0",
               "--interval", "24h"], {})
    svc.wait_ready()
    attacks = {
        "huge header": b"GET /api/status HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 100_000 + b"\r\n\r\n",
        "many headers": b"GET /api/status HTTP/1.1\r\nHost: x\r\n" + b"".join(
            b"X-%d: v\r\n" % i for i in range(500)) + b"\r\n",
        "invalid utf-8 path": b"GET /static/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        "nul in path": b"GET /static/a%00b HTTP/1.1\r\nHost: x\r\n\r\n",
        "dot-dot slash": b"GET /static/..%2f..%2fetc%2fpasswd HTTP/1.1\r\nHost: x\r\n\r\n",
        "bad request line": b"GARBAGE\r\n\r\n",
        "CL and TE": b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "100 MB chunked": b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                          + b"%x\r\n" % (100 * 2**20),
        "deep JSON": b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 8000\r\n\r\n"
                     + b"[" * 4000 + b"]" * 4000,
        "unknown method": b"BREW /api/status HTTP/1.1\r\nHost: x\r\n\r\n",
    }
    five = []
    ports = svc.ports.values()
    # 2,000 idle connections and a slowloris while a normal client is measured.
    idle = []
    for _ in range(2000):
        try:
            idle.append(socket.create_connection(("127.0.0.1", svc.port), timeout=2))
        except OSError:
            break
    slow = socket.create_connection(("127.0.0.1", svc.port), timeout=2)
    slow.sendall(b"GET /api/status HTTP/1.1\r\nHost: x\r\n")
    load = Load(lambda: svc.port, "/api/status", lambda s, d: s == 200)
    load.start()
    for port in ports:
        for name, payload in attacks.items():
            status = raw(port, payload)
            if status >= 500:
                five.append(f"{name} on {port}: {status}")
    for s in idle:
        s.close()
    slow.close()
    time.sleep(0.5)
    load.finish()
    alive = svc.alive() and svc.ready()
    svc.stop()
    row("hostile-http", load.sent, load.failed + len(five), load.max_latency, "-",
        alive and not five and load.failed == 0,
        f"{len(attacks)} attacks x 3 roles, {len(idle)} idle connections; 5xx: {five or 'none'}")


# ------------------------------------------------------------------ foreign values

def scenario_foreign(tmp):
    redis = Redis(tmp)
    for key in ["api:total_requests", "worker:last_task_time", "worker:tasks:cleanup",
                "svc:series:requests", "svc:series:up:redis", "svc:health:redis"]:
        redis.cli("DEL", key)
        redis.cli("SADD", key, "foreign")
    redis.cli("SET", "svc:instances", "not a sorted set")
    redis.cli("SET", "svc:jobs", "not a stream")
    redis.cli("SET", "svc:job:bad", "{not json")
    svc = Svc(["all", "--gateway-port", "0", "--worker-port", "0", "--dashboard-port", "0",
               "--interval", "1s", "--refresh", "1s"], {"REDIS_URL": redis.url()})
    time.sleep(3)
    routes = {
        "api-gateway": ["/", "/api/status", "/api/info", "/api/jobs/bad", "/metrics"],
        "worker-service": ["/status", "/metrics"],
        "dashboard": ["/", "/partials/status", "/api/health-check", "/api/system-info"],
    }
    sent = bad = 0
    worst = 0.0
    notes = []
    for service, paths in routes.items():
        for path in paths:
            status, data, took = request(svc.ports[service], "GET", path)
            sent += 1
            worst = max(worst, took)
            # A stored job that is not JSON is a 500 naming its key; nothing else fails.
            expected = 500 if path == "/api/jobs/bad" else 200
            if status != expected:
                bad += 1
                notes.append(f"{service}{path}: {status}")
    alive = svc.alive()
    svc.stop()
    redis.stop()
    row("foreign-values", sent, bad, worst, "-", alive and bad == 0,
        "wrong types under 9 keys" + (f"; {notes}" if notes else ""))


# ------------------------------------------------------------------ overload

def scenario_overload(tmp):
    redis = Redis(tmp)
    gw = Svc(["gateway", "--host", "127.0.0.1", "--port", "0"], {"REDIS_URL": redis.url()})
    gw.wait_ready()
    out = subprocess.run(
        ["wrk", "-t2", "-c2000", "-d5s", "--timeout", "5s", f"http://127.0.0.1:{gw.port}/api/status"],
        capture_output=True, text=True, timeout=60).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1)) if "requests in" in out else 0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    socket_errors = sum(int(n) for n in errors.groups()) if errors else 0
    non2xx = int(re.search(r"Non-2xx or 3xx responses: (\d+)", out).group(1)) \
        if "Non-2xx" in out else 0
    latency = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out)
    status, _, took = request(gw.port, "GET", "/api/status")
    alive = gw.alive()
    gw.stop()
    redis.stop()
    max_latency = None
    if latency:
        m = re.match(r"([\d.]+)(us|ms|s)", latency.group(1))
        if m:
            max_latency = float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]
    ok = alive and status == 200 and socket_errors == 0 and non2xx == 0 and requests > 0
    row("overload", requests, socket_errors + non2xx, max_latency, "-", ok,
        f"wrk -c2000 5 s; right after: {status} in {took * 1000:.0f} ms")


SCENARIOS = {
    "rolling-update": scenario_rolling,
    "rolling-update-nodrain": scenario_rolling_nodrain,
    "redis-kill": scenario_redis_kill,
    "redis-freeze": scenario_redis_freeze,
    "worker-crash": scenario_workers,
    "hostile-http": scenario_hostile,
    "foreign-values": scenario_foreign,
    "overload": scenario_overload,
}


def main():
    global SVC
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated scenario names")
    parser.add_argument("--svc", default=SVC, help="the svc binary")
    args = parser.parse_args()
    SVC = args.svc
    if not os.access(SVC, os.X_OK):
        sys.exit(f"{SVC} not found: build it with `cargo build --release --locked`")
    names = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        sys.exit(f"unknown scenarios: {unknown}; known: {list(SCENARIOS)}")
    print(f"{'scenario':24} {'requests':>9} {'failures':>9} {'max lat':>10} {'jobs lost':>9}  verdict")
    with tempfile.TemporaryDirectory(prefix="svc-chaos-") as tmp:
        for name in names:
            try:
                SCENARIOS[name](tmp)
            except Exception as e:  # a scenario that cannot finish is a failed one
                row(name, "-", "-", None, "-", False, f"{type(e).__name__}: {e}")
    failed = [r[0] for r in ROWS if r[5] != "ok"]
    print(f"chaos: {len(ROWS) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Checks on compose.yaml as docker-compose resolved it (`docker-compose config`).

    docker-compose --env-file .env.example --profile monitoring config > /tmp/compose.yaml
    python3 deploy/compose_check.py /tmp/compose.yaml deploy/compose/prometheus.yml
    OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4318 docker-compose ... --profile tracing config > /tmp/t.yaml
    python3 deploy/compose_check.py /tmp/t.yaml deploy/compose/prometheus.yml tracing
"""

import posixpath
import sys

import yaml

ROLES = {"gateway": 8080, "worker": 8081, "dashboard": 3000}
# The roles that read the targets file (TARGETS_FILE).
TARGETS_ROLES = ("worker", "dashboard")
# Where the files of the credentials it names are mounted (the targets' own, the
# notification channels'), and the roles that send them, the only ones to mount them.
CREDENTIAL_DIRS = {"/etc/svc/credentials": ("worker",), "/etc/svc/notify": ("worker",)}


def mounts(service):
    """(target, read-only) of each volume, in the short or the long syntax."""
    for v in service.get("volumes", []):
        if isinstance(v, str):
            parts = v.split(":")
            yield parts[1] if len(parts) > 1 else parts[0], parts[2:3] == ["ro"]
        else:
            yield v["target"], bool(v.get("read_only"))


def check_tracing(services, check, tracing):
    """Jaeger in the tracing profile; resolved as the tracing profile is started
    (`tracing`), every role sends its spans to Jaeger's OTLP/HTTP port."""
    jaeger = services.get("jaeger", {})
    check(jaeger.get("profiles") == ["tracing"], "jaeger is in the tracing profile")
    if not tracing:
        return
    check("127.0.0.1:16686" in str(jaeger.get("ports")), "jaeger's UI is published on 127.0.0.1:16686")
    for role in ROLES:
        endpoint = services.get(role, {}).get("environment", {}).get("OTEL_EXPORTER_OTLP_ENDPOINT")
        check(endpoint == "http://jaeger:4318", f"{role} sends traces to http://jaeger:4318 (is {endpoint!r})")


def main(compose_path, prometheus_path, tracing=None):
    services = yaml.safe_load(open(compose_path))["services"]
    scrape = yaml.safe_load(open(prometheus_path))["scrape_configs"]
    targets = {t for job in scrape for sc in job.get("static_configs", []) for t in sc["targets"]}
    failures = []

    def check(ok, what):
        if not ok:
            failures.append(what)
            print(f"  FAIL {what}")
        return ok

    redis = services.get("redis", {})
    command = redis.get("command", [])
    check("--requirepass" in command and command[command.index("--requirepass") + 1:][:1] != [""],
          "redis starts with --requirepass and a password")
    check("healthcheck" in redis, "redis has a healthcheck")
    password = command[command.index("--requirepass") + 1] if "--requirepass" in command[:-1] else None
    images = set()
    for role, port in ROLES.items():
        s = services.get(role)
        if s is None:
            check(False, f"service {role} exists")
            continue
        images.add(s.get("image"))
        check("build" in s, f"{role} is built from the Dockerfile")
        check((s.get("command") or [None])[0] == role, f"{role} runs `svc {role}`")
        test = s.get("healthcheck", {}).get("test", [])
        check(test[:3] == ["CMD", "/svc", "healthcheck"] and f":{port}/" in test[-1],
              f"{role} healthcheck is `svc healthcheck` on port {port}")
        check(s.get("depends_on", {}).get("redis", {}).get("condition") == "service_healthy",
              f"{role} waits for a healthy redis")
        check(s.get("environment", {}).get("REDIS_PASSWORD") == password, f"{role} gets redis's password as REDIS_PASSWORD")
        check(s.get("user") == "1000:1000" and s.get("read_only") is True, f"{role} runs as 1000:1000, read-only")
        check(f"{role}:{port}" in targets, f"prometheus scrapes {role}:{port}")
        if role in TARGETS_ROLES:
            path = s.get("environment", {}).get("TARGETS_FILE")
            if check(path, f"{role} gets TARGETS_FILE"):
                # The directory, so that an edit saved by replacing the file is seen.
                check((posixpath.dirname(path), True) in set(mounts(s)),
                      f"{role} mounts the directory of TARGETS_FILE {path} read-only")
        for directory, roles in CREDENTIAL_DIRS.items():
            if role in roles:
                check((directory, True) in set(mounts(s)), f"{role} mounts the credentials at {directory} read-only")
            else:
                check(directory not in {target for target, _ in mounts(s)},
                      f"{role} mounts nothing at {directory} (it is for the {', '.join(roles)} only)")
    check(len(images) == 1, f"gateway, worker and dashboard share one image (have {sorted(map(str, images))})")
    for name in ("prometheus", "grafana"):
        check(services.get(name, {}).get("profiles") == ["monitoring"], f"{name} is in the monitoring profile")
    check_tracing(services, check, tracing)
    print(f"compose: {'ok' if not failures else f'{len(failures)} failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))

# svc: `just` lists the recipes. Install just with `cargo install just`.

# List the recipes
default:
    @just --list --unsorted

# Format the code
fmt:
    cargo fmt

# Check formatting and lints as CI does
lint:
    cargo fmt --check
    cargo clippy --all-targets --locked -- -D warnings

# Run the tests (installs redis-server, promtool, chromium and chromedriver when missing)
test *ARGS:
    tests/run.sh {{ARGS}}

# Real faults under load, one row per scenario (installs redis-server, nginx, wrk when missing)
chaos *ARGS:
    tests/chaos.sh {{ARGS}}

# Everything CI runs
ci:
    bash .ci/run

# Run the gateway against a Redis (REDIS_URL or REDIS_HOST...)
run-gateway *ARGS:
    cargo run --release --locked -- gateway {{ARGS}}

# Run a worker against a Redis (REDIS_URL or REDIS_HOST...)
run-worker *ARGS:
    cargo run --release --locked -- worker {{ARGS}}

# Run the dashboard on 3000 against a Redis, probing API_GATEWAY_URL and WORKER_SERVICE_URL
run-dashboard *ARGS:
    cargo run --release --locked -- dashboard {{ARGS}}

# Run every role in one process on the embedded store; open http://localhost:3000
run-all *ARGS:
    cargo run --release --locked -- all {{ARGS}}

# Benchmark the gateway, the worker, the dashboard, svc load, and 1,000 targets on 3 workers with their probe-to-webhook latency (against nginx and wrk where it applies; installs redis-server, nginx, wrk when missing)
bench *ARGS:
    tests/bench.sh {{ARGS}}

# Build the container image (default tag svc:dev, what the dev overlay runs)
image tag="svc:dev":
    docker build -t {{tag}} .

# Run Redis, gateway, worker and dashboard with Docker Compose (`just compose-up --profile monitoring` adds Prometheus and Grafana)
compose-up *args:
    docker compose {{args}} up --build

# Apply the dev overlay to the current kubectl context (create redis-secret first: deploy/README.md)
deploy-dev:
    kubectl apply -k deploy/overlays/dev

# Apply the prod overlay to the current kubectl context (needs the Prometheus Operator CRDs and redis-secret)
deploy-prod:
    kubectl apply -k deploy/overlays/prod

# Validate Dockerfile, compose.yaml and deploy/ (add --svc-binary target/release/svc or --build-release to check the binary too)
validate *args:
    .ci/validate-deploy {{args}}

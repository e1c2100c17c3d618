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

# Everything CI runs
ci:
    bash .ci/run

# Run the gateway against a Redis (REDIS_URL or REDIS_HOST...)
run-gateway *ARGS:
    cargo run --release --locked -- gateway {{ARGS}}

# Run the dashboard on 3000 against a Redis, probing API_GATEWAY_URL and WORKER_SERVICE_URL
run-dashboard *ARGS:
    cargo run --release --locked -- dashboard {{ARGS}}

# Run every role in one process on the embedded store; open http://localhost:3000
run-all *ARGS:
    cargo run --release --locked -- all {{ARGS}}

# Benchmark the gateway and the dashboard against nginx (installs redis-server, nginx, wrk when missing)
bench *ARGS:
    tests/bench.sh {{ARGS}}

# syntax=docker/dockerfile:1
# One image for every role: the subcommand picks gateway, worker or dashboard.

FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /app

# Reduce the manifests to a recipe, so source edits do not rebuild dependencies.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
# Build-time settings of dependencies (jemalloc's purging), so the cooked layer has them.
COPY .cargo .cargo
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin svc

# distroless/cc: glibc and CA certificates only; no shell, no package manager, no curl.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="svc" \
      org.opencontainers.image.description="Microservice health monitoring: API gateway, worker and dashboard in one binary" \
      org.opencontainers.image.source="https://github.com/svc-project/svc" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
COPY --from=builder /app/target/release/svc /svc
USER 1000:1000
EXPOSE 8080 8081 3000
# Probes the gateway's default port; compose and Kubernetes set their own check per role.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/svc", "healthcheck", "http://127.0.0.1:8080/health/live"]
ENTRYPOINT ["/svc"]
CMD ["gateway"]

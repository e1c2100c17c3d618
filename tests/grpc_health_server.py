#!/usr/bin/env python3
"""A gRPC server for the check tests: the standard health service
(grpc.health.v1.Health) on 127.0.0.1, a port the OS picks, printed as `PORT <n>`.

Arguments set statuses, as SERVICE=STATUS (STATUS: SERVING, NOT_SERVING, UNKNOWN;
an empty SERVICE is the server as a whole). A service not named is unknown to it
(NOT_FOUND), as the protocol says. `--tls CERT KEY` first: over TLS (grpcs), with that
certificate and key (PEM)."""

import sys
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


def main() -> None:
    args = sys.argv[1:]
    tls = None
    if args[:1] == ["--tls"]:
        with open(args[1], "rb") as cert, open(args[2], "rb") as key:
            tls = grpc.ssl_server_credentials([(key.read(), cert.read())])
        args = args[3:]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = health.HealthServicer()
    for arg in args:
        service, _, status = arg.partition("=")
        servicer.set(service, health_pb2.HealthCheckResponse.ServingStatus.Value(status))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    if tls is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", tls)
    server.start()
    print(f"PORT {port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()

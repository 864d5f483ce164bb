"""Command line: `python -m services.precompute [render | export FILE | import FILE]`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.api import SERVICE_NAME, bearer, pb_grpc
from services.common.channels import open_channel
from services.precompute.packs import export_lessons, import_lessons
from services.precompute.render import CacheUnavailable, render_catalog
from services.precompute.settings import PrecomputeSettings


def wait_until_serving(channel: grpc.Channel, timeout_s: float) -> bool:
    """Poll the standard health service until the model is loaded (the first start downloads it)."""
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            reply = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return True
        except grpc.RpcError:
            pass
        time.sleep(2)
    return False


def main(argv: list[str] | None = None) -> int:
    settings = PrecomputeSettings()
    parser = argparse.ArgumentParser(
        prog="python -m services.precompute",
        description="Render the lesson catalog into the cache; export and import lesson packs.",
        epilog=(
            "settings: CLASSROOM_INFERENCE_ADDR (default localhost:50051), "
            "CLASSROOM_REDIS_URL (default redis://localhost:6379/0), "
            "CLASSROOM_WAIT_S (seconds to wait for the service, default 1800)"
        ),
    )
    commands = parser.add_subparsers(dest="command")
    render = commands.add_parser("render", help="render what is not cached yet (the default)")
    render.add_argument("--collection", default="", help="only this collection of the catalog")
    render.add_argument("--no-progress", action="store_true", help="no progress bar")
    export = commands.add_parser("export", help="write every lesson trajectory in Redis to FILE")
    export.add_argument("file", type=Path)
    load = commands.add_parser("import", help="load a lesson pack FILE into Redis")
    load.add_argument("file", type=Path)
    args = parser.parse_args(argv)

    if args.command in ("export", "import"):
        with redis.Redis.from_url(settings.redis_url) as client:
            if args.command == "export":
                print(f"exported {export_lessons(client, args.file)} lesson trajectories to {args.file}")
            else:
                print(import_lessons(client, args.file))
        return 0

    with open_channel(settings.inference_addr, settings) as channel:
        if not wait_until_serving(channel, settings.wait_s):
            print(f"The inference service at {settings.inference_addr} did not become ready.", file=sys.stderr)
            return 2
        stub = pb_grpc.DiffusionServiceStub(channel)
        try:
            summary = render_catalog(
                stub,
                collection=getattr(args, "collection", ""),
                progress=not getattr(args, "no_progress", False),
                metadata=bearer(settings.api_token),
            )
        except CacheUnavailable as error:
            print(error, file=sys.stderr)
            return 2
    print(summary)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Command line: `python -m services.precompute [render | export FILE | import FILE]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import redis

from services.common.client import ClassroomClient
from services.precompute.packs import export_lessons, import_lessons
from services.precompute.render import CacheUnavailable, render_catalog
from services.precompute.settings import PrecomputeSettings


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
        if not settings.cache_secret:
            print("Lesson packs need the inference service's cache secret (CLASSROOM_CACHE_SECRET or "
                  "CLASSROOM_CACHE_SECRET_FILE).", file=sys.stderr)  # fmt: skip
            return 2
        secret = settings.cache_secret.encode()
        with redis.Redis.from_url(settings.redis_url) as client:
            if args.command == "export":
                print(f"exported {export_lessons(client, args.file, secret)} lesson trajectories to {args.file}")
            else:
                print(import_lessons(client, args.file, secret))
        return 0

    client = ClassroomClient(settings)
    try:
        if not client.wait_until_serving(settings.wait_s):
            print(f"The inference service at {settings.inference_addr} did not become ready.", file=sys.stderr)
            return 2
        summary = render_catalog(
            client, collection=getattr(args, "collection", ""), progress=not getattr(args, "no_progress", False)
        )
    except CacheUnavailable as error:
        print(error, file=sys.stderr)
        return 2
    finally:
        client.close()
    print(summary)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())

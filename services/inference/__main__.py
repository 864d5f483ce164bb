"""Command line: `python -m services.inference serve` and `python -m services.inference build-tiny DIR`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

from services.inference.settings import InferenceSettings


def _settings_help() -> str:
    lines = ["settings (environment variables):"]
    for name, info in InferenceSettings.model_fields.items():
        default = info.default if info.default is not None else "unset"
        lines.append(f"  CLASSROOM_{name.upper():<28} {info.description} [default: {default}]")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.inference",
        description="Diffusion Classroom's inference service.",
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "serve",
        help="run the gRPC server until SIGTERM",
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build = commands.add_parser("build-tiny", help="write the tiny offline model to DIR")
    build.add_argument("dir", type=Path)
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=os.environ.get("CLASSROOM_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "build-tiny":
        from services.inference.tiny import build_tiny_model

        print(f"tiny model written to {build_tiny_model(args.dir)}")
        return

    settings = InferenceSettings()
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    from services.inference.server import serve

    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()

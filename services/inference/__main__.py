"""Command line: `python -m services.inference serve | build-tiny DIR | health | make-secrets DIR`."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from services.inference import allocator
from services.inference.settings import InferenceSettings


def _settings_help() -> str:
    lines = ["settings (environment variables):"]
    for name, info in InferenceSettings.model_fields.items():
        default = info.default if info.default is not None else "unset"
        lines.append(f"  CLASSROOM_{name.upper():<28} {info.description} [default: {default}]")
    return "\n".join(lines)


def _is_serving(settings: InferenceSettings, timeout: float) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from services.common.channels import open_channel

    # Over TLS the check trusts CLASSROOM_TLS_CA, or the server's own (self-signed) certificate,
    # and expects it to name CLASSROOM_TLS_SERVER_NAME, or localhost.
    check = settings.model_copy(
        update={
            "tls_ca": settings.tls_ca or settings.tls_cert,
            "tls_server_name": settings.tls_server_name or "localhost",
        }
    )
    if settings.tls_cert is None:
        check = settings.model_copy(update={"tls_ca": None})
    with open_channel(f"127.0.0.1:{settings.grpc_port}", check) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError as error:
            print(f"not serving: {error.code().name}")
            return False
    print(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    return reply.status == health_pb2.HealthCheckResponse.SERVING


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
    health = commands.add_parser("health", help="exit 0 when the local server is SERVING (container health checks)")
    health.add_argument("--timeout", type=float, default=3.0)
    secrets = commands.add_parser("make-secrets", help="write the class's missing secrets into DIR (first start)")
    secrets.add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "make-secrets":
        from services.common.secrets import ensure_secrets

        made = ensure_secrets(args.dir)
        print(f"made {', '.join(made)} in {args.dir}" if made else f"the secrets in {args.dir} are in place")
        return

    settings = InferenceSettings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "build-tiny":
        from services.inference.diffusion.tiny import build_tiny_model

        print(f"tiny model written to {build_tiny_model(args.dir)}")
        return
    if args.command == "health":
        raise SystemExit(0 if _is_serving(settings, args.timeout) else 1)
    if argv is None:  # the command line's own process: it may start again with jemalloc (allocator.py)
        allocator.reexec(settings.allocator, settings.jemalloc_library)
    logging.getLogger("services.inference").info(allocator.describe(settings.allocator))
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    from services.inference.server import serve

    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()

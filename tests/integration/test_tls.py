"""TLS: with a certificate and key set, the service speaks only TLS, and clients trusting its CA get through."""

import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from services.common.api import pb, pb_grpc
from services.common.channels import TlsClientSettings, open_channel
from tests.integration.helpers import collect, request
from tests.support.servers import running_server


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, made with openssl as a school's admin would."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    return self_signed(folder, "classroom"), self_signed(folder, "stranger")


def test_tls_serves_trusting_clients_and_refuses_the_rest(settings, certificates):
    (cert, key), (other_cert, _) = certificates
    with running_server(settings.model_copy(update={"tls_cert": cert, "tls_key": key, "redis_url": ""})) as server:
        with open_channel(server.address, TlsClientSettings(tls_ca=cert)) as channel:
            stub = pb_grpc.DiffusionServiceStub(channel)
            assert stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10).model_id == "tiny"
            assert collect(stub.Generate(request(seed=1, num_inference_steps=2, width=64, height=64))).final
        for untrusting in (TlsClientSettings(), TlsClientSettings(tls_ca=other_cert)):  # plain text; another CA
            with open_channel(server.address, untrusting) as channel:
                with pytest.raises(grpc.RpcError) as caught:
                    pb_grpc.DiffusionServiceStub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        # The container's health check speaks TLS to its own server.
        env = os.environ | {"CLASSROOM_GRPC_PORT": str(server.server.port), "CLASSROOM_TLS_CERT": str(cert),
                            "CLASSROOM_TLS_KEY": str(key)}  # fmt: skip
        check = subprocess.run([sys.executable, "-m", "services.inference", "health"], env=env, capture_output=True,
                               text=True, timeout=60)  # fmt: skip
        assert check.returncode == 0 and "SERVING" in check.stdout


def test_a_certificate_without_its_key_is_refused(settings, certificates):
    (cert, _), _ = certificates
    with pytest.raises(ValueError, match="must be set together"):
        settings.model_validate(settings.model_dump() | {"tls_cert": cert})

"""Bad requests get INVALID_ARGUMENT with a student's sentence and field details; serving goes on."""

import math

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.common.api import pb
from tests.integration.helpers import collect, request

BAD = [
    ({"prompt": ""}, "prompt"),
    ({"prompt": "a" * 5000}, "prompt"),
    ({"num_inference_steps": 151}, "num_inference_steps"),
    ({"num_inference_steps": -1}, "num_inference_steps"),
    ({"guidance_scale": 31.0}, "guidance_scale"),
    ({"guidance_scale": -1.0}, "guidance_scale"),
    ({"guidance_scale": math.nan}, "guidance_scale"),
    ({"width": 65}, "width"),
    ({"height": 2048}, "height"),
    ({"width": 32}, "width"),
    ({"scheduler": "heun"}, "scheduler"),
    ({"seed": -5}, "seed"),
    ({"seed": 2**40}, "seed"),
    ({"include": ["latent", "attention_maps"]}, "include"),
]


def bad_request_fields(error: grpc.RpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)
    assert status is not None, "no rich status attached"
    fields = {}
    for detail in status.details:  # BadRequest, and an ErrorInfo with the sentences' templates
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            fields |= {v.field: v.description for v in bad_request.field_violations}
    assert fields, "no BadRequest detail"
    return fields


@pytest.mark.parametrize(("fields", "field"), BAD)
def test_bad_generate_is_rejected_and_the_server_keeps_serving(stub, fields, field):
    with pytest.raises(grpc.RpcError) as caught:
        collect(stub.Generate(request(**{"seed": 1, "width": 64, "height": 64, **fields})))
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = bad_request_fields(error)
    assert list(violations) == [field]
    assert violations[field] in error.details()  # the status message is the student's sentence
    assert "Traceback" not in error.details()

    stream = collect(stub.Generate(request(seed=1, num_inference_steps=2, width=64, height=64)))
    assert len(stream.frames) == 2


def test_bad_input_does_no_model_work(stub):
    before = stub.GetServerStats(pb.GetServerStatsRequest())
    for fields, _ in BAD:
        with pytest.raises(grpc.RpcError):
            collect(stub.Generate(request(**{"seed": 1, **fields})))
    after = stub.GetServerStats(pb.GetServerStatsRequest())
    assert after.generations_started == before.generations_started
    assert after.denoising_steps == before.denoising_steps


def test_overlong_prompt_to_tokenize_is_rejected(stub):
    with pytest.raises(grpc.RpcError) as caught:
        stub.Tokenize(pb.TokenizeRequest(prompt="word " * 1000))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "limit is 1000" in caught.value.details()

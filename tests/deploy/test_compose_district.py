"""deploy/compose.district.yml: several simulated-GPU replicas on one machine, the front end over all of them."""

import pytest
import yaml

from services.inference.settings import InferenceSettings
from tests.deploy.test_compose import _ResetLoader
from tests.frontend.conftest import ROOT


@pytest.fixture(scope="module")
def override():
    return yaml.load((ROOT / "deploy" / "compose.district.yml").read_text(), Loader=_ResetLoader)


def test_the_replicas_run_the_simulated_gpu_and_no_gpu(override):
    inference = override["services"]["inference"]
    assert inference["deploy"] == "!reset"  # no GPU reserved: `--scale inference=N` fits any machine
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["inference"]
    assert "ports" not in compose and "container_name" not in compose  # nothing that stops a second replica
    environment = {**compose["environment"], **inference["environment"]}
    # The service accepts it on the compose network only because the override says it is meant.
    settings = {key.removeprefix("CLASSROOM_").lower(): value for key, value in environment.items()
                if not str(value).startswith("${") and not key.endswith("_FILE")}  # fmt: skip
    assert InferenceSettings(**settings, api_token="t").model == "simulated-h100"
    without = {key: value for key, value in settings.items() if key != "allow_simulated_gpu"}
    with pytest.raises(ValueError, match="ALLOW_SIMULATED_GPU"):
        InferenceSettings(**without, api_token="t")


def test_the_front_end_and_precompute_spread_over_every_replica(override):
    for name in ("frontend", "precompute"):
        assert override["services"][name]["environment"]["CLASSROOM_INFERENCE_ADDR"] == "dns:///inference:50051"

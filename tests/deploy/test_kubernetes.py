"""deploy/k8s: the kustomization resolves and every manifest validates against the Kubernetes schemas."""

from ipaddress import ip_network
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from services.common.secrets import READERS, REDIS_AUTH_CONF, REDIS_UID
from tests.frontend.conftest import ROOT

KUBERNETES_VERSION = "1.33.0"


def build(folder: Path, namespace: str | None = None) -> list[dict]:
    """What `kubectl kustomize` assembles here: resources (files and bases), generated ConfigMaps, namespace."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    namespace = kustomization.get("namespace", namespace)
    documents: list[dict] = []
    for resource in kustomization.get("resources", []):
        path = (folder / resource).resolve()
        if path.is_dir():
            documents += build(path, namespace)
        else:
            documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for generator in kustomization.get("configMapGenerator", []):
        data = dict(line.split("=", 1) for line in generator.get("literals", []))
        for entry in generator.get("files", []):
            key, _, source = entry.partition("=")
            file = folder / (source or key)
            assert file.resolve().is_relative_to(folder.resolve()), f"{entry}: kustomize loads files below its root"
            data[key] = file.read_text()
        documents.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]},
                          "data": data})  # fmt: skip
    for document in documents:
        if namespace and document["kind"] != "Namespace":
            document["metadata"]["namespace"] = namespace
    return documents


@pytest.fixture(scope="module")
def manifests():
    return build(ROOT / "deploy" / "k8s")


def find(manifests, kind, name):
    return next(d for d in manifests if d["kind"] == kind and d["metadata"]["name"] == name)


def test_every_manifest_validates(manifests):
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in manifests)
    assert len(kinds) == len(set(kinds))
    for document in manifests:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    assert {d["metadata"].get("namespace") for d in manifests if d["kind"] != "Namespace"} == {"diffusion-classroom"}


def test_one_inference_pod_per_gpu_behind_a_headless_service(manifests):
    pod = find(manifests, "Deployment", "inference")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["readinessProbe"]["grpc"]["service"] == "diffusion_classroom.v1.DiffusionService"
    assert find(manifests, "Service", "inference")["spec"]["clusterIP"] == "None"


def test_frontend_balances_over_the_pods_with_sticky_sessions(manifests):
    settings = find(manifests, "ConfigMap", "classroom-settings")["data"]
    assert settings["CLASSROOM_INFERENCE_ADDR"].startswith("dns:///inference:")
    annotations = find(manifests, "Ingress", "frontend")["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/affinity"] == "cookie"


def test_redis_is_persistent_and_configured_like_compose(manifests):
    redis = find(manifests, "StatefulSet", "redis")["spec"]
    assert redis["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    config = find(manifests, "ConfigMap", "redis-config")["data"]["redis.conf"]
    assert config == (ROOT / "deploy" / "redis" / "redis.conf").read_text()
    job = find(manifests, "Job", "precompute")["spec"]["template"]["spec"]["containers"][0]
    assert job["command"][:3] == ["python", "-m", "services.precompute"]


def test_every_pod_gets_only_its_own_secrets_and_redis_requires_its_password(manifests):
    settings = find(manifests, "ConfigMap", "classroom-settings")["data"]
    assert settings["CLASSROOM_API_TOKEN_FILE"] == "/secrets/api_token"
    assert settings["CLASSROOM_REDIS_PASSWORD_FILE"] == "/secrets/redis_password"
    assert settings["CLASSROOM_CLASS_CODE_FILE"] == "/secrets/class_code"
    assert settings["CLASSROOM_TEACHER_CODE_FILE"] == "/secrets/teacher_code"
    assert settings["CLASSROOM_HOST"] == "0.0.0.0"  # allowed only because the token is there
    pods = {
        "inference": find(manifests, "Deployment", "inference")["spec"]["template"]["spec"],
        "shapes": find(manifests, "Deployment", "shapes")["spec"]["template"]["spec"],
        "frontend": find(manifests, "Deployment", "frontend")["spec"]["template"]["spec"],
        "precompute": find(manifests, "Job", "precompute")["spec"]["template"]["spec"],
        "redis": find(manifests, "StatefulSet", "redis")["spec"]["template"]["spec"],
    }
    # The same keys as make-secrets' folder for each reader (services/common/secrets.py).
    readers = {reader.folder: set(reader.files) for reader in READERS}
    wanted = {
        "inference": readers["service"],
        "shapes": readers["service"],
        "precompute": readers["service"] - {"teacher_code"},  # the job never opens the teacher's calls
        "frontend": readers["frontend"],
        "redis": readers["redis"],
    }
    assert "teacher_code" in wanted["inference"] and "teacher_code" in wanted["frontend"]
    for name, pod in pods.items():
        secret = next(v for v in pod["volumes"] if v["name"] == "secrets")["secret"]
        # Not optional: nothing starts without it.
        assert secret["secretName"] == "classroom-secrets" and not secret.get("optional"), name
        assert {item["key"] for item in secret["items"]} == wanted[name], name
        assert all(item["key"] == item["path"] for item in secret["items"]), name
        assert secret["defaultMode"] == 0o440, name  # root and the pod's group (fsGroup), nobody else
        assert pod["securityContext"]["fsGroup"] == pod["containers"][0]["securityContext"]["runAsUser"], name
        mounts = pod["containers"][0]["volumeMounts"]
        assert {"name": "secrets", "mountPath": "/secrets", "readOnly": True} in mounts, name
    redis = pods["redis"]["containers"][0]
    assert redis["command"] == ["redis-server", "/etc/redis/redis.conf", "--include", f"/secrets/{REDIS_AUTH_CONF}"]
    assert redis["securityContext"]["runAsUser"] == REDIS_UID and redis["securityContext"]["runAsNonRoot"]
    probe = " ".join(redis["readinessProbe"]["exec"]["command"])
    assert "REDISCLI_AUTH=" in probe and " -a " not in probe


def test_the_front_end_trusts_forwarded_addresses_only_from_the_pod_network(manifests):
    settings = find(manifests, "ConfigMap", "classroom-settings")["data"]
    networks = [ip_network(part) for part in settings["CLASSROOM_TRUSTED_PROXIES"].split(",")]
    assert networks and all(network.is_private for network in networks)
    assert (ROOT / "docs" / "deploy.md").read_text().count("CLASSROOM_TRUSTED_PROXIES") >= 2  # set it, and why


def test_pods_run_locked_down_and_talk_only_to_what_they_need(manifests):
    for kind, name in (("Deployment", "inference"), ("Deployment", "shapes"), ("Deployment", "frontend"),
                       ("Job", "precompute")):  # fmt: skip
        container = find(manifests, kind, name)["spec"]["template"]["spec"]["containers"][0]
        context = container["securityContext"]
        assert context["runAsNonRoot"] and context["readOnlyRootFilesystem"], name
        assert context["capabilities"]["drop"] == ["ALL"] and not context["allowPrivilegeEscalation"], name
    policies = {d["metadata"]["name"]: d["spec"] for d in manifests if d["kind"] == "NetworkPolicy"}
    assert policies["default-deny"]["podSelector"] == {} and set(policies["default-deny"]["policyTypes"]) == {
        "Ingress",
        "Egress",
    }

    def allowed_from(policy: str) -> set[str]:
        return {peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                for rule in policies[policy]["ingress"] for peer in rule.get("from", [])}  # fmt: skip

    assert allowed_from("inference") == {"frontend", "precompute"}
    assert allowed_from("shapes") == {"frontend"}
    assert allowed_from("redis") == {"inference", "shapes", "precompute"}
    settings = find(manifests, "ConfigMap", "classroom-settings")["data"]
    assert settings["CLASSROOM_BLOCKLIST"] == "/app/services/inference/blocklist.txt"
    assert find(manifests, "Ingress", "frontend")["spec"]["tls"][0]["secretName"] == "classroom-tls"


def test_a_stopping_inference_pod_has_time_to_finish_its_pictures(manifests):
    settings = find(manifests, "ConfigMap", "classroom-settings")["data"]
    deployment = find(manifests, "Deployment", "inference")["spec"]
    pod = deployment["template"]["spec"]
    grace = float(settings["CLASSROOM_SHUTDOWN_GRACE_S"])
    # The service's own grace, then closing Redis and exiting, before the kubelet's SIGKILL.
    assert pod["terminationGracePeriodSeconds"] >= grace + 10
    # Ready only once the model is loaded: the startup probe waits for it, readiness reads the same health.
    container = pod["containers"][0]
    assert container["startupProbe"]["grpc"]["service"] == container["readinessProbe"]["grpc"]["service"]
    # A rollout needs no spare GPU: one pod at a time is replaced.
    assert deployment["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}


def test_disruptions_take_inference_pods_one_at_a_time(manifests):
    budget = find(manifests, "PodDisruptionBudget", "inference")["spec"]
    labels = find(manifests, "Deployment", "inference")["spec"]["template"]["metadata"]["labels"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    # maxUnavailable, not minAvailable: with one pod, a node drain must still go through.
    assert budget == {"maxUnavailable": 1, "selector": budget["selector"]}


def test_redis_keeps_the_class_on_disk(manifests):
    config = find(manifests, "ConfigMap", "redis-config")["data"]["redis.conf"]
    lines = {line.split()[0]: line.split()[1:] for line in config.splitlines() if line and not line.startswith("#")}
    assert lines["appendonly"] == ["yes"] and lines["appendfsync"] == ["everysec"]
    redis = find(manifests, "StatefulSet", "redis")["spec"]
    claim = redis["volumeClaimTemplates"][0]
    mounts = redis["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in mounts
    assert "Sentinel" in (ROOT / "docs" / "deploy.md").read_text()


def test_shapes_runs_beside_the_gpu_pods_for_lessons_9_and_10(manifests):
    settings = find(manifests, "ConfigMap", "classroom-settings")["data"]
    assert settings["CLASSROOM_SHAPES_ADDR"] == "shapes:50051"
    pod = find(manifests, "Deployment", "shapes")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert {e["name"]: e["value"] for e in container["env"]} == {"CLASSROOM_MODEL": "shapes", "CLASSROOM_DEVICE": "cpu"}
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})  # no GPU taken from the class
    assert container["envFrom"] == [{"configMapRef": {"name": "classroom-settings"}}]  # the same Redis, same class
    assert find(manifests, "Service", "shapes")["spec"]["ports"][0]["port"] == 50051

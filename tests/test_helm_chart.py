"""Render the Helm chart with real Helm (v4 SDK), validate every manifest, check what matters."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy_support import helm_render
from tests.deploy_support.helm_render import HelmError, Rendering

NETWORK_EGRESS = {
    "kafka": {"cidrs": ["10.20.0.0/16"], "ports": [9092, 9093]},
    "redis": {"cidrs": ["10.30.0.10/32"], "ports": [6379]},
    "modelStore": {"cidrs": ["10.40.0.0/24"], "ports": [443]},
    "videoSources": {"cidrs": [], "ports": [443]},
}

SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "keda": {"keda": {"enabled": True, "maxReplicaCount": 12, "authenticationRef": "kafka-auth"}},
    "serviceMonitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    "networkPolicy": {"networkPolicy": {"enabled": True, "egress": NETWORK_EGRESS}},
    "pdb": {"pdb": {"enabled": True}},
    "hpa": {"autoscaling": {"enabled": True, "maxReplicas": 6}},
    "initContainerModels": {
        "models": {
            "source": "initContainer",
            "initContainer": {
                "image": {"repository": "registry.example/fame-models", "tag": "2026.11.1"},
                "envFromSecret": "model-store-credentials",
            },
        }
    },
    "cpuOnly": {"gpu": {"count": 0}, "tolerations": []},
    "saslTls": {
        "kafka": {
            "securityProtocol": "SASL_SSL",
            "saslMechanism": "SCRAM-SHA-512",
            "sasl": {"existingSecret": "kafka-sasl"},
            "tls": {"existingSecret": "kafka-ca"},
        },
        "redis": {"url": "rediss://redis.example:6380/0", "existingSecret": "redis-auth"},
    },
    "everything": {
        "keda": {"enabled": True},
        "serviceMonitor": {"enabled": True},
        "networkPolicy": {"enabled": True, "egress": NETWORK_EGRESS},
        "pdb": {"enabled": True},
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        "consumer": {"fileRoots": ["/data/videos"]},
        "extraVolumes": [{"name": "videos", "persistentVolumeClaim": {"claimName": "videos"}}],
        "extraVolumeMounts": [{"name": "videos", "mountPath": "/data/videos", "readOnly": True}],
    },
}


@pytest.fixture(scope="module")
def rendered() -> dict[str, Rendering]:
    return {name: helm_render.render(values) for name, values in SCENARIOS.items()}


def _container(rendering: Rendering) -> dict[str, Any]:
    containers = rendering.one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _pod_spec(rendering: Rendering) -> dict[str, Any]:
    spec: dict[str, Any] = rendering.one("Deployment")["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_manifest_passes_schema_validation(
    rendered: dict[str, Rendering], scenario: str
) -> None:
    manifests = rendered[scenario].manifests
    assert manifests
    for manifest in manifests:
        helm_render.validate_manifest(manifest)


def _broken(rendering: Rendering, kind: str, path: str, value: Any) -> dict[str, Any]:
    manifest = copy.deepcopy(rendering.one(kind))
    node = manifest
    *parents, leaf = path.split(".")
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[leaf] = value
    return manifest


@pytest.mark.parametrize(
    ("scenario", "kind", "path", "value"),
    [
        ("defaults", "Deployment", "spec.template.spec.gpus", 1),
        ("defaults", "Deployment", "spec.template.spec.terminationGracePeriodSeconds", "45s"),
        ("keda", "ScaledObject", "spec.triggers.0.metadata.lagThreshold", 50),
        ("keda", "ScaledObject", "spec.scaleTargetRef", {}),
        ("serviceMonitor", "ServiceMonitor", "spec.endpoints.0.interval", "30 seconds"),
        ("serviceMonitor", "ServiceMonitor", "spec.endpoints.0.scheme", "ftp"),
    ],
)
def test_validation_rejects_broken_manifests(
    rendered: dict[str, Rendering], scenario: str, kind: str, path: str, value: Any
) -> None:
    manifest = _broken(rendered[scenario], kind, path, value)
    with pytest.raises(helm_render.ManifestInvalid):
        helm_render.validate_manifest(manifest)


@pytest.mark.parametrize(
    ("scenario", "kind"),
    [
        ("keda", "ScaledObject"),
        ("serviceMonitor", "ServiceMonitor"),
        ("networkPolicy", "NetworkPolicy"),
        ("pdb", "PodDisruptionBudget"),
        ("hpa", "HorizontalPodAutoscaler"),
    ],
)
def test_toggles_add_their_object_only_when_enabled(
    rendered: dict[str, Rendering], scenario: str, kind: str
) -> None:
    assert len(rendered[scenario].of_kind(kind)) == 1
    assert rendered["defaults"].of_kind(kind) == []


def test_defaults_render_the_core_objects(rendered: dict[str, Rendering]) -> None:
    kinds = sorted(m["kind"] for m in rendered["defaults"].manifests)
    assert kinds == ["ConfigMap", "Deployment", "Service", "ServiceAccount"]


def test_gpu_limit_follows_gpu_count(rendered: dict[str, Rendering]) -> None:
    limits = _container(rendered["defaults"])["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in _container(rendered["cpuOnly"])["resources"]["limits"]
    four = _container(helm_render.render({"gpu": {"count": 4}}))
    assert four["resources"]["limits"]["nvidia.com/gpu"] == 4


def test_probes_hit_health_and_readiness(rendered: dict[str, Rendering]) -> None:
    container = _container(rendered["defaults"])
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_container_is_locked_down(rendered: dict[str, Rendering], scenario: str) -> None:
    pod = _pod_spec(rendered[scenario])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"] + pod.get("initContainers", []):
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == 10001
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert "/tmp" in mounts
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["tmp"]


def test_grace_period_covers_the_drain(rendered: dict[str, Rendering]) -> None:
    assert _pod_spec(rendered["defaults"])["terminationGracePeriodSeconds"] == 45
    longer = helm_render.render({"consumer": {"drainTimeoutSeconds": 120}})
    assert _pod_spec(longer)["terminationGracePeriodSeconds"] == 135
    config = longer.one("ConfigMap")["data"]
    assert config["FAME_DRAIN_TIMEOUT_S"] == "120"


def test_configmap_carries_the_service_settings(rendered: dict[str, Rendering]) -> None:
    data = rendered["everything"].one("ConfigMap")["data"]
    assert data["FAME_EVENTS_TOPIC"] == "fame.video-events"
    assert data["FAME_VERDICTS_TOPIC"] == "fame.verdicts"
    assert data["FAME_DLQ_TOPIC"] == "fame.dead-letters"
    assert data["FAME_GROUP_ID"] == "fame-consumer"
    assert data["FAME_CHECKPOINT"] == "/models/fame_default.pt"
    assert data["FAME_DETECTOR_MODEL"] == "/models/insightface/buffalo_l"
    assert json.loads(data["FAME_FILE_ROOTS"]) == ["/data/videos"]
    assert all(key.startswith("FAME_") for key in data)
    envfrom = _container(rendered["defaults"])["envFrom"]
    assert envfrom == [{"configMapRef": {"name": "fame-fame-consumer"}}]


def test_secret_env_comes_only_from_secret_refs(rendered: dict[str, Rendering]) -> None:
    container = _container(rendered["saslTls"])
    env = {e["name"]: e for e in container["env"]}
    assert set(env) == {
        "FAME_KAFKA_SASL_USERNAME",
        "FAME_KAFKA_SASL_PASSWORD",
        "FAME_REDIS_PASSWORD",
    }
    for entry in env.values():
        assert "value" not in entry
        assert set(entry["valueFrom"]) == {"secretKeyRef"}
    assert env["FAME_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "kafka-sasl",
        "key": "password",
    }
    data = rendered["saslTls"].one("ConfigMap")["data"]
    assert data["FAME_KAFKA_SSL_CAFILE"] == "/etc/fame/kafka-tls/ca.crt"
    assert data["FAME_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    volumes = {v["name"]: v for v in _pod_spec(rendered["saslTls"])["volumes"]}
    assert volumes["kafka-tls"]["secret"]["secretName"] == "kafka-ca"


SECRET_KEY = re.compile(r"(?i)(password|passwd|token|secret|credential)")


def _secret_looking_literals(node: Any, path: str = "") -> list[str]:
    """Paths of `name: value` env entries or map keys whose name suggests a credential."""
    found: list[str] = []
    if isinstance(node, dict):
        if (
            isinstance(node.get("name"), str)
            and "value" in node
            and SECRET_KEY.search(node["name"])
        ):
            found.append(f"{path}.{node['name']}")
        for key, value in node.items():
            if SECRET_KEY.search(str(key)) and isinstance(value, str) and key != "secretName":
                found.append(f"{path}.{key}")
            found.extend(_secret_looking_literals(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found.extend(_secret_looking_literals(item, f"{path}[{index}]"))
    return found


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_no_secret_values_in_any_manifest(rendered: dict[str, Rendering], scenario: str) -> None:
    for manifest in rendered[scenario].manifests:
        assert manifest["kind"] != "Secret"
        assert _secret_looking_literals(manifest) == [], manifest["kind"]


def test_secret_scan_would_catch_a_literal() -> None:
    leaky = {"env": [{"name": "FAME_KAFKA_SASL_PASSWORD", "value": "hunter2"}]}
    assert _secret_looking_literals(leaky) == [".env[0].FAME_KAFKA_SASL_PASSWORD"]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_standard_labels_everywhere(rendered: dict[str, Rendering], scenario: str) -> None:
    for manifest in rendered[scenario].manifests:
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "fame-consumer"
        assert labels["app.kubernetes.io/instance"] == "fame"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "fame-consumer-0.1.0"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
    deployment = rendered[scenario].one("Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()


def test_model_volume_from_pvc_is_read_only(rendered: dict[str, Rendering]) -> None:
    pod = _pod_spec(rendered["defaults"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"] == {
        "claimName": "fame-models",
        "readOnly": True,
    }
    assert "initContainers" not in pod
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["models"]["readOnly"] is True


def test_model_volume_from_init_container(rendered: dict[str, Rendering]) -> None:
    pod = _pod_spec(rendered["initContainerModels"])
    (init,) = pod["initContainers"]
    assert init["image"] == "registry.example/fame-models:2026.11.1"
    assert init["command"][-1] == "cp -R /models/. /models/"
    assert init["envFrom"] == [{"secretRef": {"name": "model-store-credentials"}}]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["models"]


def test_keda_scales_on_consumer_group_lag(rendered: dict[str, Rendering]) -> None:
    scaled = rendered["keda"].one("ScaledObject")["spec"]
    assert scaled["maxReplicaCount"] == 12
    assert scaled["scaleTargetRef"]["name"] == "fame-fame-consumer"
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["bootstrapServers"] == "kafka:9092"
    assert trigger["metadata"]["consumerGroup"] == "fame-consumer"
    assert trigger["metadata"]["topic"] == "fame.video-events"
    assert trigger["metadata"]["lagThreshold"] == "50"
    assert trigger["authenticationRef"] == {"name": "kafka-auth"}
    assert "replicas" not in rendered["keda"].one("Deployment")["spec"]
    assert rendered["keda"].of_kind("HorizontalPodAutoscaler") == []


def test_service_monitor_scrapes_metrics(rendered: dict[str, Rendering]) -> None:
    monitor = rendered["serviceMonitor"].one("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http"
    assert endpoint["path"] == "/metrics"
    service = rendered["serviceMonitor"].one("Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )


def test_network_policy_allows_only_dns_and_named_stores(rendered: dict[str, Rendering]) -> None:
    policy = rendered["networkPolicy"].one("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    dns, *stores = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    cidrs = [peer["ipBlock"]["cidr"] for rule in stores for peer in rule["to"]]
    assert cidrs == ["10.20.0.0/16", "10.30.0.10/32", "10.40.0.0/24"]
    assert [p["port"] for p in stores[0]["ports"]] == [9092, 9093]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]


def test_notes_state_gpus_and_grace_period(rendered: dict[str, Rendering]) -> None:
    assert "terminationGracePeriodSeconds is 45" in rendered["defaults"].notes
    assert "CPU-only" in rendered["cpuOnly"].notes
    assert "KEDA on consumer-group lag" in rendered["keda"].notes


def _with(path: str, value: Any) -> dict[str, Any]:
    """Values with one dotted key set, e.g. ``_with("gpu.count", 2)``."""
    values: dict[str, Any] = {}
    node = values
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return values


REJECTED: dict[str, tuple[dict[str, Any], str]] = {
    "gpu negative": (_with("gpu.count", -1), "minimum"),
    "gpu fractional": (_with("gpu.count", 1.5), "integer"),
    "gpu word": (_with("gpu.count", "two"), "integer"),
    "gpu too many": (_with("gpu.count", 9), "maximum"),
    "sasl password literal": (_with("kafka.saslPassword", "hunter2"), "saslPassword"),
    "redis password literal": (_with("redis.password", "hunter2"), "password"),
    "token at top level": (_with("token", "abc"), "token"),
    "password in annotations": (_with("podAnnotations.db-password", "x"), "db-password"),
    "keda beyond partitions": (
        {"keda": {"enabled": True, "maxReplicaCount": 13}},
        "keda.maxReplicaCount (13) must not exceed kafka.partitions (12)",
    ),
    "hpa beyond partitions": (
        _with("autoscaling.maxReplicas", 24),
        "autoscaling.maxReplicas (24) must not exceed kafka.partitions (12)",
    ),
    "keda and hpa together": (
        {"keda": {"enabled": True}, "autoscaling": {"enabled": True}},
        "mutually exclusive",
    ),
    "sasl without secret": (_with("kafka.securityProtocol", "SASL_SSL"), "saslMechanism"),
    "ssl without ca": (_with("kafka.securityProtocol", "SSL"), "kafka.tls.existingSecret"),
    "latest model image": (
        _with(
            "models",
            {
                "source": "initContainer",
                "initContainer": {"image": {"repository": "m", "tag": "latest"}},
            },
        ),
        "/models/initContainer/image/tag",
    ),
    "pvc without claim": (_with("models.pvc.claimName", ""), "claimName"),
    "network policy without cidrs": (_with("networkPolicy.enabled", True), "minItems"),
    "unknown log level": (_with("consumer.logLevel", "TRACE"), "logLevel"),
}


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_bad_values_are_rejected(case: str) -> None:
    values, message = REJECTED[case]
    with pytest.raises(HelmError) as raised:
        helm_render.render(copy.deepcopy(values))
    assert message in str(raised.value)


def test_bad_values_file_is_rejected_like_helm_template_f(tmp_path: Path) -> None:
    """The values files an operator would pass with `-f` go through the same schema."""
    bad = tmp_path / "bad-values.yaml"
    bad.write_text("kafka:\n  sasl:\n    existingSecret: kafka-sasl\n    password: hunter2\n")
    with pytest.raises(HelmError, match="password"):
        helm_render.render(yaml.safe_load(bad.read_text()))


def test_helm_lint_strict_finds_nothing_above_info() -> None:
    report = helm_render.lint()
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] > 1] == []


@pytest.mark.parametrize("scenario", ["defaults", "saslTls", "everything"])
def test_chart_environment_is_a_valid_service_configuration(
    rendered: dict[str, Rendering], scenario: str
) -> None:
    """Every FAME_* variable the chart sets is a real setting and the whole set validates, so
    a pod never crash-loops on configuration the chart itself wrote."""
    from consumer.settings import Settings

    env = dict(rendered[scenario].one("ConfigMap")["data"])
    for item in _container(rendered[scenario]).get("env", []):
        if item["name"].startswith("FAME_"):
            env[item["name"]] = "from-secret"  # value comes from a Secret at run time
    known = {f"FAME_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= known, f"unknown settings: {sorted(set(env) - known)}"
    with pytest.MonkeyPatch.context() as patch:
        for key in [k for k in os.environ if k.startswith("FAME_")]:
            patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        settings = Settings()
    assert settings.drain_timeout_s > 0

"""Render the Helm chart with real Helm (v4 SDK), validate every manifest, check what matters."""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import typing
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from consumer.settings import Settings
from tests.deploy_support import helm_render
from tests.deploy_support.helm_render import HelmError, Rendering

VALUES = yaml.safe_load((helm_render.CHART_DIR / "values.yaml").read_text())
SCHEMA = json.loads((helm_render.CHART_DIR / "values.schema.json").read_text())

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
    "cpuOnly": {
        "gpu": {"count": 0},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml"}],
    },
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
        "consumer": {
            "fileRoots": ["/data/videos"],
            "allowedHosts": ["cdn.example.com", ".videos.example.org"],
            "allowedPrivateNetworks": ["10.0.5.0/24"],
        },
        "extraVolumes": [{"name": "videos", "persistentVolumeClaim": {"claimName": "videos"}}],
        "extraVolumeMounts": [{"name": "videos", "mountPath": "/data/videos", "readOnly": True}],
    },
    "tuned": {
        "consumer": {
            "workerMemoryLimitMb": 3072,
            "taskTimeoutSeconds": 45.5,
            "maxVideoBytes": 2 * 1024**3,
            "maxWaitMs": 2.5,
        },
        "extraEnv": [
            {"name": "FAME_HTTP_HOST", "value": "::"},
            {"name": "FAME_SAMPLE_FPS", "value": "4"},
        ],
        "probes": {"startup": {"initialDelaySeconds": 20, "timeoutSeconds": 5}},
        "tmp": {"sizeLimit": "6Gi"},
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


def _env(rendering: Rendering) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in _container(rendering).get("env", [])}


def test_cpu_only_pod_neither_sees_nor_tolerates_gpus(rendered: dict[str, Rendering]) -> None:
    """The CUDA image asks for every GPU (NVIDIA_VISIBLE_DEVICES=all); where nvidia is the
    node's default runtime, a pod without a GPU limit would get them all."""
    cpu_only = rendered["cpuOnly"]
    assert _env(cpu_only)["NVIDIA_VISIBLE_DEVICES"] == {
        "name": "NVIDIA_VISIBLE_DEVICES",
        "value": "void",
    }
    assert _pod_spec(cpu_only)["tolerations"] == SCENARIOS["cpuOnly"]["tolerations"]
    gpu = rendered["defaults"]
    assert "NVIDIA_VISIBLE_DEVICES" not in _env(gpu)  # the device plugin sets it
    assert _pod_spec(gpu)["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_probes_hit_health_and_readiness(rendered: dict[str, Rendering]) -> None:
    container = _container(rendered["defaults"])
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_every_probe_field_the_schema_accepts_is_rendered() -> None:
    fields = sorted(SCHEMA["definitions"]["probe"]["properties"])
    probes = {
        probe: {field: 10 * number + offset for offset, field in enumerate(fields, start=1)}
        for number, probe in enumerate(["startup", "liveness", "readiness"], start=1)
    }
    container = _container(helm_render.render({"probes": probes}))
    for probe, timing in probes.items():
        rendered_probe = container[f"{probe}Probe"]
        assert {field: rendered_probe.get(field) for field in fields} == timing, probe


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
    settings = _service_settings(rendered["everything"])
    assert settings.allowed_hosts == ["cdn.example.com", ".videos.example.org"]
    assert settings.allowed_private_networks == ["10.0.5.0/24"]
    assert _service_settings(rendered["defaults"]).allowed_hosts is None  # []: any public host
    envfrom = _container(rendered["defaults"])["envFrom"]
    assert envfrom == [{"configMapRef": {"name": "fame-fame-consumer"}}]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("allowedHosts", ["https://cdn.example.com"]),
        ("allowedHosts", ["cdn.example.com:443"]),
        ("allowedPrivateNetworks", ["intranet"]),
    ],
)
def test_fetch_allowlists_the_service_would_refuse_are_refused_at_install(
    key: str, value: list[str]
) -> None:
    with pytest.raises(HelmError, match=key):
        helm_render.render({"consumer": {key: value}})


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


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


@pytest.mark.parametrize("source_path", [VALUES["models"]["initContainer"]["sourcePath"], "/srv/m"])
def test_model_volume_from_init_container(source_path: str) -> None:
    """The copy reads the model image's own files and writes into the (empty) models volume,
    which therefore must not be mounted over them; the consumer mounts what was written."""
    values = copy.deepcopy(SCENARIOS["initContainerModels"])
    values["models"]["initContainer"]["sourcePath"] = source_path
    pod = _pod_spec(helm_render.render(values))
    (init,) = pod["initContainers"]
    assert init["image"] == "registry.example/fame-models:2026.11.1"
    assert init["envFrom"] == [{"secretRef": {"name": "model-store-credentials"}}]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["models"]
    shell, flag, script = init["command"]
    assert (shell, flag) == ("sh", "-c")
    cp, recursive, source, destination = shlex.split(script)
    assert (cp, recursive) == ("cp", "-R")
    volume_in_init = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}["models"]
    assert source == f"{source_path}/."
    assert destination.rstrip("/") == volume_in_init
    assert not _within(source_path, volume_in_init) and not _within(volume_in_init, source_path)
    consumer = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert consumer["models"] == VALUES["models"]["mountPath"]


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
    "gpu more than the service uses": (_with("gpu.count", 2), "maximum"),
    "sasl password literal": (_with("kafka.saslPassword", "hunter2"), "saslPassword"),
    "redis password literal": (_with("redis.password", "hunter2"), "password"),
    "token at top level": (_with("token", "abc"), "token"),
    "password in annotations": (_with("podAnnotations.db-password", "x"), "db-password"),
    "keda beyond partitions": (
        {"keda": {"enabled": True, "maxReplicaCount": 13}},
        "keda.maxReplicaCount (13) must not exceed kafka.partitions (12)",
    ),
    "hpa beyond partitions": (
        {"autoscaling": {"enabled": True, "maxReplicas": 24}},
        "autoscaling.maxReplicas (24) must not exceed kafka.partitions (12)",
    ),
    "replicas beyond partitions": (
        {"kafka": {"partitions": 3}, "replicaCount": 4},
        "replicaCount (4) must not exceed kafka.partitions (3)",
    ),
    "keda beyond fewer partitions": (
        {"kafka": {"partitions": 3}, "keda": {"enabled": True}},
        "keda.maxReplicaCount (4) must not exceed kafka.partitions (3)",
    ),
    "hpa beyond fewer partitions": (
        {"kafka": {"partitions": 3}, "autoscaling": {"enabled": True}},
        "autoscaling.maxReplicas (4) must not exceed kafka.partitions (3)",
    ),
    "verdicts on the events topic": (
        _with("kafka.topics.verdicts", "fame.video-events"),
        "must be three different topics",
    ),
    "dead letters on the verdicts topic": (
        _with("kafka.topics.deadLetters", "fame.verdicts"),
        "must be three different topics",
    ),
    "extraEnv overriding a chart value": (
        _with("extraEnv", [{"name": "FAME_MAX_BATCH", "value": "9999"}]),
        "extraEnv: FAME_MAX_BATCH is set by the chart",
    ),
    "extraEnv overriding a conditional chart value": (
        _with("extraEnv", [{"name": "FAME_WORKER_MEMORY_LIMIT_MB", "value": "1024"}]),
        "extraEnv: FAME_WORKER_MEMORY_LIMIT_MB is set by the chart",
    ),
    "extraEnv listing a name twice": (
        _with("extraEnv", [{"name": "FAME_HTTP_HOST", "value": h} for h in ("::", "0.0.0.0")]),
        "extraEnv: FAME_HTTP_HOST is listed twice",
    ),
    "extraEnv not a service setting": (
        _with("extraEnv", [{"name": "LD_PRELOAD", "value": "/tmp/x.so"}]),
        "/extraEnv/0/name",
    ),
    "extraEnv credential literal": (
        _with("extraEnv", [{"name": "FAME_REDIS_PASSWORD", "value": "hunter2"}]),
        "/extraEnv/0/name",
    ),
    "extraEnv secret ref": (
        _with("extraEnv", [{"name": "FAME_X", "valueFrom": {"secretKeyRef": {}}}]),
        "valueFrom",
    ),
    "cpu request in other units": (_with("resources.requests.cpu", "2Gi"), "resources cpu"),
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


def _service_settings(rendering: Rendering) -> Settings:
    """The settings a pod of this rendering starts with (pydantic raises where it would not)."""
    env = dict(rendering.one("ConfigMap")["data"])
    for item in _container(rendering).get("env", []):
        if item["name"].startswith("FAME_"):
            # a literal value, or one that comes from a Secret at run time
            env[item["name"]] = item.get("value", "from-secret")
    known = {f"FAME_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= known, f"unknown settings: {sorted(set(env) - known)}"
    with pytest.MonkeyPatch.context() as patch:
        for key in [k for k in os.environ if k.startswith("FAME_")]:
            patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        return Settings()


@pytest.mark.parametrize("scenario", ["defaults", "saslTls", "everything", "tuned"])
def test_chart_environment_is_a_valid_service_configuration(
    rendered: dict[str, Rendering], scenario: str
) -> None:
    """Every FAME_* variable the chart sets is a real setting and the whole set validates, so
    a pod never crash-loops on configuration the chart itself wrote."""
    settings = _service_settings(rendered[scenario])
    assert settings.drain_timeout_s > 0


def test_replica_bounds_of_a_disabled_autoscaler_are_not_checked() -> None:
    """keda.maxReplicaCount and autoscaling.maxReplicas (4 by default) only matter when on."""
    rendering = helm_render.render({"kafka": {"partitions": 3}})
    assert rendering.one("Deployment")["spec"]["replicas"] == 1
    helm_render.render(
        {"kafka": {"partitions": 3}, "keda": {"enabled": True, "maxReplicaCount": 3}}
    )


def test_typed_settings_and_extra_env_reach_the_service(rendered: dict[str, Rendering]) -> None:
    settings = _service_settings(rendered["tuned"])
    assert settings.worker_memory_limit_mb == 3072
    assert settings.task_timeout_s == 45.5
    assert settings.max_video_bytes == 2 * 1024**3
    assert settings.max_wait_ms == 2.5
    assert settings.http_host == "::"
    assert settings.sample_fps == 4
    defaults = rendered["defaults"].one("ConfigMap")["data"]
    assert "FAME_WORKER_MEMORY_LIMIT_MB" not in defaults  # null: no cap of its own
    assert defaults["FAME_MAX_VIDEO_BYTES"] == str(512 * 1024**2)
    assert defaults["FAME_TASK_TIMEOUT_S"] == "120"
    assert defaults["FAME_WINDOW_TTL_S"] == str(Settings.model_fields["window_ttl_s"].default)


# consumer.* numbers of the chart and the setting each one becomes.
CONSUMER_SETTINGS = {
    "drainTimeoutSeconds": "drain_timeout_s",
    "maxInFlight": "max_in_flight",
    "maxBatch": "max_batch",
    "maxWaitMs": "max_wait_ms",
    "maxVerdictTracks": "max_verdict_tracks",
    "windowTtlSeconds": "window_ttl_s",
    "workers": "workers",
    "detectEvery": "detect_every",
    "detectBatch": "detect_batch",
    "detectSize": "detect_size",
    "detectorThreads": "detector_threads",
    "maxVideoBytes": "max_video_bytes",
    "taskTimeoutSeconds": "task_timeout_s",
    "workerMemoryLimitMb": "worker_memory_limit_mb",
    "httpPort": "http_port",
}
CHART_ONLY = {"shutdownMarginSeconds"}  # no setting: part of the pod's grace period
# Where the chart accepts less than the service, on purpose.
NARROWED = {
    "drainTimeoutSeconds": "whole seconds, 1-3600: it sets the pod's grace period",
    "httpPort": "0 (any free port) cannot be probed",
}


def _schema_of(key: str) -> dict[str, Any]:
    node: dict[str, Any] = SCHEMA["properties"]["consumer"]["properties"][key]
    while "$ref" in node:
        node = SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    return node


# pydantic's annotated_types constraints, by the JSON Schema keyword that says the same.
CONSTRAINTS = {
    "ge": "minimum",
    "le": "maximum",
    "gt": "exclusiveMinimum",
    "lt": "exclusiveMaximum",
    "multiple_of": "multipleOf",
}


def _field_bounds(name: str) -> dict[str, Any]:
    """A setting's Field constraints in JSON Schema words, and its JSON type."""
    info = Settings.model_fields[name]
    bounds = {
        word: getattr(item, attr)
        for item in info.metadata
        for attr, word in CONSTRAINTS.items()
        if hasattr(item, attr)
    }
    annotation = info.annotation
    python_types = {annotation, *typing.get_args(annotation)}  # int | None: int
    (kind,) = {
        json for python, json in [(int, "integer"), (float, "number")] if python in python_types
    }
    return {"type": kind, **bounds}


def _json_types(key: str) -> set[str]:
    kind = _schema_of(key).get("type", [])  # an enum has none
    return {kind} if isinstance(kind, str) else set(kind)


def _schema_bounds(key: str) -> dict[str, Any]:
    node = _schema_of(key)
    (kind,) = _json_types(key) - {"null"}
    words = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
    return {"type": kind, **{word: node[word] for word in words if word in node}}


def test_every_numeric_consumer_value_maps_to_a_setting() -> None:
    properties = SCHEMA["properties"]["consumer"]["properties"]
    numeric = {key for key in properties if _json_types(key) & {"integer", "number"}}
    assert numeric - CHART_ONLY == set(CONSUMER_SETTINGS)
    everything = {key: _schema_bounds(key).get("minimum", 1) for key in CONSUMER_SETTINGS}
    everything["taskTimeoutSeconds"] = 30
    everything["workerMemoryLimitMb"] = 512
    data = helm_render.render({"consumer": everything}).one("ConfigMap")["data"]
    for name in CONSUMER_SETTINGS.values():
        assert f"FAME_{name.upper()}" in data, name


@pytest.mark.parametrize("key", sorted(CONSUMER_SETTINGS))
def test_schema_bounds_agree_with_the_service(key: str) -> None:
    """values.schema.json must never accept a number consumer/settings.py refuses at startup
    (the pod would crash-loop), and should not refuse one it accepts."""
    schema, field = _schema_bounds(key), _field_bounds(CONSUMER_SETTINGS[key])
    if key not in NARROWED:
        assert schema == field
        return
    assert schema["type"] == field["type"] or schema["type"] == "integer"
    assert schema.get("minimum", -1e18) >= field.get("minimum", -1e18)
    assert schema.get("maximum", 1e18) <= field.get("maximum", 1e18)


def _boundaries(key: str) -> tuple[list[float], list[float]]:
    """Values at the schema's edges (accepted) and just beyond them (refused)."""
    bounds = _schema_bounds(key)
    step = 1 if bounds["type"] == "integer" else 0.5
    step = bounds.get("multipleOf", step)
    accepted: list[float] = []
    refused: list[float] = []
    if "minimum" in bounds:
        accepted.append(bounds["minimum"])
        refused.append(bounds["minimum"] - step)
    if "exclusiveMinimum" in bounds:
        accepted.append(bounds["exclusiveMinimum"] + step)
        refused.append(bounds["exclusiveMinimum"])
    if "maximum" in bounds:
        accepted.append(bounds["maximum"])
        refused.append(bounds["maximum"] + step)
    return accepted, refused


@pytest.mark.parametrize("key", sorted(CONSUMER_SETTINGS))
def test_boundary_values_render_and_start(key: str) -> None:
    accepted, refused = _boundaries(key)
    assert accepted, key
    for value in accepted:
        _service_settings(helm_render.render(_with(f"consumer.{key}", value)))
    for value in refused:
        with pytest.raises(HelmError, match=key):
            helm_render.render(_with(f"consumer.{key}", value))


def _service_accepts(**fields: Any) -> bool:
    try:
        Settings(**fields)
    except ValueError:
        return False
    return True


def _chart_accepts(values: dict[str, Any]) -> bool:
    try:
        helm_render.render(values)
    except HelmError:
        return False
    return True


@pytest.mark.parametrize(
    ("servers", "valid"),
    [
        ("kafka:9092", True),
        ("b-1.kafka.example:9096,b-2.kafka.example:9096", True),
        ("10.0.0.5:9092,[fd00::5]:9092", True),
        ("SASL_SSL://b-1:9096", False),
        ("kafka:123456", False),
        ("kafka", False),
        ("kafka:9092,", False),
        ("[fd00::5:9092", False),
    ],
)
def test_bootstrap_servers_as_the_service_reads_them(servers: str, valid: bool) -> None:
    assert _service_accepts(kafka_bootstrap_servers=servers) is valid
    assert _chart_accepts(_with("kafka.bootstrapServers", servers)) is valid


@pytest.mark.parametrize(
    ("url", "valid"),
    [
        ("redis://redis:6379/0", True),
        ("redis://fame@redis:6379/0", True),  # a Redis ACL user; the password from the Secret
        ("rediss://redis.example:6380/0?ssl_ca_certs=/etc/redis/ca.crt", True),
        ("redis://[fd00::6]:6379", True),
        ("unix:///run/redis/redis.sock?db=0", True),
        ("redis://fame:hunter2@redis:6379/0", False),  # a password literal
        ("redis://:hunter2@redis:6379/0", False),
        ("rediss://redis:6380/0?password=hunter2", False),
        ("http://redis:6379/0", False),
    ],
)
def test_redis_urls_the_service_accepts_without_credentials(url: str, valid: bool) -> None:
    """Every URL the chart accepts starts the service; it refuses only passwords in the URL."""
    if valid:
        assert _service_accepts(redis_url=url)
    assert _chart_accepts(_with("redis.url", url)) is valid


@pytest.mark.parametrize(
    ("resources", "workers", "threads"),
    [
        ({"requests": {"cpu": "4"}}, 2, 2),
        ({"requests": {"cpu": 4}}, 2, 2),
        ({"requests": {"cpu": "3500m"}}, 2, 1),
        ({"requests": {"cpu": "3500m"}}, 1, 3),
        ({"requests": {"cpu": 0.5}}, 2, 1),  # at least one thread
        ({"requests": {"cpu": "192"}}, 2, 64),  # at most the service's 64
        ({"requests": {"cpu": None}, "limits": {"cpu": "8"}}, 4, 2),  # request = limit
        ({"requests": {"cpu": None}}, 2, 0),  # unknown share: the service's own default
    ],
)
def test_detector_threads_follow_the_cpu_request(
    resources: dict[str, Any], workers: int, threads: int
) -> None:
    """The pod sees every core of the node: 0 would give each worker cores / workers threads."""
    rendering = helm_render.render({"resources": resources, "consumer": {"workers": workers}})
    assert rendering.one("ConfigMap")["data"]["FAME_DETECTOR_THREADS"] == str(threads)
    explicit = helm_render.render({"resources": resources, "consumer": {"detectorThreads": 5}})
    assert explicit.one("ConfigMap")["data"]["FAME_DETECTOR_THREADS"] == "5"


def test_extra_env_follows_the_chart_env(rendered: dict[str, Rendering]) -> None:
    env = _container(rendered["tuned"])["env"]
    assert env == [
        {"name": "FAME_HTTP_HOST", "value": "::"},
        {"name": "FAME_SAMPLE_FPS", "value": "4"},
    ]


_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def _bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"([0-9.]+)([KMGT]i)?", quantity).groups()  # type: ignore[union-attr]
    return int(Decimal(number) * _BINARY.get(unit or "", 1))


def test_tmp_holds_every_worker_download() -> None:
    """Each front-end worker downloads one video at a time into /tmp (an emptyDir whose limit
    evicts the pod): the defaults must leave room for all of them and the libraries' caches."""
    consumer = VALUES["consumer"]
    downloads = consumer["workers"] * consumer["maxVideoBytes"]
    headroom = 512 * 2**20
    assert downloads + headroom <= _bytes(VALUES["tmp"]["sizeLimit"])

"""Render the chart with the real Helm v4 SDK (helm-python-sdk) and validate what comes out.

Rendering goes through Helm's own engine, so values.schema.json, `fail` and every template
function behave exactly as in `helm template`; no cluster is contacted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "deploy" / "helm" / "fame-consumer"
CRD_SCHEMA_DIR = REPO_ROOT / "deploy" / "helm" / "crd-schemas"
KUBERNETES_VERSION = "1.30.0"
RELEASE_NAME = "fame"
NAMESPACE = "moderation"

CRD_SCHEMA_FILES: dict[tuple[str, str], str] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.monitoring.coreos.com_v1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.keda.sh_v1alpha1.json",
}

HelmError = helm_python.HelmError
ManifestInvalid = (jsonschema.ValidationError, kubernetes_validate.ValidationError)


@dataclass(frozen=True)
class Rendering:
    """Manifests of one `helm template` run, plus NOTES.txt (which is not a manifest)."""

    manifests: list[dict[str, Any]]
    notes: str

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.manifests if m["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.of_kind(kind)
        if len(found) != 1:
            raise LookupError(f"expected one {kind}, rendered {len(found)}")
        return found[0]


@cache
def _chart() -> helm_python.Chart:
    return helm_python.Chart.load(CHART_DIR)


def render(values: dict[str, Any] | None = None) -> Rendering:
    """Render with `values` over the chart defaults; raises HelmError when Helm refuses."""
    files = _chart().render(values or {}, name=RELEASE_NAME, namespace=NAMESPACE)
    manifests: list[dict[str, Any]] = []
    notes = ""
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        manifests.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return Rendering(manifests=manifests, notes=notes)


@cache
def _crd_schema(file_name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CRD_SCHEMA_DIR / file_name).read_text())
    return schema


def validate_manifest(manifest: dict[str, Any]) -> None:
    """Strict Kubernetes OpenAPI validation, or the vendored CRD schema for custom kinds.

    Raises jsonschema / kubernetes_validate errors naming the object and the bad field.
    """
    key = (manifest["apiVersion"], manifest["kind"])
    if key in CRD_SCHEMA_FILES:
        jsonschema.Draft7Validator(_crd_schema(CRD_SCHEMA_FILES[key])).validate(manifest)
        return
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def lint() -> dict[str, Any]:
    """`helm lint --strict` of the chart against the Kubernetes version the tests validate."""
    report: dict[str, Any] = helm_python.lint(
        CHART_DIR, strict=True, kube_version=f"v{KUBERNETES_VERSION}"
    )
    return report

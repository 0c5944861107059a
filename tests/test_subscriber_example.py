"""The results-topic subscriber example: validation and dedupe, without Kafka."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "schemas" / "examples"


@pytest.fixture(scope="module")
def subscriber() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "subscriber", REPO_ROOT / "examples/subscriber.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EXAMPLES / f"attribution_verdict_{name}.json").read_text())
    return loaded


def _raw(verdict: dict[str, Any]) -> bytes:
    return json.dumps(verdict).encode()


def test_new_then_duplicate(subscriber: ModuleType) -> None:
    verdicts = subscriber.VerdictFilter(subscriber.load_verdict_schema())
    first = verdicts.check(_raw(_example("attributed")))
    assert first.kind == "new"
    assert first.verdict["verdict_id"] == _example("attributed")["verdict_id"]
    assert verdicts.check(_raw(_example("attributed"))).kind == "duplicate"
    assert verdicts.check(_raw(_example("no_face"))).kind == "new"


def test_a_real_verdict_replaces_a_failed_one_never_the_reverse(subscriber: ModuleType) -> None:
    """docs/integration.md: a replay or redelivery that succeeds brings the real verdict under
    the failed attempt's id."""
    verdicts = subscriber.VerdictFilter(subscriber.load_verdict_schema())
    failed = _example("failed")
    real = {**_example("attributed"), "verdict_id": failed["verdict_id"]}
    assert verdicts.check(_raw(failed)).kind == "new"
    assert verdicts.check(_raw(failed)).kind == "duplicate"
    assert verdicts.check(_raw(real)).kind == "new"
    assert verdicts.check(_raw(failed)).kind == "duplicate"
    assert verdicts.check(_raw(real)).kind == "duplicate"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda v: v.pop("verdict_id"), "verdict_id"),
        (lambda v: v.update(status="maybe"), "status"),
        (lambda v: v.update(confidence=1.5), "confidence"),
        (lambda v: v.update(error={"code": "model_error", "message": "x"}), "error"),
        (lambda v: v.update(password="hunter2"), "password"),
    ],
)
def test_invalid_verdicts_are_parked_and_not_remembered(
    subscriber: ModuleType, mutate: Any, reason: str
) -> None:
    verdicts = subscriber.VerdictFilter(subscriber.load_verdict_schema())
    broken = copy.deepcopy(_example("attributed"))
    mutate(broken)
    outcome = verdicts.check(_raw(broken))
    assert outcome.kind == "invalid"
    assert reason in outcome.reason
    assert verdicts.check(_raw(_example("attributed"))).kind == "new"


def test_non_json_is_invalid(subscriber: ModuleType) -> None:
    verdicts = subscriber.VerdictFilter(subscriber.load_verdict_schema())
    assert verdicts.check(b"\xff{not json").kind == "invalid"


def test_memory_is_bounded(subscriber: ModuleType) -> None:
    verdicts = subscriber.VerdictFilter(subscriber.load_verdict_schema(), max_remembered=1)
    assert verdicts.check(_raw(_example("attributed"))).kind == "new"
    assert verdicts.check(_raw(_example("no_face"))).kind == "new"
    assert verdicts.check(_raw(_example("attributed"))).kind == "new"
    with pytest.raises(ValueError, match="max_remembered"):
        subscriber.VerdictFilter(subscriber.load_verdict_schema(), max_remembered=0)


def test_moderation_actions(subscriber: ModuleType) -> None:
    attributed = _example("attributed")
    assert subscriber.moderation_action(attributed) == "review_manipulated"
    assert subscriber.moderation_action({**attributed, "manipulated": False}) == "allow"
    unknown = {**attributed, "unknown_generator": True}
    assert subscriber.moderation_action(unknown) == "escalate_unknown_generator"
    assert subscriber.moderation_action(_example("no_face")) == "no_face"
    failed = _example("failed")
    for code, action in [
        ("retries_exhausted", "retry"),
        ("corrupt_stream", "not_assessable"),
        ("fetch_failed", "not_assessable"),
        ("model_error", "alert_operators"),
        ("internal_error", "alert_operators"),
    ]:
        verdict = {**failed, "error": {**failed["error"], "code": code}}
        assert subscriber.moderation_action(verdict) == action, code


def test_help_describes_the_example_in_a_whole_sentence(
    subscriber: ModuleType, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit):
        subscriber._parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "drop redeliveries by `verdict_id`, and map the verdict to a moderation action." in (
        help_text
    )
    assert "(default: fame-verdict-subscriber)" in help_text

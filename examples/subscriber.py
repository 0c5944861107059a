"""Results-topic subscriber: validate each verdict against the published contract, drop
redeliveries by `verdict_id`, and map the verdict to a moderation action.

The service delivers verdicts at least once: after a crash or a rebalance the same verdict (same
`verdict_id`, derived from event id + model version) can arrive again. A real moderation system
dedupes in its own store (an upsert keyed by `verdict_id`); this example keeps a bounded in-memory
set, which is enough for one process.

    python examples/subscriber.py --bootstrap-servers localhost:9092 --group-id moderation
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import OrderedDict
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import jsonschema

VERDICT_SCHEMA_FILE = "json/attribution_verdict.schema.json"
DEFAULT_MAX_REMEMBERED = 100_000

OutcomeKind = Literal["new", "duplicate", "invalid"]
Action = Literal[
    "allow",
    "review_manipulated",
    "escalate_unknown_generator",
    "no_face",
    "retry",
    "not_assessable",
    "alert_operators",
]
OPERATOR_CODES = frozenset({"model_error", "model_missing", "internal_error"})


@dataclass(frozen=True)
class Outcome:
    """What to do with one record: process a new verdict, skip a duplicate, park an invalid one."""

    kind: OutcomeKind
    verdict: dict[str, Any] | None = None
    reason: str | None = None


def load_verdict_schema() -> dict[str, Any]:
    """The JSON Schema shipped in the `schemas` package (schemas/json/)."""
    text = resources.files("schemas").joinpath(VERDICT_SCHEMA_FILE).read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


class VerdictFilter:
    """Validates raw records and remembers the last `max_remembered` verdict ids.

    Only valid verdicts are remembered, so an invalid record never hides a later valid one. A
    verdict that is not `failed` replaces a remembered `failed` one with the same id (a replay or
    redelivery that succeeded); never the other way round.
    """

    def __init__(self, schema: dict[str, Any], max_remembered: int = DEFAULT_MAX_REMEMBERED):
        if max_remembered < 1:
            raise ValueError(f"max_remembered must be >= 1, got {max_remembered}")
        validator_class = jsonschema.validators.validator_for(schema)
        validator_class.check_schema(schema)
        self._validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
        self._seen: OrderedDict[str, bool] = OrderedDict()  # verdict id -> it was `failed`
        self._max_remembered = max_remembered

    def check(self, raw: bytes) -> Outcome:
        try:
            verdict = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return Outcome("invalid", reason=f"not JSON: {exc}")
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(verdict))
        if error is not None:
            where = "/".join(str(part) for part in error.absolute_path) or "<root>"
            return Outcome("invalid", reason=f"{where}: {error.message}")
        verdict_id, failed = verdict["verdict_id"], verdict["status"] == "failed"
        if verdict_id in self._seen:
            self._seen.move_to_end(verdict_id)
            if failed or not self._seen[verdict_id]:
                return Outcome("duplicate", verdict=verdict)
        self._seen[verdict_id] = failed
        if len(self._seen) > self._max_remembered:
            self._seen.popitem(last=False)
        return Outcome("new", verdict=verdict)


def moderation_action(verdict: dict[str, Any]) -> Action:
    """The policy of docs/integration.md ("Acting on verdicts"), as code."""
    status = verdict["status"]
    if status == "failed":
        code = verdict["error"]["code"]
        if code == "retries_exhausted":
            return "retry"  # transient failures outlasted the retries: resubmit later
        return "alert_operators" if code in OPERATOR_CODES else "not_assessable"
    if status == "no_face":
        return "no_face"
    if verdict["unknown_generator"]:
        return "escalate_unknown_generator"
    return "review_manipulated" if verdict["manipulated"] else "allow"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),  # the docstring's first paragraph
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("FAME_KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
        help="Kafka brokers, comma-separated (env: FAME_KAFKA_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument(
        "--topic",
        default=os.environ.get("FAME_VERDICTS_TOPIC", "fame.verdicts"),
        help="the results topic (env: FAME_VERDICTS_TOPIC)",
    )
    parser.add_argument("--group-id", default="fame-verdict-subscriber", help="consumer group")
    parser.add_argument(
        "--max-remembered",
        type=int,
        default=DEFAULT_MAX_REMEMBERED,
        help="verdict ids remembered for dedupe",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from kafka import KafkaConsumer

    args = _parse_args(argv)
    verdicts = VerdictFilter(load_verdict_schema(), args.max_remembered)
    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap_servers.split(","),
        group_id=args.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        while True:
            for records in consumer.poll(timeout_ms=1000).values():
                for record in records:
                    outcome = verdicts.check(record.value)
                    line: dict[str, Any] = {"outcome": outcome.kind, "offset": record.offset}
                    if outcome.verdict is not None:
                        line["verdict_id"] = outcome.verdict["verdict_id"]
                        line["video_id"] = outcome.verdict["video_id"]
                        line["action"] = moderation_action(outcome.verdict)
                    if outcome.reason is not None:
                        line["reason"] = outcome.reason
                    print(json.dumps(line), flush=True)
            # Commit only after the batch was handled: a crash re-reads it, and dedupe absorbs it.
            consumer.commit()
    except KeyboardInterrupt:
        return 0
    finally:
        consumer.close()


if __name__ == "__main__":
    sys.exit(main())

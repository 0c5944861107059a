"""Write the JSON Schema files subscribers build against, or check that they are current.

``python -m schemas.export`` rewrites ``schemas/json/*.schema.json``; ``--check`` writes nothing
and exits 1 listing the stale files (CI runs it, so a model change without a re-export fails).
Outputs (verdicts, dead letters) are exported in serialization mode, where every field is
required because the service always writes every field; inputs in validation mode, where fields
with defaults may be omitted.
"""

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from schemas.base import SCHEMA_VERSION
from schemas.dead_letter import DeadLetter
from schemas.event import VideoEvent
from schemas.verdict import AttributionVerdict

JSON_DIR: Final = Path(__file__).resolve().parent / "json"
DRAFT_2020_12: Final = "https://json-schema.org/draft/2020-12/schema"
EXPORTS: Final[dict[str, tuple[type[BaseModel], JsonSchemaMode]]] = {
    "video_event": (VideoEvent, "validation"),
    "attribution_verdict": (AttributionVerdict, "serialization"),
    "dead_letter": (DeadLetter, "serialization"),
}


def schema_path(name: str, directory: Path = JSON_DIR) -> Path:
    return directory / f"{name}.schema.json"


def render(name: str) -> str:
    """The exact file text for one export: sorted keys, two-space indent, trailing newline."""
    model, mode = EXPORTS[name]
    schema = model.model_json_schema(mode=mode)
    schema["$schema"] = DRAFT_2020_12
    schema["$id"] = f"urn:fame-stream:schema:{name}:{SCHEMA_VERSION}"
    schema["title"] = model.__name__
    schema["description"] = model.__doc__.strip() if model.__doc__ else model.__name__
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def stale_files(directory: Path = JSON_DIR) -> list[Path]:
    """Exported files that are missing or differ from what the models render now."""
    return [
        schema_path(name, directory)
        for name in EXPORTS
        if not schema_path(name, directory).is_file()
        or schema_path(name, directory).read_text(encoding="utf-8") != render(name)
    ]


def write_all(directory: Path = JSON_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in EXPORTS:
        path = schema_path(name, directory)
        path.write_text(render(name), encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m schemas.export", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 listing stale files"
    )
    parser.add_argument(
        "--dir", type=Path, default=JSON_DIR, help=f"output folder (default {JSON_DIR})"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.dir)
        for path in stale:
            print(f"stale: {path} (run `python -m schemas.export`)", file=sys.stderr)
        return 1 if stale else 0
    for path in write_all(args.dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

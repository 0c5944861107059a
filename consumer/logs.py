"""JSON log lines: one object per record, with event/video ids when the caller has them."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime

_CONTEXT_KEYS = ("event_id", "video_id", "segment_index", "partition", "offset")
_on_stderr = False  # what `configure` chose last


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _CONTEXT_KEYS:
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str, stderr: bool = False) -> None:
    """Route every logger through one JSON handler: on standard output (the container's log
    stream), or on standard error where standard output carries data (the embedded mode)."""
    global _on_stderr
    _on_stderr = stderr
    handler = logging.StreamHandler(sys.stderr if stderr else sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("kafka").setLevel(max(logging.WARNING, root.level))


def child_setup(level: str) -> Callable[[], None]:
    """This process's configuration, picklable, for its worker processes to apply."""
    return functools.partial(configure, level, _on_stderr)

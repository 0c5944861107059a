"""Typed failures of the model library.

Two families with meaning for the caller (the streaming service retries one, dead-letters the
other): `TransientError` — the same input may succeed later (network blip, timeout under load);
`PoisonError` — the input itself is bad and retrying is pointless. Each carries a stable
`ErrorCode` that ends up in the `DeadLetter`. Foreign exceptions are wrapped with
``raise ... from``.
"""

from __future__ import annotations

from schemas.errors import ErrorCode


class FameError(Exception):
    """Base of every error the library raises on purpose; `code` is the dead-letter code."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR
    transient: bool = False

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return f"[{self.code.value}] {self.message}"


class PoisonError(FameError):
    """The input is bad (hostile, corrupt, refused): dead-letter it, never retry."""


class TransientError(FameError):
    """A failure that may go away (network, timeout under load): retry with backoff first."""

    transient = True


class ModelMissingError(PoisonError):
    """A model file (detector, checkpoint) is not where the configuration says: a startup error."""

    code = ErrorCode.MODEL_MISSING

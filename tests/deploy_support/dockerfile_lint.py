"""A small Dockerfile parser and the hadolint-like rules the container tests apply.

No Docker engine exists on the CI machine, so the image is checked statically: the parser
understands line continuations, comments, parser directives, JSON (exec) and shell forms, build
stages and `ARG` defaults used in `FROM`. It is not a full BuildKit frontend (no heredocs, no
`${var:-default}` expansion beyond plain `${VAR}`), which the Dockerfile here does not use.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

SECRET_NAME = re.compile(r"(?i)(passw|secret|token|api_?key|credential|private_?key)")
BUILD_TOOLS = re.compile(r"\b(apt-get|apt|gcc|g\+\+|clang|make|build-essential|cmake)\b")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line_no: int

    def exec_form(self) -> list[str] | None:
        """The JSON array form of CMD/ENTRYPOINT/RUN, or None for the shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        parsed = json.loads(text)
        if not isinstance(parsed, list) or not all(isinstance(p, str) for p in parsed):
            raise ValueError(f"line {self.line_no}: exec form must be a JSON string list: {text}")
        return parsed

    def flags(self) -> dict[str, str]:
        """Leading `--name=value` flags (COPY --from, HEALTHCHECK --interval...)."""
        found: dict[str, str] = {}
        for token in shlex.split(self.args):
            if not token.startswith("--"):
                break
            name, _, value = token[2:].partition("=")
            found[name] = value
        return found


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass(frozen=True)
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage_names(self) -> set[str]:
        return {s.name for s in self.stages if s.name}


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash continuations; drop comments and blank lines (directives included)."""
    lines: list[tuple[int, str]] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buffer):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1].strip())
            continue
        buffer.append(stripped)
        lines.append((start, " ".join(part for part in buffer if part)))
        buffer = []
    if buffer:
        raise ValueError(f"line {start}: continuation runs past the end of the file")
    return lines


def _expand(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), value)


def parse(text: str) -> Dockerfile:
    """Parse a Dockerfile; `FROM` bases have global `ARG` defaults expanded."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line_no, line in _logical_lines(text):
        keyword, _, args = line.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip(), line_no)
        if instruction.keyword == "FROM":
            words = [w for w in instruction.args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=_expand(words[0], global_args), name=name))
        elif not stages and instruction.keyword == "ARG":
            if "=" in instruction.args:
                name, _, default = instruction.args.partition("=")
                global_args[name] = default.strip('"')
        elif not stages:
            raise ValueError(f"line {line_no}: {instruction.keyword} before the first FROM")
        else:
            stages[-1].instructions.append(instruction)
    if not stages:
        raise ValueError("no FROM instruction")
    return Dockerfile(global_args=global_args, stages=stages)


def load(path: Path) -> Dockerfile:
    return parse(path.read_text())


def _env_names(instruction: Instruction) -> list[str]:
    if "=" not in instruction.args.split()[0]:
        return [instruction.args.split()[0]]
    return [token.partition("=")[0] for token in shlex.split(instruction.args)]


def lint(dockerfile: Dockerfile) -> list[str]:
    """Rule violations as readable strings; an empty list means the file passes."""
    problems: list[str] = []
    names = dockerfile.stage_names()
    for stage in dockerfile.stages:
        base = stage.base
        if base not in names:
            if "$" in base:
                problems.append(f"FROM {base}: unresolved build argument")
            elif ":" not in base.rsplit("/", 1)[-1] and "@sha256:" not in base:
                problems.append(f"FROM {base}: base image without a pinned tag")
            elif base.endswith(":latest"):
                problems.append(f"FROM {base}: ':latest' is not a pin")
        for instruction in stage.instructions:
            problems.extend(_instruction_problems(instruction, names))
    problems.extend(_final_stage_problems(dockerfile))
    return problems


def _instruction_problems(instruction: Instruction, stage_names: set[str]) -> list[str]:
    where = f"line {instruction.line_no}"
    problems: list[str] = []
    if instruction.keyword == "ADD" and re.search(r"\bhttps?://", instruction.args):
        problems.append(f"{where}: ADD of a URL (download in RUN with a checksum instead)")
    if instruction.keyword in {"ENV", "ARG"}:
        for name in _env_names(instruction):
            if SECRET_NAME.search(name):
                problems.append(f"{where}: {instruction.keyword} {name} looks like a secret")
    if instruction.keyword == "COPY":
        source = instruction.flags().get("from")
        if source is not None and source not in stage_names and ":" not in source:
            problems.append(f"{where}: COPY --from={source} names no stage or image")
    return problems


def _final_stage_problems(dockerfile: Dockerfile) -> list[str]:
    final = dockerfile.final
    problems: list[str] = []
    users = final.of("USER")
    if not users:
        problems.append("final stage has no USER (runs as root)")
    elif users[-1].args.split(":")[0] in {"root", "0"}:
        problems.append(f"final stage USER {users[-1].args} is root")
    for run in final.of("RUN"):
        if BUILD_TOOLS.search(run.args):
            problems.append(f"line {run.line_no}: build tooling in the final stage: {run.args}")
    if not final.of("HEALTHCHECK"):
        problems.append("final stage has no HEALTHCHECK")
    entrypoints = final.of("ENTRYPOINT")
    if not entrypoints or entrypoints[-1].exec_form() is None:
        problems.append("final stage ENTRYPOINT missing or not in exec form")
    if not final.of("LABEL"):
        problems.append("final stage has no LABEL (OCI metadata)")
    return problems

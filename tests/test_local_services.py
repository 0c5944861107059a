"""`make services-up` survives leftovers: busy ports and stale pid files from an earlier run."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO_ROOT


def _script(name: str) -> ModuleType:
    """A script of deploy/local loaded as a module (they are not a package)."""
    path = REPO_ROOT / "deploy" / "local" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"local_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def services() -> ModuleType:
    return _script("services")


def test_a_busy_preferred_port_is_replaced_by_a_free_one(services: ModuleType) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        chosen = services.pick_port(port, set())
        assert chosen != port
        assert services.port_is_free(chosen)
    assert services.pick_port(port, set()) == port  # free again: preferred wins


def test_ports_already_taken_by_this_run_are_not_reused(services: ModuleType) -> None:
    taken = {services.pick_port(19999, set())}
    assert services.pick_port(next(iter(taken)), taken) not in taken


def test_stale_and_live_pid_files_are_cleaned_up(
    services: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "STATE", tmp_path)
    (tmp_path / "gone.pid").write_text("999999999")  # no such process
    services.stop_pidfile("gone")
    assert not (tmp_path / "gone.pid").exists()

    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    (tmp_path / "leftover.pid").write_text(str(leftover.pid))
    services.stop_pidfile("leftover")
    leftover.poll()  # reap it if stop_pidfile did not (it waits only for its own children)
    assert not Path(f"/proc/{leftover.pid}").exists(), "the leftover process was stopped"
    assert not (tmp_path / "leftover.pid").exists()


@pytest.fixture(scope="module")
def demo() -> ModuleType:
    return _script("demo")


def test_demo_verdicts_of_the_shipped_checkpoint_carry_a_caveat(
    demo: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make demo` once printed a real clip as MANIPULATED with nothing to say how little the
    shipped checkpoint can tell (docs/model_card.md)."""
    verdict = (
        REPO_ROOT / "schemas" / "examples" / "attribution_verdict_attributed.json"
    ).read_text()
    out = tmp_path / "verdicts.jsonl"
    out.write_text(verdict.replace("\n", " ") + "\n")
    demo.report(out, demo.SHIPPED_CHECKPOINT)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[-1].startswith("caveat:")
    assert "docs/model_card.md" in lines[-1]
    own = tmp_path / "mine.pt"
    own.touch()
    demo.report(out, own)
    assert len(capsys.readouterr().out.splitlines()) == 1  # someone's own model: no caveat

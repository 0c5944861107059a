"""`fame attribute`: one schema-valid AttributionVerdict per video, failures typed and non-zero."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from fame.cli import build_parser, main
from fame.commands.attribute import _video_input
from tests.consumer.service_support import assert_schema_valid


def test_attribute_prints_one_verdict_per_video(
    shared: Path,
    tiny_checkpoint: Path,
    detector: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    carphone = shared / "data" / "samples" / "carphone_pristine.mp4"
    code = main(
        [
            "attribute",
            str(carphone),
            str(text),
            "--checkpoint",
            str(tiny_checkpoint),
            "--detector",
            str(detector),
            "--json",
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    verdicts = [json.loads(line) for line in lines]
    assert code == 1, "one input failed"
    assert [v["status"] for v in verdicts] == ["attributed", "failed"]
    assert verdicts[0]["tracks"][0]["salient_frames"]
    assert verdicts[1]["error"]["code"] == "unsupported_format"
    # the message names the input, not the temporary copy the front end decoded
    assert str(text) in verdicts[1]["error"]["message"]
    assert "fetch-" not in verdicts[1]["error"]["message"]
    for verdict in verdicts:
        assert_schema_valid(verdict, "attribution_verdict")


def test_attribute_without_a_checkpoint_names_the_missing_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.pt"
    assert main(["attribute", "x.mp4", "--checkpoint", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err


def test_attribute_takes_a_file_uri_like_a_local_path(
    shared: Path,
    tiny_checkpoint: Path,
    detector: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A file:// URI's folder is an allowed file root, as a local path's is."""
    uri = (shared / "data" / "samples" / "carphone_pristine.mp4").resolve().as_uri()
    common = ["--checkpoint", str(tiny_checkpoint), "--detector", str(detector)]
    assert main(["attribute", uri, *common, "--json"]) == 0
    (verdict,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert verdict["status"] == "attributed"
    assert verdict["video_id"] == "carphone_pristine"
    assert main(["attribute", uri, *common]) == 0
    assert capsys.readouterr().out.startswith(f"{uri}: ")


def test_an_http_url_goes_through_the_fetch_policy_not_the_file_system(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "http://127.0.0.1:9/x.mp4"  # loopback, closed port: refused before any connection
    assert main(["attribute", url, "--checkpoint", str(tiny_checkpoint)]) == 1
    line = capsys.readouterr().out.strip()
    assert re.match(rf"{re.escape(url)}: failed \[fetch_(refused|failed)\] ", line), line
    assert "http:/127" not in line  # once mangled into a local path
    assert main(["attribute", url, "--checkpoint", str(tiny_checkpoint), "--json"]) == 1
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["status"] == "failed"
    assert verdict["error"]["code"] in ("fetch_refused", "fetch_failed")
    assert_schema_valid(verdict, "attribution_verdict")


def test_an_http_input_has_no_file_root() -> None:
    video = _video_input("https://example.com/clip.mp4")
    assert video.file_root is None and video.stem == "clip"


def test_a_file_that_is_not_a_checkpoint_is_named_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64))
    assert main(["attribute", "x.mp4", "--checkpoint", str(fake)]) == 2
    err = capsys.readouterr().err
    assert f"{fake} is not a FAME checkpoint" in err
    assert len(err) < 300  # not torch's unpickler essay


def _subcommand_parsers(
    parser: argparse.ArgumentParser, prefix: str = "fame"
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((f"{prefix} {name}", sub))
                found += _subcommand_parsers(sub, f"{prefix} {name}")
    return found


def _help_blocks(text: str) -> dict[str, str]:
    """Option (its first option string) -> its help entry, joined over wrapped lines."""
    blocks: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if re.match(r"^  -", line):
            current = line.split()[0].rstrip(",")
            blocks[current] = line
        elif current is not None and line.startswith("   "):
            blocks[current] += " " + line.strip()
        else:
            current = None
    return blocks


def test_every_subcommand_help_shows_its_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    parsers = _subcommand_parsers(build_parser())
    assert {"fame attribute", "fame train", "fame synth build"} <= {name for name, _ in parsers}
    for name, parser in parsers:
        blocks = _help_blocks(parser.format_help())
        for action in parser._actions:
            default = action.default
            if not action.option_strings or any(
                default is skipped for skipped in (None, False, argparse.SUPPRESS)
            ):
                continue
            entry = blocks[action.option_strings[0]]
            assert "default" in entry, f"{name} {action.option_strings[0]}: {entry}"


@pytest.mark.parametrize(
    ("option", "good", "bad", "field"),
    [
        ("--detect-every", "3", "0", "detect_every"),
        ("--detect-size", "320", "300", "det_size"),
        ("--detect-batch", "4", "33", "detect_batch"),
    ],
    ids=["key-frame-detection", "smaller-detector-input", "batched-detection"],
)
def test_attribute_with_a_front_end_speed_lever(
    shared: Path,
    tiny_checkpoint: Path,
    detector: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    option: str,
    good: str,
    bad: str,
    field: str,
) -> None:
    from fame.faces import frontend

    configs: list[frontend.FrontEndConfig] = []
    real_init = frontend.FrontEnd.__init__

    def recording_init(self, config, *args, **kwargs):  # type: ignore[no-untyped-def]
        configs.append(config)
        real_init(self, config, *args, **kwargs)

    monkeypatch.setattr(frontend.FrontEnd, "__init__", recording_init)
    carphone = shared / "data" / "samples" / "carphone_pristine.mp4"
    common = ["attribute", str(carphone), "--checkpoint", str(tiny_checkpoint)]
    common += ["--detector", str(detector), "--json"]
    assert main([*common, option, good]) == 0
    assert [getattr(c, field) for c in configs] == [int(good)]  # it reaches the front end
    assert configs[0].sampling.refuse_longer  # a verdict is never on a video's first part only
    (verdict,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert verdict["status"] == "attributed"
    assert verdict["tracks"][0]["frames"] == 32  # every sampled frame still has its face
    with pytest.raises(SystemExit):
        main([*common, option, bad])


def test_usage_errors_exit_2_with_a_message_not_a_traceback(
    shared: Path,
    tiny_checkpoint: Path,
    detector: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    carphone = shared / "data" / "samples" / "carphone_pristine.mp4"
    common = ["--checkpoint", str(tiny_checkpoint), "--detector", str(detector)]
    assert main(["attribute", str(carphone), *common, "--stride", "99"]) == 2
    assert "stride must be in 1.." in capsys.readouterr().err
    missing = tmp_path / "no-cache"
    report = tmp_path / "r.json"
    code = main(
        [
            "evaluate",
            "--cache",
            str(missing),
            "--checkpoint",
            str(tiny_checkpoint),
            "--report",
            str(report),
        ]
    )
    assert code == 2
    assert capsys.readouterr().err.startswith("fame evaluate: error:")

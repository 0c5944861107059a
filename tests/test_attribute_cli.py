"""`fame attribute`: one schema-valid AttributionVerdict per video, failures typed and non-zero."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fame.cli import main
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
    for verdict in verdicts:
        assert_schema_valid(verdict, "attribution_verdict")


def test_attribute_without_a_checkpoint_names_the_missing_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.pt"
    assert main(["attribute", "x.mp4", "--checkpoint", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "good", "bad"),
    [("--detect-every", "3", "0"), ("--detect-size", "320", "300")],
    ids=["key-frame-detection", "smaller-detector-input"],
)
def test_attribute_with_a_front_end_speed_lever(
    shared: Path,
    tiny_checkpoint: Path,
    detector: Path,
    capsys: pytest.CaptureFixture[str],
    option: str,
    good: str,
    bad: str,
) -> None:
    carphone = shared / "data" / "samples" / "carphone_pristine.mp4"
    common = ["attribute", str(carphone), "--checkpoint", str(tiny_checkpoint)]
    common += ["--detector", str(detector), "--json"]
    assert main([*common, option, good]) == 0
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

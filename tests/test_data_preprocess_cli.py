"""`fame preprocess` end to end with the real face front end and the shared SCRFD detector."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fame.cli import main
from fame.data.cache import read_index, read_track


def test_preprocess_folder_layout_with_real_detector(
    shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data" / "real"
    data.mkdir(parents=True)
    (data / "id01_carphone.mp4").symlink_to(shared / "data/samples/carphone_pristine.mp4")
    detector = shared / "models" / "scrfd_500m_bnkps.onnx"
    cache = tmp_path / "cache"
    code = main(
        [
            "preprocess",
            "--data",
            str(tmp_path / "data"),
            "--layout",
            "folder",
            "--out",
            str(cache),
            "--detector",
            str(detector),
        ]
    )
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["tracks"] >= 1 and summary["rejected"] == {}
    record = read_index(cache)[0]
    assert (record.label, record.identities) == ("real", ("id01",))
    arrays = read_track(cache, record)
    assert arrays.crops.shape[1:] == (112, 112, 3)
    assert len(arrays.crops) == record.n_frames >= 4
    assert np.all(np.diff(arrays.frame_indices) > 0)

"""TorchScript and ONNX exports match eager outputs, at other batch sizes and clip lengths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fame.checkpoint import build_meta, save_checkpoint
from fame.cli import main
from fame.export import ONNX_FILE, TORCHSCRIPT_FILE, example_inputs, export_checkpoint
from fame.model import create_model


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = create_model("fame_tiny", 3).eval()
    folder = tmp_path_factory.mktemp("export")
    save_checkpoint(folder / "c.pt", model, build_meta(model, "fame_tiny", ["a", "b", "real"]))
    _, parity = export_checkpoint(folder / "c.pt", folder / "out")
    assert parity.torchscript_max_abs < 1e-5
    assert parity.onnx_max_abs < 1e-4
    return model, folder / "out"


def test_onnx_has_dynamic_batch_and_time(exported: tuple[torch.nn.Module, Path]) -> None:
    import onnxruntime

    model, out = exported
    session = onnxruntime.InferenceSession(str(out / ONNX_FILE), providers=["CPUExecutionProvider"])
    clips = torch.randn(5, 5, 3, 64, 64)
    mask = torch.ones(5, 5, dtype=torch.bool)
    mask[2, 3:] = False
    logits, attention = session.run(None, {"clips": clips.numpy(), "mask": mask.numpy()})
    with torch.no_grad():
        ref_logits, ref_attention = model(clips, mask)
    np.testing.assert_allclose(logits, ref_logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(attention, ref_attention.numpy(), atol=1e-5)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_keeps_the_split_api(exported: tuple[torch.nn.Module, Path]) -> None:
    model, out = exported
    scripted = torch.jit.load(str(out / TORCHSCRIPT_FILE))
    clips, mask = example_inputs(model, batch=4)
    with torch.no_grad():
        e = scripted.embed_frames(clips.flatten(0, 1)).view(4, clips.shape[1], -1)
        logits, attention = scripted.classify_embeddings(e, mask)
        ref_logits, ref_attention = model(clips, mask)
    torch.testing.assert_close(logits, ref_logits)
    torch.testing.assert_close(attention, ref_attention)
    assert json.loads((out / "meta.json").read_text())["classes"] == ["a", "b", "real"]


def test_export_command_reports_parity(
    exported: tuple[torch.nn.Module, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = exported
    code = main(["export", "--checkpoint", str(out.parent / "c.pt"), "--out", str(out / "cli")])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["parity_ok"]
    assert (out / "cli" / ONNX_FILE).is_file()

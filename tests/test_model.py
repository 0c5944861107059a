"""FAME and its baselines, generated over the model registry (tiny variants run the checks)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from fame.model import (
    FAME,
    MAX_EMBED_DIM,
    MODEL_REGISTRY,
    FAMEConfig,
    build_config,
    create_model,
    flops_per_frame,
    param_count,
)

TINY = sorted(name for name in MODEL_REGISTRY if name.endswith("_tiny"))


def _clip(model: FAME, batch: int = 3, seed: int = 0) -> torch.Tensor:
    c = model.config
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, c.clip_len, 3, c.img_size, c.img_size, generator=generator)


def _prefix_mask(batch: int, steps: int, lengths: list[int]) -> torch.Tensor:
    return torch.arange(steps).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)


@pytest.fixture(params=TINY)
def model(request: pytest.FixtureRequest) -> FAME:
    torch.manual_seed(0)
    return create_model(request.param, num_classes=4).eval()


def test_forward_backward_shapes(model: FAME) -> None:
    model.train()
    x = _clip(model).requires_grad_(True)
    logits, attention = model(x)
    assert logits.shape == (3, 4)
    assert attention.shape == (3, model.config.clip_len)
    logits.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.head.parameters())


def test_attention_sums_to_one_over_valid_frames(model: FAME) -> None:
    steps = model.config.clip_len
    mask = _prefix_mask(3, steps, [steps, 3, 1])
    with torch.no_grad():
        _, attention = model(_clip(model), mask)
    torch.testing.assert_close(attention.sum(dim=1), torch.ones(3))
    assert torch.all(attention[~mask] == 0)
    assert torch.all(attention[mask] > 0)


def test_padding_does_not_change_logits(model: FAME) -> None:
    steps = model.config.clip_len
    x = _clip(model)
    mask = _prefix_mask(3, steps, [steps, 5, 2])
    other = x.clone()
    other[~mask] = torch.randn(int((~mask).sum()), *x.shape[2:]) * 10
    with torch.no_grad():
        logits, attention = model(x, mask)
        logits_other, attention_other = model(other, mask)
        short_logits, _ = model(x[1:2, :5])
    torch.testing.assert_close(logits, logits_other)
    torch.testing.assert_close(attention, attention_other)
    torch.testing.assert_close(logits[1:2], short_logits, rtol=1e-4, atol=1e-5)


def test_embed_then_classify_equals_forward(model: FAME) -> None:
    x = _clip(model)
    mask = _prefix_mask(3, model.config.clip_len, [model.config.clip_len, 4, 2])
    with torch.no_grad():
        logits, attention = model(x, mask)
        e = model.embed_frames(x.flatten(0, 1)).view(3, model.config.clip_len, -1)
        split_logits, split_attention = model.classify_embeddings(e, mask)
    assert e.shape[-1] == model.config.embed_dim
    torch.testing.assert_close(split_logits, logits)
    torch.testing.assert_close(split_attention, attention)


def test_baselines_attend_uniformly() -> None:
    for name in ("fame_noattn_tiny", "cnn_mean_tiny"):
        model = create_model(name, 2).eval()
        mask = _prefix_mask(2, model.config.clip_len, [model.config.clip_len, 4])
        with torch.no_grad():
            _, attention = model(_clip(model, batch=2), mask)
        torch.testing.assert_close(attention[1, :4], torch.full((4,), 0.25))


def test_channels_last_gives_same_output(model: FAME) -> None:
    x = _clip(model)
    with torch.no_grad():
        reference, _ = model(x)
        cl_model = model.to(memory_format=torch.channels_last)
        frames = x.flatten(0, 1).contiguous(memory_format=torch.channels_last)
        e = cl_model.embed_frames(frames).view(3, model.config.clip_len, -1)
        logits, _ = cl_model.classify_embeddings(e)
    torch.testing.assert_close(logits, reference, rtol=1e-4, atol=1e-5)


def test_normalize_accepts_both_layouts() -> None:
    model = create_model("fame_tiny", 2)
    crops = np.random.default_rng(0).integers(0, 256, (2, 5, 64, 64, 3), dtype=np.uint8)
    hwc = model.normalize(crops)
    chw = model.normalize(torch.from_numpy(crops).permute(0, 1, 4, 2, 3))
    assert hwc.shape == (2, 5, 3, 64, 64)
    torch.testing.assert_close(hwc, chw)
    expected = (crops[0, 0, 3, 7, 1] / 255.0 - model.config.mean[1]) / model.config.std[1]
    assert float(hwc[0, 0, 1, 3, 7]) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        model.normalize(torch.zeros(1, 64, 64, 3))


def test_reset_classifier() -> None:
    model = create_model("fame_tiny", 3)
    model.reset_classifier(7)
    logits, _ = model(_clip(model, batch=1))
    assert logits.shape == (1, 7) and model.config.num_classes == 7


def test_default_config_fits_the_service_budget() -> None:
    config = build_config("fame", 5)
    assert (config.clip_len, config.img_size, config.levels) == (16, 112, (2, 3, 4))
    assert config.embed_dim == 768 <= MAX_EMBED_DIM
    assert config.temporal == "bilstm_attention"
    assert config.embed_dim * (config.clip_len - 1) * 2 <= 32 * 1024


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("level_dim", 512, "exceeds 1024"),
        ("levels", (2, 5), "levels"),
        ("vgg_cut", 6, "vgg_cut"),
        ("temporal", "gru", "temporal"),
        ("clip_len", 0, "clip_len"),
    ],
)
def test_config_rejects_bad_values(field: str, value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_config("fame_tiny", 3, **{field: value})


def test_config_roundtrips_through_dict() -> None:
    config = build_config("fame_noattn_tiny", 3)
    assert FAMEConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown"):
        FAMEConfig.from_dict({**config.to_dict(), "bogus": 1})


def test_num_classes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        create_model("fame_tiny", 0)


def test_unknown_model_name() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        create_model("resnet", 2)


def test_missing_imagenet_weights_warn_and_fall_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = dataclasses.replace(
        build_config("fame", 2, levels=(1, 2), vgg_cut=2), pretrained=str(tmp_path / "none.pth")
    )
    with caplog.at_level(logging.WARNING, logger="fame.model"):
        model = FAME(config)
    assert model.init_source == "random"
    assert "RANDOM init" in caplog.text


def test_imagenet_weights_are_loaded_from_a_local_file(tmp_path: Path) -> None:
    from torchvision.models.vgg import cfgs, make_layers

    features = make_layers(cfgs["E"])
    for p in features.parameters():
        torch.nn.init.constant_(p, 0.125)
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    model = FAME(build_config("fame", 2, levels=(1, 2), vgg_cut=2, pretrained=str(path)))
    assert model.init_source == f"imagenet:{path}"
    first_conv = model.encoder.stages[0][0]
    assert torch.all(first_conv.weight == 0.125)


def test_param_count_and_flops_of_tiny_model() -> None:
    config = build_config("fame_tiny", 3)
    model = FAME(config)
    assert param_count(model) == sum(p.numel() for p in model.parameters()) > 0
    flops = flops_per_frame(config)
    wide = flops_per_frame(dataclasses.replace(config, width_mult=0.25))
    assert 0 < flops < wide


def test_vgg19_block_cuts_with_and_without_batch_norm() -> None:
    from fame.model import _block_ends, _scaled_vgg19_cfg

    cfg = _scaled_vgg19_cfg(1.0)
    assert _block_ends(cfg, batch_norm=False) == (4, 9, 18, 27, 36)  # torchvision vgg19
    assert _block_ends(cfg, batch_norm=True) == (6, 13, 26, 39, 52)  # torchvision vgg19_bn


def test_batch_norm_variant_taps_the_same_blocks() -> None:
    config = build_config("fame_tiny", 3, batch_norm=True)
    model = FAME(config)
    stages = model.encoder.stages
    assert any(isinstance(layer, torch.nn.BatchNorm2d) for layer in stages[0])
    assert isinstance(stages[-1][-1], torch.nn.ReLU)  # each stage ends after its block's ReLU
    x = torch.randn(2, config.clip_len, 3, config.img_size, config.img_size)
    logits, attention = model(x)
    assert logits.shape == (2, 3) and attention.shape == (2, config.clip_len)

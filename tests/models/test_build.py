"""Model builders: published parameter counts with a 400-class head, logits out, GFLOPs per view."""
import pytest
import torch

from vmb.config import load_config
from vmb.config.defaults_model import ARCHITECTURES
from vmb.errors import ConfigError
from vmb.models.build import MODEL_REGISTRY, build_model
from vmb.models.info import count_parameters, gflops_per_view

# Published parameter counts (400-class head): X3D-M 3.79 M (X3D paper, PySlowFast model zoo),
# MViT-B 16x4 36.61 M (MViT paper, PySlowFast model zoo).
PUBLISHED = {"configs/X3D_M.yaml": 3.79e6, "configs/MVIT_B_16x4.yaml": 36.61e6}


@pytest.mark.parametrize("config", sorted(PUBLISHED))
def test_parameter_count_matches_published(config):
    model = build_model(load_config(config, ["MODEL.NUM_CLASSES", "400"]))
    assert abs(count_parameters(model) - PUBLISHED[config]) / PUBLISHED[config] < 0.01


def test_x3d_m_20_class_head():
    model = build_model(load_config("configs/X3D_M.yaml"))
    assert abs(count_parameters(model) - 3.02e6) / 3.02e6 < 0.01


def test_mvit_recipe_details():
    cfg = load_config("configs/MVIT_B_16x4.yaml")
    model = build_model(cfg)
    drop_paths = [m.drop_prob for m in model.modules() if type(m).__name__ == "DropPath"]
    assert drop_paths and max(drop_paths) == pytest.approx(0.2)  # the recipe's 0.2, linearly increasing
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in model.modules())


@pytest.mark.parametrize("config", ["configs/smoke/X3D.yaml", "configs/smoke/MVIT.yaml"])
def test_smoke_models_output_logits(config):
    cfg = load_config(config)
    model = build_model(cfg).eval()
    clip = torch.randn(2, 3, cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE)
    with torch.no_grad():
        logits = model(clip)
    assert logits.shape == (2, 20)
    # No softmax in the model: rows of probabilities would sum to 1 and be non-negative.
    assert not torch.allclose(logits.sum(dim=1), torch.ones(2))
    assert gflops_per_view(model, cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE) > 0


def test_x3d_final_bn_zero_initialised():
    from pytorchvideo.models.resnet import BottleneckBlock

    model = build_model(load_config("configs/smoke/X3D.yaml"))
    blocks = [m for m in model.modules() if isinstance(m, BottleneckBlock)]
    assert blocks and all(torch.count_nonzero(b.norm_c.weight) == 0 for b in blocks)


def test_unknown_arch_is_a_config_error():
    with pytest.raises(ConfigError, match="MODEL.ARCH"):
        load_config("configs/smoke/X3D.yaml", ["MODEL.ARCH", "resnet"])


def test_config_choices_are_the_registered_builders():
    """MODEL.ARCH's choice list (the config cannot import torch) names exactly the registered builders."""
    assert sorted(name for name, _ in MODEL_REGISTRY) == sorted(ARCHITECTURES)

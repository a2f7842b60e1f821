"""tools/export.py and vmb.speed.export: the ONNX round trip of X3D (zoo x3d_xs) and MViT (the smoke config, checked
on decoded val clips) within the stated bound, the dynamic batch axis, the metadata, and the one-line failures:
exactly one model source, an opset the exporter does not write, a checkpoint of another architecture, an operator
the exporter or ONNX Runtime does not support, an export that disagrees with PyTorch, an ONNX file of another
model."""
from __future__ import annotations

import contextlib
import io

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from vmb.cli.export import main
from vmb.config import load_config
from vmb.engine.checkpoint import save_checkpoint
from vmb.models.build import build_model
from vmb.models.zoo import get_zoo_model
from vmb.speed import export
from vmb.speed.export import (MAX_RELATIVE_ERROR, DeployError, ExportError, ModelSpec, build_zoo_model,
                              check_matches, export_model, host_feeds, open_session, read_metadata, run_feeds,
                              unsupported_op, zoo_spec)

MVIT_SMOKE = ["MODEL.NUM_CLASSES", "4", "DATA_LOADER.NUM_WORKERS", "0", "NUM_GPUS", "0"]


@pytest.fixture(scope="module")
def x3d_xs_onnx(tmp_path_factory):
    """tools/export.py --model x3d_xs at batch 1: (file, what it printed)."""
    path = tmp_path_factory.mktemp("export") / "x3d_xs.onnx"
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["--model", "x3d_xs", "--out", str(path), "--batch-size", "1"]) == 0
    return path, out.getvalue().splitlines()


def onnx_and_torch(path, model: torch.nn.Module, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    session = open_session(path)
    with torch.inference_mode():
        return run_feeds(session, host_feeds(["clips"], clips)), model(clips)


def test_zoo_x3d_round_trip_at_batch_1_and_3(x3d_xs_onnx):
    path, lines = x3d_xs_onnx
    assert lines[0].startswith(f"exported x3d_xs (zoo, random, torch.manual_seed(0)) to {path}: opset 20, inputs "
                               "clips (batch x 3x4x160x160), output logits (batch x 400)")
    assert lines[1].startswith("check: ONNX Runtime (CPU) against PyTorch on 1 random clips (seed 0): max abs "
                               "difference ") and lines[1].endswith(": ok")
    model = build_zoo_model(get_zoo_model("x3d_xs"))
    for batch in (1, 3):  # exported at batch 1: the batch axis is dynamic
        clips = torch.randn(batch, 3, 4, 160, 160, generator=torch.Generator().manual_seed(batch))
        got, expected = onnx_and_torch(path, model, clips)
        assert got.shape == (batch, 400)
        assert (got - expected).abs().max() <= MAX_RELATIVE_ERROR * expected.abs().max()
    graph = onnx.load(str(path)).graph
    assert [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == ["batch", 3, 4, 160, 160]
    assert [d.dim_param or d.dim_value for d in graph.output[0].type.tensor_type.shape.dim] == ["batch", 400]


def test_metadata_names_the_model(x3d_xs_onnx):
    path, _ = x3d_xs_onnx
    metadata = read_metadata(path)
    assert {key: metadata[key] for key in ("model", "arch", "input", "num_classes", "weights", "opset")} == {
        "model": "x3d_xs", "arch": "x3d", "input": "3x4x160x160", "num_classes": "400",
        "weights": "random, torch.manual_seed(0)", "opset": "20"}
    assert metadata["version"] == "0.1.0" and metadata["torch"] == torch.__version__
    assert metadata["exporter"] == "torch.onnx.export (dynamo)"
    assert check_matches(path, zoo_spec(get_zoo_model("x3d_xs")), "hint") == metadata


def test_an_onnx_file_of_another_model_is_refused(x3d_xs_onnx, tmp_path):
    path, _ = x3d_xs_onnx
    with pytest.raises(DeployError) as error:
        check_matches(path, zoo_spec(get_zoo_model("x3d_s")), "tools/export.py --model x3d_s --out FILE")
    assert str(error.value) == (f"{path} is an ONNX file of another model: its model is 'x3d_xs', this model's is "
                                "'x3d_s'; export it with tools/export.py --model x3d_s --out FILE")
    model = onnx.load(str(path))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with pytest.raises(DeployError, match=f"{bare} has no VMB metadata .*: it was not written by tools/export.py"):
        check_matches(bare, zoo_spec(get_zoo_model("x3d_xs")), "hint")
    (tmp_path / "text.onnx").write_text("not a model")
    with pytest.raises(DeployError, match="text.onnx is not an ONNX model"):
        read_metadata(tmp_path / "text.onnx")


def test_mvit_config_export_is_checked_on_val_clips(tiny_videos_dir, tmp_path, capsys):
    cfg_file = "configs/smoke/MVIT.yaml"
    overrides = [*MVIT_SMOKE, "DATA.PATH_TO_DATA_DIR", str(tiny_videos_dir)]
    checkpoint = tmp_path / "checkpoint.pyth"
    torch.manual_seed(1)
    save_checkpoint(checkpoint, {"model": build_model(load_config(cfg_file, overrides)).state_dict()})
    out = tmp_path / "mvit.onnx"
    assert main(["--cfg", cfg_file, "--checkpoint", str(checkpoint), "--out", str(out), *overrides]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"exported smoke_mvit ({cfg_file}, checkpoint {checkpoint}) to {out}: opset 20, "
                                 "inputs clips (batch x 3x8x64x64), output logits (batch x 4)")
    assert printed[1].startswith(f"check: ONNX Runtime (CPU) against PyTorch on 2 val clips of {tiny_videos_dir} "
                                 "(VMB's test loader): max abs difference ")
    metadata = read_metadata(out)
    assert (metadata["model"], metadata["arch"], metadata["num_classes"]) == ("smoke_mvit", "mvit", "4")
    assert metadata["weights"].startswith("checkpoint sha256:") and len(metadata["weights"]) == 18 + 64


def test_checkpoint_of_another_architecture_is_one_line(tiny_videos_dir, smoke_config, tmp_path, capsys):
    mvit = build_model(load_config("configs/smoke/MVIT.yaml", MVIT_SMOKE))
    checkpoint = tmp_path / "checkpoint.pyth"
    save_checkpoint(checkpoint, {"model": mvit.state_dict()})
    assert main(["--cfg", str(smoke_config), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "x.onnx"),
                 *MVIT_SMOKE]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"error: checkpoint {checkpoint} does not fit MODEL.ARCH x3d of {smoke_config}")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("options, message", [
    ([], "give exactly one of --cfg CONFIG"),
    (["--model", "x3d_xs", "--cfg", "configs/smoke/X3D.yaml"], "give exactly one of --cfg CONFIG"),
    (["--model", "x3d_xs", "--checkpoint", "c.pyth"], "--checkpoint and KEY VALUE overrides go with --cfg"),
    (["--model", "x3d_xs", "--opset", "17"], "--opset 17: the dynamo exporter writes opset 18 and newer"),
    (["--model", "x3d_xs", "--batch-size", "0"], "--batch-size 0: at least 1"),
])
def test_bad_options_are_one_line(options, message, tmp_path, capsys):
    assert main([*options, "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and len(err.splitlines()) == 1


class KthValueNet(torch.nn.Module):
    """A model with an operator the ONNX exporter cannot translate (aten.kthvalue)."""

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return torch.kthvalue(clips.flatten(2), 2, dim=2).values


SPEC = ModelSpec("kth", "test", ((3, 2, 4, 4),), 3, "random")


def test_an_operator_the_exporter_lacks_is_named(tmp_path):
    with pytest.raises(ExportError) as error:
        export_model(KthValueNet(), SPEC, tmp_path / "kth.onnx", SPEC.random_clips(2, 0), "random clips")
    message = str(error.value)
    assert message.startswith("cannot export kth to ONNX: operator aten.kthvalue is not supported by the ONNX "
                              "exporter (")
    assert len(message.splitlines()) == 1 and not (tmp_path / "kth.onnx").exists()
    assert unsupported_op("Exporting the operator 'aten::foo' to ONNX opset version 17 is not supported") == "aten::foo"
    assert unsupported_op("call_function[target=torch.ops.aten.histc.default](args = (%x, 4))") == "aten.histc.default"


def test_an_export_that_disagrees_with_pytorch_fails_and_writes_nothing(tmp_path, monkeypatch):
    spec = ModelSpec("conv", "test", ((3, 2, 4, 4),), 5, "random")
    model = torch.nn.Sequential(torch.nn.Conv3d(3, 5, 1), torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten())
    clips = spec.random_clips(2, 0)
    result = export_model(model, spec, tmp_path / "ok.onnx", clips, "random clips")
    assert result.max_abs_diff <= result.bound == pytest.approx(MAX_RELATIVE_ERROR * result.logit_scale)
    monkeypatch.setattr(export, "run_feeds", lambda session, feeds: run_feeds(session, feeds) + 1.0)
    with pytest.raises(ExportError, match=r"the ONNX export of conv disagrees with PyTorch: max abs difference 1 on 2 "
                                          r"random clips, over the bound 0.001 x max \|logit\| .*; nothing written to"):
        export_model(model, spec, tmp_path / "bad.onnx", clips, "random clips")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.onnx"]


def test_an_operator_onnxruntime_lacks_is_named(tmp_path):
    clips = helper.make_tensor_value_info("clips", TensorProto.DOUBLE, ["batch", 4])
    logits = helper.make_tensor_value_info("logits", TensorProto.DOUBLE, ["batch", 4])
    graph = helper.make_graph([helper.make_node("Hardmax", ["clips"], ["logits"], name="head")], "g", [clips], [logits])
    path = tmp_path / "hardmax.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(DeployError) as error:
        open_session(path)
    assert str(error.value) == (f"onnxruntime cannot run {path}: operator Hardmax(13) (node 'head') is not "
                                "implemented by its CPUExecutionProvider")


class TwoPathwayNet(torch.nn.Module):
    """SlowFast's calling convention: model([slow, fast]) -> logits."""

    def __init__(self) -> None:
        super().__init__()
        self.slow, self.fast, self.head = torch.nn.Conv3d(3, 4, 1), torch.nn.Conv3d(3, 2, 1), torch.nn.Linear(6, 5)

    def forward(self, pathways: list[torch.Tensor]) -> torch.Tensor:
        slow, fast = pathways
        return self.head(torch.cat([self.slow(slow).mean((2, 3, 4)), self.fast(fast).mean((2, 3, 4))], dim=1))


def test_a_two_pathway_model_is_exported_as_two_inputs(tmp_path):
    spec = ModelSpec("two", "slowfast", ((3, 2, 8, 8), (3, 8, 8, 8)), 5, "random")
    model = TwoPathwayNet().eval()
    export_model(model, spec, tmp_path / "two.onnx", spec.random_clips(2, 0), "random clips")
    session = open_session(tmp_path / "two.onnx")
    assert [(i.name, i.shape) for i in session.get_inputs()] == [("pathway0", ["batch", 3, 2, 8, 8]),
                                                                 ("pathway1", ["batch", 3, 8, 8, 8])]
    assert read_metadata(tmp_path / "two.onnx")["input"] == "3x2x8x8 + 3x8x8x8"
    clips = spec.random_clips(3, 1)
    with torch.inference_mode():
        expected = model(clips)
    assert torch.allclose(run_feeds(session, host_feeds(spec.input_names, clips)), expected, atol=1e-5)

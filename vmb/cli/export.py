"""`vmb-export` / `tools/export.py`: a config's checkpoint or a zoo model to ONNX (dynamic batch), checked against
PyTorch."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from vmb.errors import ConfigError, exit_on_error
from vmb.record.schema import CHECKPOINT_FILE
from vmb.speed.export import CHECK_BATCH, MAX_RELATIVE_ERROR, MIN_OPSET


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Export a config's checkpoint or a zoo model to ONNX with a dynamic batch axis, checked against "
                    "PyTorch (docs/SPEED.md, 'Deployment runtimes and int8').")
    parser.add_argument("--cfg", help="the YAML config the checkpoint was trained with; checked on clips of its val "
                                      "split through VMB's test loader")
    parser.add_argument("--checkpoint", type=Path,
                        help=f"with --cfg: the checkpoint (default: the config's OUTPUT_DIR/{CHECKPOINT_FILE})")
    parser.add_argument("--model", help="a zoo model (vmb.models.zoo) with bench_infer's random weights, instead of "
                                        "--cfg; checked on seeded random clips of its view")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="the ONNX file to write")
    parser.add_argument("--opset", type=int, help=f"ONNX opset, {MIN_OPSET} or newer (default: the exporter's)")
    parser.add_argument("--batch-size", type=int, default=CHECK_BATCH,
                        help="clips of the example input and of the check (default: %(default)s)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="with --cfg: KEY VALUE overrides")
    return parser


@exit_on_error
def main(argv: Sequence[str] | None = None) -> int:
    """`tools/export.py`: exit status 0, 2 for a usage error, a model the exporter cannot export, or an export that
    disagrees with PyTorch (one line each)."""
    import torch

    from vmb.speed.export import build_zoo_model, check_opset, config_spec, export_model, val_clips, zoo_spec

    args = build_parser().parse_args(argv)
    if (args.cfg is None) == (args.model is None):
        raise ConfigError("give exactly one of --cfg CONFIG [--checkpoint FILE] (a trained model, checked on its val "
                          "clips) or --model NAME (a zoo model, checked on random clips)")
    if args.model and (args.checkpoint or args.opts):
        raise ConfigError("--checkpoint and KEY VALUE overrides go with --cfg; a zoo model (--model) has random "
                          "weights")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size}: at least 1")
    check_opset(args.opset)
    if args.model:
        from vmb.models.zoo import get_zoo_model

        zoo_model = get_zoo_model(args.model)
        model, spec = build_zoo_model(zoo_model), zoo_spec(zoo_model)
        clips = spec.random_clips(args.batch_size, 0)
        source, check_source = f"zoo, {spec.weights}", "random clips (seed 0)"
    else:
        from vmb.config import load_config
        from vmb.engine.checkpoint import load_weights
        from vmb.models.build import build_model

        cfg = load_config(args.cfg, args.opts)
        checkpoint = args.checkpoint or Path(cfg.OUTPUT_DIR) / CHECKPOINT_FILE
        model = build_model(cfg)
        load_weights(model, checkpoint, cfg.MODEL.ARCH, args.cfg)
        spec = config_spec(cfg, args.cfg, checkpoint)
        clips, check_source = val_clips(cfg, args.batch_size)
        source = f"{args.cfg}, checkpoint {checkpoint}"
    result = export_model(model, spec, args.out, clips, check_source, args.opset)
    print(f"exported {spec.name} ({source}) to {result.path}: opset {result.opset}, inputs "
          f"{', '.join(spec.input_names)} (batch x {spec.input_text}), output logits (batch x {spec.num_classes}), "
          f"{result.path.stat().st_size / 1e6:.1f} MB, {result.seconds:.1f} s (torch {torch.__version__})")
    print(f"check: ONNX Runtime (CPU) against PyTorch on {result.check_clips} {check_source}: max abs difference "
          f"{result.max_abs_diff:.3g} <= {result.bound:.3g} ({MAX_RELATIVE_ERROR:g} x max |logit| "
          f"{result.logit_scale:.3g}): ok")
    return 0

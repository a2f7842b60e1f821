"""`vmb-model-info` / `tools/model_info.py`: parameters and GFLOPs per view of a config's model, or of the zoo."""
from __future__ import annotations

from typing import Sequence

from vmb.cli.common import config_parser
from vmb.errors import exit_on_error


@exit_on_error
def main(argv: Sequence[str] | None = None) -> int:
    """`tools/model_info.py`: parameters and GFLOPs per view of a config's model, or of the whole zoo."""
    from vmb.config import load_config
    from vmb.models.build import build_model
    from vmb.models.info import count_parameters, gflops_per_view

    parser = config_parser("Print a config's model parameters and GFLOPs per view (--zoo: every zoo model).")
    parser.add_argument("--zoo", action="store_true", help="list the model zoo (vmb/models/zoo.py) instead")
    args = parser.parse_args(argv)
    if args.zoo:
        return _zoo_info()
    cfg = load_config(args.cfg_file, args.opts)
    model = build_model(cfg)
    frames = cfg.DATA.NUM_FRAMES
    print(f"config          {args.cfg_file}")
    print(f"arch            {cfg.MODEL.ARCH} ({cfg.MODEL.NUM_CLASSES} classes)")
    print(f"parameters      {count_parameters(model) / 1e6:.3f} M")
    for name, crop in (("train", cfg.DATA.TRAIN_CROP_SIZE), ("test", cfg.DATA.TEST_CROP_SIZE)):
        print(f"GFLOPs/view     {gflops_per_view(model, frames, crop):.2f} ({name} view {frames}x{crop}x{crop})")
    return 0


def _zoo_info() -> int:
    """One line per zoo model: its view, parameters (and PyTorchVideo's published count), fvcore GFLOPs."""
    from vmb.models.info import count_parameters, gflops
    from vmb.models.zoo import ZOO

    print(f"{'model':14s} {'arch':9s} {'view (T x H x W)':17s} {'params (M)':>10s} {'published':>9s} "
          f"{'GFLOPs/view':>11s}")
    for zoo_model in ZOO.values():
        model = zoo_model.build()
        view = f"{zoo_model.num_frames} x {zoo_model.crop_size} x {zoo_model.crop_size}"
        print(f"{zoo_model.name:14s} {zoo_model.arch:9s} {view:17s} {count_parameters(model) / 1e6:10.2f} "
              f"{zoo_model.published_params_m:9.2f} {gflops(model, zoo_model.example_input(1)):11.2f}", flush=True)
    return 0

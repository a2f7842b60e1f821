"""The system check (`tools/system_check.py --out DIR [--budget-min 8]`, `vmb-system-check`): every GPU figure VMB
needs from a machine, in one command, within a wall-clock budget.

The check is a list of cells run one after the other. Each cell is a small function that returns its figures (a
dict) or raises: `NotRun` (recorded "not run: <reason>"), `CellTimeout` ("timeout"), anything else ("failed",
with the last lines of its output). A failing cell never stops the others. The cells:

- Environment (always): GPUs, driver (read even where torch sees no GPU: NVML, else /proc/driver/nvidia/version)
  and whether it is new enough for torch's CUDA build, CUDA runtime, arch list, NCCL, native bf16, NVML energy
  counter, CPU, usable cores, memory, library versions.
- Synthetic data: a Kinetics-shaped synthetic set in DIR/data (vmb.data.prepare.synthetic, tools/make_synthetic.py),
  sized to the budget (`make_plan`).
- Clips/s per CPU core: VMB's training dataset with the pyav backend on that data, one process, one torch thread
  (vmb.speed.loader.cells.time_cells), per model: the input side of the sizing.
- CUDA tests: `python -m pytest -m cuda` with a JUnit XML report, summarised per test.
- Dry runs: tools/bench_train.py on configs/dryrun/ (the canonical per-GPU batch and precision) per decoding
  backend (pyav with NUM_WORKERS auto, torchcodec_cuda, dali where importable): clips/s, data wait, peak memory,
  GPU utilisation, host syncs per step. Without CUDA one CPU cell runs the smoke X3D config there instead.
- Training (synthetic input): tools/bench_train.py --synthetic, fp32 and bf16, per model; inference:
  tools/bench_infer.py at batch 1 and 8 in fp32, bf16 and fp16.
- Several GPUs (2 or more visible): NCCL all-reduce bus bandwidth (vmb/speed/allreduce_bench.py) and a 2-process
  dry run of tools/run_net.py.

Budget: the whole command stops within `--budget-min` minutes. Each cell's timeout is its weighted share of the
time left (a cell may use up to SHARE_STRETCH times its share when it needs to; a cell that finishes early leaves
its time to the later ones); a cell gets "not run: budget spent" when less than its minimum is left. A tool that
overruns gets SIGINT (the speed tools then write what they measured), and its process group SIGKILL after a grace
period. After every cell DIR/system_check.json and DIR/system_check.md are rewritten, so a timeout or Ctrl-C (exit
status 130) keeps every finished cell. Subprocess output goes to DIR/logs/, the tools' JSON to DIR/cells/.

Sizing: CPU cores per GPU to keep the data wait below 10 %, per model,
    cores_per_gpu = ceil(gpu_clips_per_s / (0.9 * clips_per_s_per_core)) + 1
(the decode workers, with 10 % headroom, plus the training process's own core), from the GPU training clips/s of
the synthetic-input bench (the config's precision, else fp32) and the measured clips/s per core.

Modules, each importing only those listed before it: `process` (how a cell ends: NotRun, CellFailed, CellTimeout;
running a command with a timeout), `environment` (the probe and the driver verdict), `plan` (the models, the cell
groups, the work sized to the budget), `figures` (the tools' outputs read into a cell's figures), `summaries` (a
cell's figures in a few words), `sizing` (CPU cores per GPU), `report` (system_check.json and system_check.md),
`cells` (every cell, and the list of them for a machine), `runner` (the budget, timeouts and Ctrl-C: `run_check`).
"""

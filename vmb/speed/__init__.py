"""The speed tools' libraries; their command lines are in vmb.cli (this package never imports it).

- `loader/`: the format and loader study (`vmb-bench-loader`, tools/bench_loader.py).
- `train_bench` (the measurement) and `train_report` (its statistics, JSON result and table): training speed
  (`vmb-bench-train`, tools/bench_train.py); `gpu_monitor`: its NVML utilisation and host-sync counts.
- `infer`, `infer_report`, `latency`: inference speed (`vmb-bench-infer`, tools/bench_infer.py).
- `system_check/`: the machine check (`vmb-system-check`, tools/system_check.py); `allreduce_bench`: its NCCL cell,
  run with `python -m torch.distributed.run ... -m vmb.speed.allreduce_bench`.
- `memory`: what counts as out of memory, for bench_train and bench_infer.
- `export`, `quantize`, `runtimes`: ONNX export (`vmb-export`, tools/export.py), the int8 and fp16 files, and the
  deployment runtimes (torch, compile, onnxruntime, tensorrt) of bench_infer and test_net.
"""

#!/usr/bin/env bash
# Set up (first time only) and run the benchmark. No arguments: the smoke benchmark (configs/smoke/X3D.yaml).
# Any arguments go to tools/run_net.py, e.g.: bash run.sh --cfg configs/smoke/MVIT.yaml RNG_SEED 1
set -euo pipefail
. "$(dirname "$0")/tools/setup_env.sh"
python tools/run_net.py "$@"

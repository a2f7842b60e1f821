#!/usr/bin/env bash
# Set up (first time only) and run the test suite.
set -euo pipefail
. "$(dirname "$0")/tools/setup_env.sh"
python -m pytest -q "$@"

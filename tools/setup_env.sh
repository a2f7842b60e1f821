# Source this: creates .venv (once) and installs VMB with its test extras from this repo's setup.py.
# Reinstalls when setup.py changes. Used by run.sh, test.sh and .ci/run.
_vmb_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ ! -x "$_vmb_root/.venv/bin/python" ]; then
  python3 -m venv "$_vmb_root/.venv"
fi
. "$_vmb_root/.venv/bin/activate"
_vmb_stamp="$_vmb_root/.venv/.vmb-installed"
if [ ! -f "$_vmb_stamp" ] || [ "$_vmb_root/setup.py" -nt "$_vmb_stamp" ]; then
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet -e "$_vmb_root[dev]"
  touch "$_vmb_stamp"
fi
cd "$_vmb_root"

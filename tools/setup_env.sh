# Source this: creates .venv (once) and installs VMB with its test extras from this repo's setup.py.
# Reinstalls when setup.py changes. Used by run.sh, test.sh and .ci/run.
_vmb_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# torchcodec (in the dev extra; DATA.DECODING_BACKEND torchcodec) loads the system's FFmpeg 5 shared libraries,
# not PyAV's: install Debian's once when we are root (CI, the project's machines); otherwise say what is needed.
if ! ldconfig -p 2>/dev/null | grep libavcodec.so.59 >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libavcodec59 libavformat59 \
      libavutil57 libswscale6 libswresample4 libavdevice59 libavfilter8 </dev/null >/dev/null
  else
    echo "note: FFmpeg's shared libraries (libavcodec59 and friends, see INSTALL.md) are missing:" \
      "the torchcodec backend and its tests need them" >&2
  fi
fi
# The tests also use Debian's Chromium (the results page in a real browser) and shellcheck (the sbatch script);
# each test skips with a reason where its tool is missing.
if ! command -v chromium >/dev/null || ! command -v shellcheck >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium shellcheck \
      </dev/null >/dev/null || echo "note: could not install chromium and shellcheck: their tests skip" >&2
  else
    echo "note: chromium and shellcheck are missing: the browser and sbatch tests skip" >&2
  fi
fi
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

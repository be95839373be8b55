#!/usr/bin/env bash
# Entry point: sets up .venv on first use, then dispatches a subcommand.
#   ./run.sh demo            render a synthetic clip and convert it to 3D (no downloads needed)
#   ./run.sh convert ARGS    a video or frames folder to 3D videos (python -m svg3d convert ARGS)
#   ./run.sh test [ARGS]     run the test suite (pytest ARGS)
#   ./run.sh matrix ARGS     python create_frame_matrix.py ARGS
#   ./run.sh setup           only create / update the virtual environment
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
# PyTorch's OpenMP threads spin while waiting by default; when other processes share the cores that
# makes CPU work 5-40x slower (measured: the demo's renderer 39 s instead of 1 s on 2 busy cores).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

setup() {
  if [ ! -x "$PY" ]; then
    echo "[run.sh] creating virtual environment in .venv" >&2
    python3 -m venv "$VENV"
  fi
  # Reinstall only when requirements.txt changed since the last successful install.
  local stamp="$VENV/.requirements.sha256" want
  want=$(sha256sum requirements.txt | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[run.sh] installing requirements.txt into .venv (first run takes a few minutes)" >&2
    # (this machine's pip configuration warns about every package missing from its local mirrors: noise)
    "$PY" -m pip install --disable-pip-version-check -q -r requirements.txt 2> >(grep -v 'is ignored: it is neither a file' >&2)
    echo "$want" > "$stamp"
  fi
}

cmd=${1:-help}
[ $# -gt 0 ] && shift
case "$cmd" in
  setup) setup ;;
  test)
    setup
    exec "$PY" -m pytest "$@" ;;
  demo)
    setup
    exec "$PY" -m svg3d demo "$@" ;;
  convert)
    setup
    exec "$PY" -m svg3d convert "$@" ;;
  matrix)
    setup
    exec "$PY" create_frame_matrix.py "$@" ;;
  depth)
    setup
    exec "$PY" third_party/Depth-Anything/svg_run.py "$@" ;;
  stabilise)
    setup
    exec "$PY" third_party/RAFT/svg_enhance_depth.py "$@" ;;
  help|-h|--help)
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' ;;
  *)
    echo "run.sh: unknown command '$cmd' (try ./run.sh help)" >&2
    exit 2 ;;
esac

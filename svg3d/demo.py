"""The demo: rendered clips with exact depth, converted to 3D with nothing downloaded, scored against the truth.

For each scene of ``SCENES`` (a still camera, and a handheld one: the case a filler that copies still pixels
gets wrong):

1. Render it (``scene``) from the left eye, and from the right eye as ground truth.
2. Encode the left view as ``input.mp4`` with a generated audio track (a chord, AAC), so the audio
   path of the exports is exercised, and write the renderer's inverse depth (1/Z, metric) per frame.
3. ``convert.convert`` with ``--depth-from`` that folder, the renderer's physical camera (its focal, 7 cm,
   metric inverse depth), OpenCV DIS flow for the stabilisation, and each filler of ``FILLERS``: the
   classical one (SBS, anaglyph and lossless eye exports), the one of before issue 12 and OpenCV's Telea
   (lossless right eyes), sharing the depth stages in one work folder.
4. ``report.json``: per scene and filler, PSNR and SSIM of the generated right eye against the true one in
   the pixels the warp knew and in the disoccluded ones, the flicker of the filled pixels next to the true
   video's over the same pixels; timings.
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

from . import __version__, camera, comfort, convert, io, metrics, scene, work
from .config import ConvertConfig, DepthConfig, ExportSettings, MatrixConfig
from .stages.fill.stage import FILLED, store_name

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


SCENES = {  # name -> (scene seed offset, camera motion): a still camera and a moving one (the case fillers get wrong)
    "static": (0, "static"),
    "handheld": (4, "handheld"),
}
FILLERS = ("classical", "previous", "telea")  # the filler, the one of before issue 12, OpenCV's Telea


def run_demo(
    out_dir: str | os.PathLike = "results/demo",
    *,
    seed: int = 0,
    size: tuple[int, int] = DEMO_SIZE,
    num_frames: int = DEMO_FRAMES,
    progress: convert.ProgressFactory | None = None,
    device: str = "cpu",
) -> Path:
    """Run the demo into ``out_dir``: every scene of ``SCENES`` with every filler of ``FILLERS``; returns
    the path of ``report.json``. The exports of the last scene with the classical filler are the result.
    ``device``: where the stages run, with the weight-free flow of that device (``flow.weight_free_flow``)."""
    out_dir = Path(out_dir)
    started = time.perf_counter()
    h, w = size
    report = {
        "what": "generated right eye vs the renderer's true right eye; 'disoccluded' = pixels the warp left as holes",
        "size": [w, h], "frames": num_frames, "fps": DEMO_FPS, "baseline_m": camera.DEFAULT_BASELINE, "scenes": {},
    }  # fmt: skip
    with comfort.one_budget_warning():  # every conversion here has the renderer's physical camera: said once
        for name, (offset, motion) in SCENES.items():
            sc = scene.make_scene(seed + offset, num_frames=num_frames, height=h, width=w, camera_motion=motion)
            report["scenes"][name] = _demo_scene(sc, out_dir / name, progress, torch.device(device))
            report["scenes"][name]["camera_motion"] = motion
    main = report["scenes"][list(SCENES)[-1]]
    report["exports"] = main.pop("exports")
    report["seconds_total"] = round(time.perf_counter() - started, 2)
    report["machine"] = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform()}
    report["svg3d"] = __version__
    path = out_dir / "report.json"
    io.write_text(path, json.dumps(_finite(report), indent=1))
    for name, r in report["scenes"].items():
        c, p, t = r["classical"], r["previous"], r["telea"]
        log.info(
            "demo %s: right eye disoccluded PSNR %.2f dB (previous filler %.2f, Telea %.2f), flicker %.2f (truth %.2f)",
            name, c["psnr_disoccluded"], p["psnr_disoccluded"], t["psnr_disoccluded"], c["flicker_disoccluded"], r["true_video_flicker_disoccluded"],
        )  # fmt: skip
    log.info("demo: %s", report["exports"].get("sbs"))
    return path


def _demo_scene(sc: scene.Scene, folder: Path, progress, device: torch.device) -> dict:
    """One scene: rendered, encoded, converted with each filler (sharing the depth stages), scored."""
    num_frames = sc.num_frames
    # The physical camera of the renderer: its focal, the paper's 7 cm, metric inverse depth.
    matrix = MatrixConfig(num_views=2, focal=sc.focal, metric_depth=True, lossless=True)
    left, z_left = scene.render(sc, 0.0)
    right, _ = scene.render(sc, float(camera.view_baselines(2, matrix.max_baseline, matrix.layout)[-1]))  # the true right eye
    source = folder / "source"
    clip = source / "input.mp4"
    tone = write_tone(source / "tone.m4a", num_frames / DEMO_FPS)
    io.write_video(clip, _uint8(left), DEMO_FPS, audio_from=tone)
    for t, z in enumerate(z_left.numpy()):
        io.write_depth(source / "depth" / f"{t:05d}.npy", 1.0 / z)  # inverse metric depth, --metric-depth
    flow = "torch" if device.type == "cuda" else "dis"  # the weight-free flow of the device, without the RAFT line
    base = ConvertConfig(depth=DepthConfig(depth_from=source / "depth"), flow=flow, matrix=matrix)
    truth = right.clamp(0, 1)
    out: dict = {"scene_seed": None, "seconds": {}}
    for filler in reversed(FILLERS):  # the classical filler last: its exports are the scene's result
        main = filler == "classical"
        exports = ExportSettings(exports=("sbs", "anaglyph", "eyes_png")) if main else ExportSettings(exports=("eyes_png",), preview=False)
        result = convert.convert(
            clip, folder if main else folder / filler, replace(base, filler=filler, exports=exports),
            work_dir=folder / "work", progress=progress, device=device,
        )  # fmt: skip
        generated = torch.from_numpy(io.read_frames(io.list_images(result.exports["eyes_png"] / "right"))).permute(0, 3, 1, 2).float() / 255
        known = _known(result)
        out[filler] = _scores(generated, truth, known)
        out["seconds"][filler] = {s.name: round(s.seconds, 2) for s in result.stages}
        if main:
            out["disoccluded_share"] = (~known).float().mean().item()
            out["true_video_flicker_disoccluded"] = metrics.flicker(truth, ~known)
            out["focal_px"] = result.plan.focal
            out["exports"] = {name: str(path) for name, path in result.exports.items()}
    out.pop("scene_seed")
    return out


def _known(result: convert.ConvertResult) -> torch.Tensor:
    """The right eye's known-mask ``(T, H, W)`` bool: what the warp gave (the fill stage records the holes)."""
    folder = result.work_dir / store_name(FILLED, result.plan.num_views)
    record = json.loads(folder.with_suffix(".json").read_text())
    holes = np.concatenate([work.read_chunk(folder / c["file"], ("holes",))["holes"] for c in record["chunks"]])
    return torch.from_numpy(~holes[:, result.plan.fill_views.index(result.plan.eyes[1])])


def _finite(x: object) -> object:
    """JSON has no NaN/inf: write them as null (an empty region has no score)."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x

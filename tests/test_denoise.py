"""Frame-matrix denoising (svg3d.denoise, svg.py) with tiny random models loaded through the real loader."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from svg3d import camera, denoise
from svg3d.checks import InputError
from svg3d.denoise import DenoiseConfig, Pass
from svg3d.models import load_zeroscope
from svg3d.stages.matrix import FrameMatrix, MatrixInfo, save_frame_matrix
from svg3d.tiny_models import save_tiny_svd_vae

CPU = torch.device("cpu")
H, W = 64, 96  # latents 8 x 12: unequal sides catch a swapped h/w
SEED_STEREO = (
    "--prompt 'Obama is speaking' --init_image ./Videos/frame_matrix/Obama_is_speaking "
    "--output_root ./results/Obama_is_speaking/  --num_frames 16 --width 576 --height 320  --latent_w 72 --latent_h 40"
)
SEED_MULTIVIEW = SEED_STEREO + " --frame_matrix_end 0 --fix_last_view_begin 600"


pytestmark = pytest.mark.usefixtures("flush_denormals")




def make_matrix(
    num_views: int = 3, num_frames: int = 4, *, height: int = H, width: int = W, layout: str = "left2right"
) -> FrameMatrix:
    """A frame matrix whose views have holes growing with their distance from the input view.

    Hole edges are not on the 8-pixel latent grid, so partly known latent cells exist.
    """
    g = torch.Generator().manual_seed(0)
    frames = F.interpolate(
        torch.rand(num_frames, 3, height // 8, width // 8, generator=g), size=(height, width), mode="bilinear"
    )
    images = frames[None].repeat(num_views, 1, 1, 1, 1)
    masks = torch.ones(num_views, num_frames, 1, height, width, dtype=torch.bool)
    ref = camera.reference_view(num_views, layout)
    for v in range(num_views):
        d = abs(v - ref)
        if d:
            masks[v, :, :, :, width - 13 * d :] = False  # disocclusion at the right edge
            masks[v, :, :, 20 : 20 + 5 * d, 30 : 30 + 11 * d] = False  # and behind an object
    images = images * masks
    info = MatrixInfo(
        num_views=num_views,
        num_frames=num_frames,
        height=height,
        width=width,
        baselines=tuple(camera.view_baselines(num_views, 0.07, layout).tolist()),
        max_baseline=0.07,
        layout=layout,
        focal=camera.default_focal(width),
        image_suffix=".png",
    )
    return FrameMatrix(images, masks, info)


# --------------------------------------------------------------------------------------------------
# masks: hand-computed micro-cases


def test_erode_grows_holes_and_keeps_the_border_known():
    m = torch.ones(1, 1, 7, 7, dtype=torch.bool)
    m[0, 0, 3, 3] = False
    out = denoise.erode(m, 3)
    assert (~out[0, 0]).sum() == 9 and not out[0, 0, 2:5, 2:5].any()
    assert denoise.erode(torch.ones(1, 1, 5, 5, dtype=torch.bool), 3).all()  # image border is not a hole
    assert torch.equal(denoise.erode(m, 1), m)


def test_latent_known_threshold_and_centre():
    m = torch.ones(1, 1, 8, 24, dtype=torch.bool)
    m[0, 0, :2, :3] = False  # cell 0: 6 of 64 unknown (91% known), centre known -> known
    m[0, 0, :3, 8:15] = False  # cell 1: 21 of 64 unknown (67% known), centre known -> unknown
    m[0, 0, 4, 20] = False  # cell 2: one unknown pixel, but it is a centre pixel -> unknown
    known = denoise.latent_known(m, 8, 0.7)
    assert known.shape == (1, 1, 1, 3)
    assert known[0, 0, 0].tolist() == [True, False, False]
    assert denoise.latent_known(m, 8, 0.6)[0, 0, 0].tolist() == [True, True, False]


def test_soft_mask_values():
    b = torch.ones(1, 1, 8, 8, dtype=torch.bool)
    assert torch.equal(denoise.soft_mask(b, 5), torch.ones(1, 1, 8, 8))  # exactly 1: [1 4 6 4 1]/16 is dyadic
    b[0, 0, 4, 4] = False
    s = denoise.soft_mask(b, 5)
    assert s[0, 0, 4, 4] == 0  # unknown stays exactly unknown
    assert s[0, 0, 4, 5] == pytest.approx(1 - (6 / 16) * (4 / 16))  # one neighbour missing from the blur
    assert s[0, 0, 4, 7] == 1  # beyond the kernel's reach
    assert torch.equal(denoise.soft_mask(b, 1), b.float())


# --------------------------------------------------------------------------------------------------
# schedule and passes


def test_resample_plan_stereo_and_multiview():
    cfg = DenoiseConfig()
    dirs = [p.direction for p in denoise.resample_plan(981, 8, (7,), cfg)]
    assert dirs == ["time", "views", "time", "views_reversed", "time", "views"]
    assert denoise.resample_plan(481, 8, (7,), cfg) == [Pass("time", (7,))] * 2
    mv = replace(cfg, frame_matrix_end=0)
    assert [p.direction for p in denoise.resample_plan(601, 8, (7,), mv)] == dirs
    stage2 = denoise.resample_plan(581, 8, (7,), mv)
    assert stage2[:2] == [Pass("time", (7,))] * 2
    assert [(p.direction, p.hold) for p in stage2[2:]] == [
        ("views", 7),
        ("views_reversed", 7),
        ("time", 7),
        ("views_reversed", 7),
    ]
    assert denoise.resample_plan(981, 8, (7,), replace(cfg, resample=0)) == []


def test_renoise_factor_is_exact():
    """z_t = sqrt(abar_t / abar_t') z_t' + ...: the product of alphas over (t', t], not the reference's [t', t)."""
    sched = SimpleNamespace(alphas_cumprod=torch.cumprod(1 - _betas(), 0))
    den = denoise._Denoiser(
        SimpleNamespace(scheduler=sched), DenoiseConfig(), None, None, torch.zeros(1, 1, dtype=torch.bool)
    )
    # Far apart, not random: with two close random draws the float32 difference quotient missed rel=1e-6
    # depending on what earlier tests took from the global RNG.
    z1, z2 = torch.full((1, 1, 4, 2, 2), 2.0), torch.full((1, 1, 4, 2, 2), -2.0)
    outs = []
    for z in (z1, z2):
        den.gens = denoise.make_generators(0, CPU)  # same noise for both
        outs.append(den.renoise(z, 481, 501))
    factor = ((outs[0] - outs[1]) / (z1 - z2)).mean().item()
    betas = _betas().double()
    assert factor == pytest.approx(torch.prod(1 - betas[482:502]).sqrt().item(), rel=1e-6)
    assert abs(factor - torch.prod(1 - betas[481:501]).sqrt().item()) > 1e-5  # the off-by-one is detectable


def _betas() -> torch.Tensor:
    return torch.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2  # scaled_linear, as zeroscope


class _PositionUNet(torch.nn.Module):
    """eps = 1 + the index along the UNet's frame axis (and records its inputs)."""

    def __init__(self):
        super().__init__()
        self.batches: list[tuple[int, ...]] = []

    def forward(self, x, t, encoder_hidden_states):
        self.batches.append(tuple(x.shape))
        pos = torch.arange(x.shape[2], dtype=x.dtype)[None, None, :, None, None]
        return SimpleNamespace(sample=(pos + 1).expand_as(x).clone())


def _stub_denoiser(num_views: int, num_frames: int, known_views: tuple[int, ...] = ()):
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, steps_offset=1
    )
    sched.set_timesteps(4)
    stub = SimpleNamespace(unet=_PositionUNet(), scheduler=sched, dtype=torch.float32)
    known = torch.zeros(num_views, num_frames, dtype=torch.bool)
    known[list(known_views)] = True
    cfg = DenoiseConfig(guidance_scale=1.0, max_unet_frames=2 * num_views, unet="diffusers")  # one row per call; the stub is called as it is
    return denoise._Denoiser(stub, cfg, torch.zeros(2, 3, 8), denoise.make_generators(0, CPU), known), stub


def test_row_passes_read_views_forward_and_reversed_and_hold_a_view():
    """Rows: view v sits at UNet frame v, or at V - 1 - v when reversed (and its eps is flipped back)."""
    z_in = torch.zeros(4, 3, 2, 2, 2)  # V T c h w
    keep = torch.full_like(z_in, 7.0)
    outs = {}
    for direction in ("views", "views_reversed"):
        den, stub = _stub_denoiser(num_views=4, num_frames=3)  # same seed: same DDPM noise
        outs[direction], _ = den.run_pass(
            z_in, den.model.scheduler.timesteps[0], Pass(direction, (0, 1, 2, 3)), keep=keep
        )
        assert stub.unet.batches == [(2, 2, 4, 2, 2)] * 3  # one row per call: the CFG pair, 4 views as frames
    # z_in = 0, so z_t' = -k * eps + noise: the difference of the two runs is -k * ((V - 1 - v) - v).
    diff = (outs["views_reversed"] - outs["views"]).mean(dim=(1, 2, 3, 4))
    assert torch.allclose(diff / diff[0], torch.tensor([1.0, 1 / 3, -1 / 3, -1.0]), atol=1e-5)
    den, _ = _stub_denoiser(num_views=4, num_frames=3)
    held, _ = den.run_pass(z_in, den.model.scheduler.timesteps[0], Pass("views", (0, 1, 2, 3), hold=2), keep=keep)
    assert torch.equal(held[2], keep[2]) and torch.equal(held[[0, 1, 3]], outs["views"][[0, 1, 3]])


def test_time_pass_skips_known_and_held_columns():
    den, stub = _stub_denoiser(num_views=4, num_frames=3, known_views=(0,))
    z_in = torch.zeros(4, 3, 2, 2, 2)
    keep = torch.full_like(z_in, 7.0)
    den.config = replace(den.config, max_unet_frames=12)  # two columns of 3 frames per call (CFG doubled)
    out, _ = den.run_pass(z_in, den.model.scheduler.timesteps[0], Pass("time", (0, 1, 2, 3), hold=3), keep=keep)
    assert stub.unet.batches == [(4, 2, 3, 2, 2)]  # views 1 and 2 in one call
    assert torch.equal(out[0], keep[0]) and torch.equal(out[3], keep[3])
    assert not torch.equal(out[1], keep[1])


# --------------------------------------------------------------------------------------------------
# the loop against references


def test_single_unknown_view_is_plain_text_to_video(model, model_dir):
    """One view, nothing known, no resampling or re-injection == diffusers' DDPM sampling with CFG."""
    from diffusers import DDPMScheduler

    steps, frames, prompt, neg, g = 5, 4, "a red car", "low-quality, blurry, flickering, ghost", 7.5
    cfg = DenoiseConfig(num_inference_steps=steps, resample=0, update_source_latent=False)
    images, masks = torch.rand(1, frames, 3, H, W), torch.zeros(1, frames, 1, H, W, dtype=torch.bool)
    ours = denoise.denoise_frame_matrix(model, images, masks, prompt, cfg)

    # Reference: a plain text-to-video loop with the diffusers scheduler's own step.
    gens = denoise.make_generators(cfg.seed, CPU)
    tok = model.tokenizer([neg, prompt], padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    emb = model.text_encoder(tok.input_ids)[0]
    sched = DDPMScheduler.from_pretrained(model_dir, subfolder="scheduler")
    sched.set_timesteps(steps)
    latents = torch.randn((1, 4, frames, H // 8, W // 8), generator=gens.init)
    with torch.no_grad():
        for t in sched.timesteps:
            uncond, cond = model.unet(torch.cat([latents] * 2), t, encoder_hidden_states=emb).sample.chunk(2)
            latents = sched.step(uncond + g * (cond - uncond), t, latents, generator=gens.step).prev_sample
    expected = latents.permute(0, 2, 1, 3, 4)  # 1 c T h w -> 1 T c h w
    assert ours.stats.unet_calls == steps
    scale = expected.abs().max()
    assert (ours.latents - expected).abs().max() <= 1e-5 * scale

    video = denoise.text_to_video(model, prompt, num_frames=frames, height=H, width=W, config=replace(cfg, resample=6))
    assert video.shape == (frames, 3, H, W)
    assert torch.allclose(video, denoise.decode_latents(model, expected)[0], atol=1e-5)


def _encode_mean(model, frames):
    with torch.no_grad():
        return model.vae.encode(frames * 2 - 1).latent_dist.mean * model.vae.config.scaling_factor


def test_all_known_matrix_is_a_vae_round_trip(model):
    fm = make_matrix(3, 4)
    masks = torch.ones_like(fm.masks)
    cfg = DenoiseConfig(num_inference_steps=3, vae_sample=False, frame_matrix_end=0)  # multi-view: decode all
    out = denoise.denoise_frame_matrix(model, fm.images, masks, "x", cfg)
    assert out.stats.unet_calls == 0  # nothing unknown: no column or row is worth a UNet call
    for v in range(3):
        assert torch.allclose(out.latents[v], _encode_mean(model, fm.images[v]), atol=1e-5)  # diffusers' encoder
        with torch.no_grad():  # the loop's own VAE forward (ours; diffusers' within float32 rounding: test_vae.py)
            latents = denoise.vae_posterior(model, fm.images[v])[0] * model.vae.config.scaling_factor
            round_trip = denoise.decode_latents(model, latents[None])[0]
        assert torch.allclose(out.latents[v], latents, atol=1e-6)
        assert torch.allclose(out.videos[v], round_trip, atol=1e-6)


def test_known_latents_of_the_output_are_those_of_the_input(model):
    fm = make_matrix(3, 4)
    cfg = DenoiseConfig(
        num_inference_steps=3, erode_size=1, vae_sample=False, update_source_latent=False, frame_matrix_end=0
    )
    out = denoise.denoise_frame_matrix(model, fm.images, fm.masks, "x", cfg)
    known = out.latent_mask == 1
    assert 0 < known.float().mean() < 1 and ((out.latent_mask > 0) & ~known).any()  # soft edges exist
    cells = known.expand_as(out.latents)
    for v in range(3):
        expected = _encode_mean(model, fm.images[v] * fm.masks[v])
        assert torch.allclose(out.latents[v][cells[v]], expected[cells[v]], atol=1e-5)

    # With re-injection, S itself is refreshed every step, and the output still carries it where known.
    reinjected = denoise.denoise_frame_matrix(model, fm.images, fm.masks, "x", replace(cfg, update_source_latent=True))
    assert torch.equal(reinjected.latents[cells], reinjected.known_latents[cells])
    assert not torch.allclose(reinjected.known_latents[1:], out.known_latents[1:])


# --------------------------------------------------------------------------------------------------
# UNet work per step matches the schedule

# 3 views x 4 frames, 4 steps (t = 751, 501, 251, 1), E = 500, one call per column or row, CFG doubles frames.
# The input view's column is known everywhere and skipped in temporal passes (2 columns remain).
# t > E: step pass (2 cols) + R = 6 passes: 3 temporal (2 cols each) + 3 row passes (4 rows of 3 views).
HIGH_CALLS, HIGH_FRAMES = 2 + 3 * 2 + 3 * 4, 2 * (2 * 4 + 3 * 2 * 4 + 3 * 4 * 3)
SCHEDULES = {
    # t <= E: the target column only, step pass + 2 resample passes; the last step has no resampling.
    "left2right": ([HIGH_CALLS, HIGH_CALLS, 3, 1], [HIGH_FRAMES, HIGH_FRAMES, 2 * 3 * 4, 2 * 4]),
    # Both eyes (views 0 and 2) are targets; the input is the middle view 1.
    "middle2leftright": ([HIGH_CALLS, HIGH_CALLS, 6, 2], [HIGH_FRAMES, HIGH_FRAMES, 2 * 6 * 4, 2 * 2 * 4]),
    # E = 0: all views to the end. t <= 600: step pass (2 cols), 2 last-view passes (1 col), stage 2:
    # rows, reversed rows, temporal (view 1 only: 0 is known, 2 is held), reversed rows.
    "multiview": (
        [HIGH_CALLS, 2 + 2 + 3 * 4 + 1, 2 + 2 + 3 * 4 + 1, 2],
        [HIGH_FRAMES, 2 * (2 * 4 + 2 * 4 + 3 * 4 * 3 + 4), 2 * (2 * 4 + 2 * 4 + 3 * 4 * 3 + 4), 2 * 2 * 4],
    ),
}


@pytest.mark.parametrize("mode", list(SCHEDULES))
def test_unet_work_per_step_matches_the_schedule(model, mode):
    layout = "left2right" if mode == "multiview" else mode
    fm = make_matrix(3, 4, layout=layout)
    cfg = DenoiseConfig(num_inference_steps=4, max_unet_frames=1, frame_matrix_end=0 if mode == "multiview" else 500)
    out = denoise.denoise_frame_matrix(model, fm.images, fm.masks, "x", cfg, layout=layout)
    calls, frames = SCHEDULES[mode]
    assert out.stats.calls_per_step == calls
    assert out.stats.frames_per_step == frames
    assert sorted(out.videos) == ([0, 1, 2] if mode == "multiview" else [0, 2])


# --------------------------------------------------------------------------------------------------
# batching and determinism


def test_batched_equals_one_call_per_column(model):
    fm = make_matrix(3, 4)
    cfg = DenoiseConfig(num_inference_steps=3)
    batched = denoise.denoise_frame_matrix(model, fm.images, fm.masks, "x", cfg)
    single = denoise.denoise_frame_matrix(
        model, fm.images, fm.masks, "x", replace(cfg, max_unet_frames=1, max_vae_frames=1)
    )
    assert batched.stats.unet_frames == single.stats.unet_frames
    assert batched.stats.unet_calls < single.stats.unet_calls / 2
    scale = single.latents.abs().max()
    assert (batched.latents - single.latents).abs().max() <= 1e-5 * scale
    for v in batched.videos:
        assert (batched.videos[v] - single.videos[v]).abs().max() <= 1e-4


def test_same_seed_same_video_and_other_seed_other_video(model):
    fm = make_matrix(3, 4)
    cfg = DenoiseConfig(num_inference_steps=2)
    a = denoise.denoise_frame_matrix(model, fm.images, fm.masks, "x", cfg)
    b = denoise.denoise_frame_matrix(model, fm.images, fm.masks, "x", cfg)
    c = denoise.denoise_frame_matrix(model, fm.images, fm.masks, "x", replace(cfg, seed=7))
    assert torch.equal(a.latents, b.latents)
    assert not torch.allclose(a.latents, c.latents)


def test_progress_and_callback(model):
    fm = make_matrix(3, 4)
    ticks, seen = [], []
    denoise.denoise_frame_matrix(
        model,
        fm.images,
        fm.masks,
        "x",
        DenoiseConfig(num_inference_steps=3),
        progress=ticks.append,
        callback=lambda i, t, z: seen.append((i, t, tuple(z.shape))),
    )
    assert ticks == [1, 1, 1]
    assert seen == [(0, 667, (3, 4, 4, 8, 12)), (1, 334, (3, 4, 4, 8, 12)), (2, 1, (3, 4, 4, 8, 12))]


def test_svd_temporal_vae(model_dir, tmp_path):
    svd = load_zeroscope(str(model_dir), device=CPU, vae="svd", svd_path=str(save_tiny_svd_vae(tmp_path)))
    assert svd.temporal_vae
    z = torch.randn(3, 4, 4, 8, 12)
    whole = denoise.decode_latents(svd, z, max_frames=12)
    assert torch.allclose(denoise.decode_latents(svd, z, max_frames=1), whole, atol=1e-5)  # whole columns anyway
    fm = make_matrix(3, 4)
    out = denoise.denoise_frame_matrix(svd, fm.images, fm.masks, "x", DenoiseConfig(num_inference_steps=2))
    assert out.videos[2].shape == (4, 3, H, W) and out.videos[2].isfinite().all()


def test_config_rejects_bad_values():
    for bad in (dict(erode_size=2), dict(soft_mask_k=4), dict(threshold=1.5), dict(seed=-1), dict(max_unet_frames=0), dict(unet="x")):
        with pytest.raises(InputError, match=f"^{next(iter(bad))} "):  # the message names the parameter
            DenoiseConfig(**bad)
    with pytest.raises(ValueError, match="input view"):
        denoise.target_views(3, "middle2leftright", 1)


# --------------------------------------------------------------------------------------------------
# svg.py


def _svg(argv: list[str]) -> int:
    import svg

    return svg.main(argv)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def _check_results(out: Path, views, frames: int) -> dict:
    import json

    for v in views:
        assert len(list(out.glob(f"view{v:03d}_*.jpg"))) == frames
    assert len(list(out.glob("view*.jpg"))) == frames * len(views)
    assert (out / "results3d.mp4").stat().st_size > 0 and (out / "results3d.gif").stat().st_size > 0
    return json.loads((out / "manifest.json").read_text())


# multi-view: every view denoised to the end at the README's 576x320 x 16 frames x 8 views: ~40 s on 2 cores
@pytest.mark.parametrize("multiview", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["stereo", "multiview"])
def test_seed_commands_run_as_written(model_dir, tmp_path, monkeypatch, multiview):
    """The README's commands verbatim (576x320, 8 views, 16 frames), with the tiny model, on the CPU, one step."""
    monkeypatch.chdir(tmp_path)
    save_frame_matrix(make_matrix(8, 16, height=320, width=576), "Videos/frame_matrix/Obama_is_speaking")
    extra = ["--model_path", str(model_dir), "--device", "cpu", "--num_inference_steps", "1", "--quiet"]
    assert _svg(shlex.split(SEED_MULTIVIEW if multiview else SEED_STEREO) + extra) == 0
    manifest = _check_results(Path("results/Obama_is_speaking"), range(8) if multiview else (0, 7), 16)
    assert manifest["eyes"] == [0, 7] and manifest["config"]["frame_matrix_end"] == (0 if multiview else 500)
    assert manifest["unet_calls"] == 1  # the last step: one batched call (7 columns in multi-view mode)


def test_text_to_video_writes_the_clip(model_dir, tmp_path, capsys):
    argv = [
        "--prompt",
        "A cat, playing!",
        "--num_frames",
        "4",
        "--width",
        "96",
        "--height",
        "64",
        "--num_inference_steps",
        "2",
    ]
    assert (
        _svg(argv + ["--model_path", str(model_dir), "--device", "cpu", "--videos_root", str(tmp_path), "--quiet"]) == 0
    )
    frames = sorted((tmp_path / "A_cat_playing_64x96" / "images").glob("*.jpg"))
    assert [f.name for f in frames] == ["00000.jpg", "00001.jpg", "00002.jpg", "00003.jpg"]
    from svg3d.io import read_image

    assert read_image(frames[0]).shape == (64, 96, 3)


@pytest.fixture
def small_matrix(tmp_path) -> Path:
    folder = tmp_path / "fm"
    save_frame_matrix(make_matrix(3, 4), folder)
    return folder


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--num_views", "4"], "holds 3 views, but --num_views is 4"),
        (["--total_frames", "6"], "holds 4 frames"),
        (["--total_frames", "0"], "--total_frames 0: must be >= 1, or -1"),
        (["--overlap", "4"], "--overlap 4: must be >= 0 and smaller than --num_frames 4"),
        (["--overlap", "-1"], "--overlap -1: must be >= 0"),
        (["--width", "100"], "the frame matrix is 96x64, but --width/--height are 100x64"),
        (["--latent_w", "11"], "--latent_w 11 does not match ceil(96 / 8) = 12"),
        (["--width", "100", "--latent_w", "12"], "--latent_w 12 does not match ceil(100 / 8) = 13"),
        (["--width", "192", "--height", "128"], "the frame matrix is 96x64"),
        (["--right2left"], "made left2right, but --right2left"),
        (["--last_view_idx", "0"], "is the input view"),
        (["--monocular_video_idx", "1"], "--monocular_video_idx 1"),
        (["--erode_size", "2"], "--erode_size 2: must be odd"),
        (["--stage2_time_direction_denoise_freq", "0"], "--stage2_time_direction_denoise_freq 0: must be >= 1"),
        (["--low_ram_vae", "-1"], "--low_ram_vae -1: must be >= 0"),
        (["--model_path", "./no/such/model"], "video model './no/such/model': cannot load it"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(model_dir, small_matrix, capsys, extra, message):
    argv = ["--prompt", "x", "--init_image", str(small_matrix), "--num_frames", "4", "--width", "96", "--height", "64"]
    argv += ["--model_path", str(model_dir), "--device", "cpu", "--output_root", str(small_matrix.parent / "out")]
    assert _svg(argv + extra) == 2
    assert message in _error_line(capsys)
    assert not (small_matrix.parent / "out").exists()


def test_missing_frame_file_is_named(model_dir, small_matrix, capsys):
    victim = next(small_matrix.glob("00002_baseline_*_001.png"))
    victim.unlink()
    argv = ["--prompt", "x", "--init_image", str(small_matrix), "--num_frames", "4", "--width", "96", "--height", "64"]
    assert _svg(argv + ["--model_path", str(model_dir), "--device", "cpu"]) == 2
    assert victim.name in _error_line(capsys)


def test_hub_model_offline_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    with pytest.raises(InputError, match=r"video model 'cerspense/zeroscope_v2_576w'.*offline"):
        load_zeroscope("cerspense/zeroscope_v2_576w", device=CPU)


def test_seed_commands_match_readme():
    readme = (Path(__file__).parents[1] / ".." / "shared" / "seed" / "SVG_README.md").resolve()
    if not readme.is_file():
        pytest.skip("seed README not beside the checkout")
    text = " ".join(readme.read_text().split())
    for command in (SEED_STEREO, SEED_MULTIVIEW):
        assert "python svg.py " + " ".join(command.split()) in text


# --------------------------------------------------------------------------------------------------
# DeepCache (issue 22): an option beyond the exact schedule


def test_deep_cache_is_exact_on_whole_unet_steps_and_close_between(model):
    """``deep_cache=N``: steps 0, N, 2N ... run the whole UNet (through ``forward_deep``), the others reuse
    the inner-level features of the same pass and call. One step (a whole-UNet step only) equals the exact run
    bit for bit; over 4 steps with N = 2 the result moves (reuse happened) but stays within 10 % of the
    latents' scale and its mean change is under 5 % of what another seed changes (seen on the tiny model:
    2.9 % and 1.8 %). Real weights decide its quality, which this cannot measure."""
    fm = make_matrix(3, 4)
    one = DenoiseConfig(num_inference_steps=1, unet="ours")
    exact = denoise.denoise_frame_matrix(model, fm.images, fm.masks, "a red car", one)
    cached = denoise.denoise_frame_matrix(model, fm.images, fm.masks, "a red car", replace(one, deep_cache=2))
    assert torch.equal(cached.latents, exact.latents)

    four = replace(one, num_inference_steps=4)
    exact = denoise.denoise_frame_matrix(model, fm.images, fm.masks, "a red car", four)
    cached = denoise.denoise_frame_matrix(model, fm.images, fm.masks, "a red car", replace(four, deep_cache=2))
    other = denoise.denoise_frame_matrix(model, fm.images, fm.masks, "a red car", replace(four, seed=1))
    change = (cached.latents - exact.latents).abs()
    assert 0 < change.max() <= 0.1 * exact.latents.abs().max()
    assert change.mean() <= 0.05 * (other.latents - exact.latents).abs().mean()
    assert cached.stats.unet_frames == exact.stats.unet_frames  # the same calls, cheaper ones


def test_deep_cache_needs_our_unet():
    with pytest.raises(InputError, match="^deep_cache 2: needs unet ours"):
        DenoiseConfig(deep_cache=2, unet="diffusers")
    with pytest.raises(InputError, match="^deep_cache 0: must be >= 1"):
        DenoiseConfig(deep_cache=0, unet="ours")
    from svg3d.config import DiffusionConfig
    from svg3d.stages.fill.diffusion import denoise_config

    with pytest.raises(InputError, match="^deep_cache 2: needs --unet ours"):  # convert's --deep-cache
        DiffusionConfig(deep_cache=2, unet="diffusers")
    assert DiffusionConfig(deep_cache=2).unet == "ours"  # the default forward takes it
    assert denoise_config(DiffusionConfig(deep_cache=3, unet="ours"), multiview=False).deep_cache == 3


def test_compile_is_chosen_when_the_windows_repay_a_cold_compile():
    from svg3d.denoise import COMPILE_COLD_S, COMPILE_SAVES_S, compile_pays

    cuda = torch.device("cuda")  # (a device object: nothing runs on it)
    first = next(n for n in range(1, 100) if n * COMPILE_SAVES_S > COMPILE_COLD_S)
    assert first == 5  # the H100's figures: 34.5 s saved per window against 150.5 s of cold compile
    assert compile_pays(cuda, "ours", first) and not compile_pays(cuda, "ours", first - 1)
    assert not compile_pays(torch.device("cpu"), "ours", 1000)  # Inductor's C++ on a CPU: not measured to pay
    assert not compile_pays(cuda, "diffusers", 1000)
    # fewer steps or views save less per window: more windows are needed
    assert not compile_pays(cuda, "ours", first, steps=25) and compile_pays(cuda, "ours", 2 * first, steps=25)
    assert not compile_pays(cuda, "ours", first, views=4) and compile_pays(cuda, "ours", 2 * first, views=4)

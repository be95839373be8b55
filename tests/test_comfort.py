"""Comfortable 3D (svg3d.comfort): the budget from the screen, the effect per shot, window violations, the report.

The end-to-end tests render scenes with exact depth, convert them through ``convert.convert`` and measure the
parallax BETWEEN THE EXPORTED EYES by block matching (never from the settings).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from svg3d import camera, cli, comfort, convert, io, report, scene
from svg3d.__main__ import main
from svg3d.checks import InputError
from svg3d.config import ConvertConfig, DepthConfig, MatrixConfig
from svg3d.stages.export import ExportSettings
from tests.media import write_clip

H, W = 128, 320  # 1 % of the width = 3.2 px
PX = 100 / W  # one pixel in % of the width


# --------------------------------------------------------------------------------------------------
# the budget


def test_the_default_screen_is_the_fixed_default_and_keeps_todays_plan():
    b = comfort.screen_budget()
    assert (b.near, b.far) == (1.25, 1.25) and (b.strength, b.convergence) == (
        camera.DEFAULT_STRENGTH,
        camera.DEFAULT_CONVERGENCE,
    )
    m = ConvertConfig().matrix
    assert comfort.plan_config(m) == replace(m, convergence=camera.DEFAULT_CONVERGENCE)
    assert camera.plan_views(comfort.plan_config(m), 576) == camera.plan_views(m, 576)
    physical = MatrixConfig()
    assert comfort.plan_config(physical) is physical


def _vergence_deg(parallax: float, v: comfort.Viewing) -> float:
    return math.degrees(2 * math.atan((comfort.IPD - parallax) / (2 * v.distance)))


def test_budget_rules_hand_computed():
    tv = comfort.SCREENS["tv"]
    b = comfort.screen_budget("tv")
    assert b.binding == ("1-degree", "1-degree")
    # the near and far limits change the eyes' vergence by exactly 1 degree against the screen's
    near_m, far_m = b.near / 100 * tv.width, b.far / 100 * tv.width
    assert _vergence_deg(-near_m, tv) - _vergence_deg(0, tv) == pytest.approx(1.0, abs=1e-9)
    assert _vergence_deg(0, tv) - _vergence_deg(far_m, tv) == pytest.approx(1.0, abs=1e-9)
    # cinema: the screen's vergence is under 1 degree, so behind it only divergence limits (the eyes' 63 mm)
    c = comfort.screen_budget("cinema")
    assert c.binding[1] == "divergence" and c.far == pytest.approx(100 * comfort.IPD / 12.0)
    assert c.convergence < 0.5  # more room in front than behind
    # Shibata's lines: at their limits the vergence distance in dioptres is m D_f + T
    desk = comfort.SCREENS["desktop"]
    n_m, f_m = (x / 100 * desk.width for x in comfort.screen_budget("desktop").rules["shibata2011"])
    dv = lambda p: (1 - p / comfort.IPD) / desk.distance  # noqa: E731
    assert dv(-n_m) == pytest.approx(comfort.SHIBATA_NEAR[0] / desk.distance + comfort.SHIBATA_NEAR[1])
    assert dv(f_m) == pytest.approx(comfort.SHIBATA_FAR[0] / desk.distance + comfort.SHIBATA_FAR[1])
    # a bigger screen at the same distance: a smaller share of its width
    assert comfort.screen_budget("1.5,2.5").near < comfort.screen_budget("1.0,2.5").near


def test_screen_and_window_flags_are_checked():
    assert comfort.parse_screen("1.21,2.5") == comfort.Viewing(1.21, 2.5)
    for bad in ("bogus", "1,2,3", "0,2", "a,b"):
        with pytest.raises(ValueError):
            comfort.parse_screen(bad)
    with pytest.raises(InputError, match="screen 'bogus'") as e:
        MatrixConfig(screen="bogus")
    assert e.value.params == ("screen",)
    with pytest.raises(InputError, match="window_violations"):
        MatrixConfig(window_violations="maybe")
    with pytest.raises(InputError, match="auto_strength"):
        MatrixConfig(auto_strength=True, metric_depth=True)


def test_cli_flags(tmp_path, capsys):
    parser = cli.create_parser()

    def matrix(*flags):
        return cli.config_from_args(parser.parse_args(["convert", "in.mp4", "-o", str(tmp_path), *flags])).matrix

    m = matrix("--strength", "auto", "--screen", "tv", "--window-violations", "float")
    assert m.auto_strength and m.strength is None and m.screen == "tv" and m.window_violations == "float"
    cinema = comfort.screen_budget("cinema")  # --screen alone: the fixed effect that fills its budget
    assert (matrix("--screen", "cinema").strength, matrix("--screen", "cinema").convergence) == (
        cinema.strength,
        cinema.convergence,
    )
    assert (matrix().strength, matrix().convergence, matrix().screen) == (2.5, 0.5, "default")  # today's default
    for flags, message in [
        (["--screen", "bogus"], "--screen 'bogus': expected one of default, phone"),
        (["--strength", "auto", "--baseline", "0.1"], "--strength and --baseline both set the 3D effect"),
        (["--strength", "auto", "--screen", "2,x"], "--screen"),
    ]:
        rc = main(["convert", str(tmp_path / "none.mp4"), "-o", str(tmp_path / "o"), *flags])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and message in err and "\n" not in err and "Traceback" not in err, err
    with pytest.raises(SystemExit):  # argparse's own error, as for every typed flag
        parser.parse_args(["convert", "in.mp4", "-o", str(tmp_path), "--strength", "strong"])
    assert "expected a number (% of the width) or auto" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# the effect per shot


def _ranges(*shots: tuple[int, float, float]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Per-frame (lo, hi) raw disparity of shots given as (frames, lo, hi), and the cuts."""
    lo = np.concatenate([np.full(n, a) for n, a, _ in shots])
    hi = np.concatenate([np.full(n, b) for n, _, b in shots])
    cuts = list(np.cumsum([n for n, _, _ in shots])[:-1])
    return lo, hi, cuts


def test_auto_strength_follows_the_shots_depth_and_stays_in_the_budget():
    lo, hi, cuts = _ranges((8, 1 / 2.4, 1 / 1.6), (8, 1 / 8.0, 1 / 1.6), (8, 0.001, 1.0))  # close-up, room, landscape
    budget = comfort.screen_budget("tv")
    track = comfort.effect_track(
        lo, hi, np.zeros((24, 2)), cuts, width=W, budget=budget, strength=None, convergence=None, auto=True
    )
    s = [track.strength[a] for a, _ in track.shots]
    assert s[0] == pytest.approx((1 - 1.6 / 2.4) * budget.strength) and s[1] == pytest.approx(0.8 * budget.strength)
    assert s[2] == pytest.approx(0.999 * budget.strength)  # reaching to the sky: (almost) the whole budget
    for a, b in track.shots:
        assert np.all(track.strength[a:b] == track.strength[a]) and np.all(
            track.convergence[a:b] == track.convergence[a]
        )
        assert budget.contains(track.strength[a], track.convergence[a])
    flat = comfort.effect_track(
        *_ranges((8, 0.99, 1.0))[:2],
        np.zeros((8, 2)),
        [],
        width=W,
        budget=budget,
        strength=None,
        convergence=None,
        auto=True,
    )
    assert flat.strength[0] == pytest.approx(comfort.RHO_MIN * budget.strength)  # a flat wall: the floor, not 0
    # a convergence given: the strength fits both sides at it
    front = comfort.effect_track(
        lo, hi, np.zeros((24, 2)), cuts, width=W, budget=budget, strength=None, convergence=0.2, auto=True
    )
    assert np.all(front.convergence == 0.2) and all(budget.contains(x, 0.2) for x in front.strength)
    assert not budget.contains(track.strength[-1], 0.2)


def test_remap_gives_each_frame_its_effect_inside_the_envelope():
    lo, hi, cuts = _ranges((4, 0.2, 1.0), (4, 0.5, 1.0))
    edge = np.zeros((8, 2))
    edge[5, 0] = 0.9  # a violation in the second shot: its screen plane moves
    budget = comfort.screen_budget("tv")
    track = comfort.effect_track(lo, hi, edge, cuts, width=W, budget=budget, strength=None, convergence=None, auto=True)
    assert (
        track.changed
        and track.convergence[4] == pytest.approx(0.9)
        and track.convergence[0] == pytest.approx(budget.convergence)
    )
    d = torch.rand(8, 6, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    d[:, 0, 0], d[:, 0, 1] = 0.0, 1.0
    out = track.remap(d, 0, 8)
    assert out.min() >= 0 and out.max() <= 1
    s0, c0 = track.envelope
    s, c = torch.from_numpy(track.strength)[:, None, None], torch.from_numpy(track.convergence)[:, None, None]
    torch.testing.assert_close(
        s0 * (c0 - out), s * (c - d), rtol=0, atol=1e-12
    )  # the envelope camera's parallax is the frame's


def test_edge_objects_and_specks():
    d = np.zeros((2, 100, 200))
    d[0, 40:60, :3] = 0.9  # an object cut by the left edge, 20 % of the rows
    d[1, 50:52, :3] = 0.9  # a speck: 2 % of the rows
    d[:, :, 100:120] = 1.0  # the nearest thing, inside the frame: not at an edge
    edge = comfort.edge_disparity(d)
    assert edge[0, 0] == pytest.approx(0.9) and edge[0, 1] == 0 and edge[1, 0] == 0


def test_the_scan_in_threads_equals_the_scan_frame_by_frame(monkeypatch):
    """``scan_disparity`` scans chunks in threads: each frame's edge objects and histogram are those of a plain loop
    over the frames (the last chunk short, one chunk failing raises)."""
    rng = np.random.default_rng(3)
    d = rng.random((23, 18, 40)).astype(np.float32) * 4
    lo, hi = d.min((1, 2)) * 1.1, d.max((1, 2)) * 0.9
    monkeypatch.setattr(comfort, "SCAN_THREADS", 3)
    scan = comfort.scan_disparity(lambda a, b: d[a:b], 23, lo, hi, chunk=5)
    norm = comfort.normalise(d.astype(np.float64), lo, hi)
    assert np.array_equal(scan.edge, comfort.edge_disparity(norm))
    want = np.stack([np.histogram(f, bins=comfort.HISTOGRAM_BINS, range=(0.0, 1.0))[0] / f.size for f in norm])
    assert np.array_equal(scan.histogram, want)

    def broken(a, b):
        if a == 10:
            raise OSError("damaged")
        return d[a:b]

    with pytest.raises(OSError, match="damaged"):
        comfort.scan_disparity(broken, 23, lo, hi, chunk=5)


def test_steady_ranges_contain_every_frame_and_move_slowly():
    rng = np.random.default_rng(0)
    t = np.arange(30)
    lo = 0.1 + 0.002 * t + 0.01 * rng.random(30)  # a dolly: the range grows, with noise
    hi = 0.5 + 0.03 * t + 0.02 * rng.random(30)
    lo[20:], hi[20:] = 0.2, 0.3  # a cut at 20 to a shallow shot
    step = 0.01
    low, high = comfort.steady_ranges(lo, hi, [20], step)
    assert np.all(low <= lo) and np.all(high >= hi)  # every frame inside the range it is normalised over
    for a, b in ((0, 20), (20, 30)):
        rate = step * (hi[a:b] - lo[a:b]).min()
        assert np.abs(np.diff(low[a:b])).max() <= rate + 1e-12 and np.abs(np.diff(high[a:b])).max() <= rate + 1e-12
        # the narrowest such range: each end touches a frame's own range somewhere
        assert np.isclose(low[a:b], lo[a:b]).any() and np.isclose(high[a:b], hi[a:b]).any()
    assert np.all(low[20:] == 0.2) and np.all(high[20:] == 0.3)  # the cut keeps the shots apart
    whole = comfort.steady_ranges(lo, hi, [20], 0.0)
    assert np.all(whole[0][:20] == lo[:20].min()) and np.all(whole[1][:20] == hi[:20].max())
    own = comfort.steady_ranges(lo, hi, [20], math.inf)
    assert np.array_equal(own[0], lo) and np.array_equal(own[1], hi)
    # the report's change of any point's parallax per frame: at most S step
    budget = comfort.screen_budget("tv")
    track = comfort.effect_track(low, high, np.zeros((30, 2)), [20], width=W, budget=budget, strength=None,
                                 convergence=None, auto=True)  # fmt: skip
    change = report.screen_change(track.parallax(1.0), track.parallax(0.0), low, high, track.shots)
    assert change.max() <= track.strength.max() * step + 1e-12 and change[1:20].max() > 0
    moving = report.screen_change(track.parallax(1.0), track.parallax(0.0), lo, hi, track.shots)
    assert moving.max() > 10 * change.max()  # the frames' own ranges: the whole scene re-stretched frame by frame


@pytest.mark.parametrize("mode", comfort.WINDOW_CHOICES)
def test_window_violations_are_handled_as_chosen(mode):
    lo, hi, cuts = _ranges((6, 0.2, 1.0), (6, 0.2, 1.0))
    edge = np.zeros((12, 2))
    edge[2, 1] = 0.95  # frame 2: something at the right edge, near
    edge[8, 0] = 0.3  # frame 8: behind the screen (0.3 < 0.5): no violation
    budget = comfort.screen_budget()
    track = comfort.effect_track(
        lo, hi, edge, cuts, width=W, budget=budget, strength=2.5, convergence=None, auto=False, windows=mode
    )
    assert track.violations.tolist() == [i == 2 for i in range(12)]
    assert np.all(track.strength[6:] == 2.5) and np.all(track.convergence[6:] == 0.5) and not track.windows[6:].any()
    if mode == "screen":  # the screen plane at the object, the farthest point kept within its limit, for the whole shot
        assert np.all(track.convergence[:6] == 0.95) and np.all(track.strength[:6] * 0.95 <= 1.25 + 1e-9)
        assert np.all(track.parallax(0.95, slice(0, 6)) >= 0)
    elif mode == "float":  # bars wider than the object's crossed parallax, on the right eye's right edge
        crossed_px = 2.5 * (0.95 - 0.5) / 100 * W
        assert np.all(track.windows[:6, 1] >= crossed_px) and not track.windows[:, 0].any()
        assert np.all(track.strength == 2.5) and np.all(track.convergence == 0.5)
    else:
        assert not track.changed and not track.windows.any()
    assert track.handling == [mode, None]
    assert track.unhandled(W).tolist() == [mode == "off" and i == 2 for i in range(12)]


def test_a_screen_plane_with_no_room_behind_floats_a_window_instead():
    """--convergence 0 (all in front): moving the screen plane to the edge object would flatten the shot."""
    lo, hi, cuts = _ranges((6, 0.2, 1.0))
    edge = np.zeros((6, 2))
    edge[:, 0] = 0.8
    budget = comfort.screen_budget()
    track = comfort.effect_track(
        lo, hi, edge, cuts, width=W, budget=budget, strength=2.5, convergence=0.0, auto=False, windows="screen"
    )
    assert track.handling == ["float"] and np.all(track.strength == 2.5) and np.all(track.convergence == 0.0)
    assert np.all(track.windows[:, 0] >= 2.5 * 0.8 / 100 * W) and not track.windows[:, 1].any()


def test_float_window_blacks_the_outer_edges():
    left = np.full((2, 4, 10, 3), 200, np.uint8)
    right = left.copy()
    fl, fr = comfort.float_window(left, right, np.array([[3, 0], [0, 2]]))
    assert (fl[0, :, :3] == 0).all() and (fl[0, :, 3:] == 200).all() and (fr[0] == 200).all()
    assert (fr[1, :, 8:] == 0).all() and (fr[1, :, :8] == 200).all() and (fl[1] == 200).all()
    assert (left == 200).all()  # inputs untouched


def test_leaving_the_budget_is_a_warning_naming_the_flags(caplog):
    caplog.set_level(logging.WARNING, logger="svg3d.comfort")
    m = MatrixConfig()  # the paper's physical camera: 7 cm, 800 px at 576, depth in [0.91, 10] m: all in front
    plan = camera.plan_views(m, 576)
    near, far = comfort.check_physical(m, plan, np.ones(3), np.ones(3), width=576)
    k = 100 * 800 * 0.07 / 576
    assert near[0] == pytest.approx(-k * 1.1) and far[0] == pytest.approx(-k * 0.1)
    assert all(f in caplog.text for f in ("--baseline", "--focal", "--convergence", "--strength auto"))
    caplog.clear()
    comfort.say_budget(replace(ConvertConfig().matrix, strength=8.0, screen="desktop"))
    assert "--strength" in caplog.text and "desktop" in caplog.text
    caplog.clear()
    comfort.say_budget(ConvertConfig().matrix)
    assert caplog.text == ""  # the default inside its own budget


# --------------------------------------------------------------------------------------------------
# end to end: rendered scenes with exact depth, measured between the exported eyes


def _shot(
    seed: int, frames: int, *, backdrop: float | None = None, edge_box: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """A static shot: frames uint8 (n, H, W, 3) and inverse depth (n, H, W). ``backdrop``: a close-up, one box in
    front of a near wall; ``edge_box``: a box at 1.7 m cut by the left frame edge."""
    sc = scene.make_scene(
        seed,
        num_frames=frames,
        height=H,
        width=W,
        static=True,
        num_boxes=1 if backdrop else 3,
        num_spheres=0 if backdrop else 1,
    )
    if backdrop:
        sc = replace(sc, backdrop_z=backdrop)
    if edge_box:
        centre = sc.box_center0.copy()
        centre[0] = [-0.5 * W / sc.focal * 1.7, 0.0, 1.7 + sc.box_half[0, 2]]
        sc = replace(sc, box_center0=centre)
    rgb, z = scene.render(sc)
    return (rgb.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy(), (1 / z).numpy()


def convert_clip(frames: Path, depth: Path, out: Path, **matrix) -> tuple[np.ndarray, np.ndarray, dict]:
    config = ConvertConfig(
        depth=DepthConfig(depth_from=depth), flow="dis", filler="classical", matrix=replace(ConvertConfig().matrix, **matrix),
        exports=ExportSettings(exports=("eyes_png",)),
    )  # fmt: skip
    result = convert.convert(frames, out, config)
    left, right = (io.read_frames(io.list_images(result.exports["eyes_png"] / side)) for side in ("left", "right"))
    report = json.loads(result.exports["report_json"].read_text())
    assert result.exports["report"].stat().st_size > 10_000  # the PNG beside it
    return left, right, report


def measure(
    left: np.ndarray, right: np.ndarray, max_shift: int = 40, window: int = 5, tolerance: float = 1.5, unique: float = 0.0
) -> np.ndarray:
    """Parallax ``x_right - x_left`` in px of every left-eye pixel ``(H, W)`` by block matching over a window x window
    box (mean absolute difference per channel, 0-255); NaN where the best match is not near exact, or (``unique`` > 0)
    where a match 2 px or more away costs less than ``unique`` more (a flat region matches anywhere)."""
    lf, rf = left.astype(np.float32), right.astype(np.float32)
    h, w, _ = lf.shape
    costs = np.empty((2 * max_shift + 1, h, w), np.float32)
    for i, s in enumerate(range(-max_shift, max_shift + 1)):
        diff = np.full((h, w), 255.0, np.float32)
        x0, x1 = max(0, -s), min(w, w - s)
        diff[:, x0:x1] = np.abs(lf[:, x0:x1] - rf[:, x0 + s : x1 + s]).mean(2)
        costs[i] = cv2.blur(diff, (window, window))
    best = costs.argmin(0)
    cost = np.take_along_axis(costs, best[None], 0)[0]
    ok = cost < tolerance
    if unique > 0:
        near = np.abs(np.arange(2 * max_shift + 1)[:, None, None] - best[None]) <= 1
        ok &= np.where(near, np.inf, costs).min(0) >= cost + unique
    return np.where(ok, best - max_shift, np.nan)


@pytest.fixture(scope="module")
def two_shots(tmp_path_factory):
    """A close-up (a box 1.6 m away in front of a wall at 2.4 m) cut to a wide shot (1.6 m .. 8 m), --strength auto
    for a TV, measured between the exported eyes."""
    folder = tmp_path_factory.mktemp("two_shots")
    n = 5
    frames, depth = write_clip(folder, [_shot(0, n, backdrop=2.4), _shot(3, n)])
    left, right, report = convert_clip(frames, depth, folder / "out", auto_strength=True, screen="tv")
    parallax = np.stack([measure(a, b) for a, b in zip(left, right, strict=True)]) * PX  # (T, H, W) % of the width
    return n, parallax, report


def test_a_close_up_and_a_wide_shot_get_their_own_strength_within_the_budget(two_shots):
    n, parallax, report = two_shots
    assert report["cuts"] == [n] and report["mode"] == "auto"
    budget = comfort.screen_budget("tv")
    ranges = []
    for a, b in ((0, n), (n, 2 * n)):
        p = parallax[a:b]
        assert np.isfinite(p).mean() > 0.6  # most pixels matched
        lo, hi = np.nanpercentile(p, [1, 99])
        ranges.append(hi - lo)
        inside = (p >= -budget.near - PX) & (p <= budget.far + PX)  # one pixel of rounding
        assert inside[np.isfinite(p)].mean() >= 0.99
    assert ranges[0] < 0.6 * ranges[1]  # measured: the close-up gets much less depth than the wide shot
    assert ranges[1] > 0.6 * budget.strength  # ... which uses most of the budget
    strengths = [s["strength"] for s in report["shots"]]
    assert strengths[0] < strengths[1] <= budget.strength + 1e-9


def test_strength_is_constant_within_a_static_shot(two_shots):
    n, parallax, report = two_shots
    for a, b in ((0, n), (n, 2 * n)):
        assert len(set(report["frames"]["strength"][a:b])) == 1 and len(set(report["frames"]["convergence"][a:b])) == 1
        # measured: every frame of the shot has the same parallax wherever both are matched
        both = np.isfinite(parallax[a]) & np.isfinite(parallax[b - 1])
        assert np.mean(parallax[a][both] == parallax[b - 1][both]) > 0.99
    assert max(report["screen_change"]["per_frame"]) == 0.0


def test_the_reports_numbers_match_the_measurement(two_shots):
    n, parallax, report = two_shots
    for t in range(2 * n):
        lo, hi = np.nanpercentile(parallax[t], [1, 99])
        assert lo == pytest.approx(
            report["frames"]["near"][t], abs=PX
        )  # the nearest 1 % of pixels sit at the range's top
        assert hi == pytest.approx(report["frames"]["far"][t], abs=PX)
    assert report["inside_budget_min"] == pytest.approx(1.0)
    share = np.array(report["histogram"]["share"]).sum()
    assert share == pytest.approx(1.0)


def _mapping(shift: np.ndarray, disparity: np.ndarray, min_pixels: int = 30, px: float = PX) -> tuple[float, float, float, float]:
    """The line ``parallax = a + b D`` (% of the width) over true inverse depth D that a frame's measured parallax
    follows, to a fraction of a pixel: the warp rounds every pixel's shift to whole pixels, so where the shift measured
    (``shift`` px ``(H, W)``, NaN unmatched) steps from k + 1 to k (the D with the fewest pixels on the wrong side)
    the line is at k + 1/2; the line through those steps (again without any step more than a quarter pixel off).
    ``px``: one pixel in % of the width. Returns ``(a, b, d_lo, d_hi)``, the last two: the D range of the steps (NaN
    where fewer than 3 steps are found)."""
    ok = np.isfinite(shift)
    s, d = shift[ok].astype(int), disparity[ok]
    steps = []
    for k in range(s.min(), s.max()):
        far, near = np.sort(d[s == k + 1]), np.sort(d[s == k])  # shift k + 1: farther (crossed parallax is < 0)
        if min(len(far), len(near)) < min_pixels:
            continue
        tau = np.concatenate([far, near])
        wrong = len(far) - np.searchsorted(far, tau, "right") + np.searchsorted(near, tau, "right")
        steps.append((tau[wrong.argmin()], k + 0.5))
    if len(steps) < 3:
        return math.nan, math.nan, math.nan, math.nan
    x, y = np.array(steps).T
    b, a = np.polyfit(x, y, 1)
    keep = np.abs(y - (a + b * x)) < 0.25
    if keep.sum() < 3:  # too few depths to draw the line through
        return math.nan, math.nan, math.nan, math.nan
    b, a = np.polyfit(x[keep], y[keep], 1)
    return a * px, b * px, float(x[keep].min()), float(x[keep].max())


def dolly_scene(n: int) -> scene.Scene:
    """A camera moving in 3 cm a frame (``scene``'s dolly), looking down at the ground and rolled a little, so that
    the inverse depth of the pixels is spread evenly (the measured parallax is whole pixels: only pixels of many
    depths give the line it follows to a fraction of a pixel, ``_mapping``)."""
    sc = scene.make_scene(2, num_frames=n, height=H, width=W, camera_motion="dolly")
    tilt = scene.camera_path(scene.CameraMotion(tilt=-0.2), 2, 0)[0][1]  # looking down 0.2 rad
    r = 0.25  # roll, rad
    roll = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return replace(sc, cam_rotation=np.repeat((tilt @ roll)[None], n, 0))


@pytest.fixture(scope="module")
def dolly(tmp_path_factory):
    """``dolly_scene`` converted with --strength auto for a TV."""
    folder = tmp_path_factory.mktemp("dolly")
    rgb, z = scene.render(dolly_scene(12))
    shot = ((rgb.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy(), (1 / z).numpy())
    frames, depth = write_clip(folder, [shot])
    left, right, report = convert_clip(frames, depth, folder / "out", auto_strength=True, screen="tv")
    return shot[1], np.stack([measure(a, b) for a, b in zip(left, right, strict=True)]), report  # px


def test_a_dolly_keeps_its_screen_plane_steady_within_the_budget(dolly):
    """The scene's depth range changes as the camera moves in; the parallax of a point at a given depth (the screen
    plane, and every depth around it) must not follow it from frame to frame, and every frame stays in the budget."""
    disparity, shift, report = dolly
    n = len(shift)
    budget = comfort.screen_budget("tv")
    visible = comfort.visible_change("tv")
    for p in shift * PX:  # measured: inside the budget
        ok = p[np.isfinite(p)]
        assert np.isfinite(p).mean() > 0.6 and ((ok >= -budget.near - PX) & (ok <= budget.far + PX)).mean() >= 0.99
    first, last = _mapping(shift[0], disparity[0]), _mapping(shift[-1], disparity[-1])
    assert first[1] < -0.5 * budget.strength  # the nearer, the more crossed: the steps found the depth
    d = np.array([max(first[2], last[2]), min(first[3], last[3])])  # the depths both frames measure
    assert d[1] - d[0] > 0.5 * (first[3] - first[2])
    change = np.abs((last[0] + last[1] * d) - (first[0] + first[1] * d)).max()
    # Measured, the parallax of any depth moves by less than a viewer sees per frame, over the shot. (Frame by frame
    # the measurement cannot resolve it: 0.02 % is 0.06 px at this size, about the precision of the steps' line.)
    assert change / (n - 1) < visible
    assert report["screen_change"]["max_per_frame"] < visible and report["screen_change"]["visible"] == visible
    assert len(set(report["frames"]["strength"])) == 1  # one shot, one strength


def test_the_reports_strength_panel_shows_the_physical_cameras_scale_and_screen_plane(tmp_path):
    """--baseline/--focal with --metric-depth: the report gives the camera's parallax per 1/m and its screen plane per
    shot, and each frame's effective strength (the parallax span of its range) and convergence, as measured."""
    frames_uint8, disparity = _shot(3, 3)
    frames, depth = write_clip(tmp_path, [(frames_uint8, disparity)])
    left, right, report = convert_clip(frames, depth, tmp_path / "out", strength=None, convergence=None, metric_depth=True)
    assert report["mode"] == "physical" and len(report["shots"]) == 1
    shot = report["shots"][0]
    assert shot["scale"] > 0 and shot["screen"] == 0.0  # the paper's camera: the screen plane at infinity
    for t in range(len(left)):
        p = measure(left[t], right[t]) * PX
        ok = np.isfinite(p)
        assert ok.mean() > 0.6
        b, a = np.polyfit(disparity[t][ok], p[ok], 1)  # measured: parallax = -scale (q - screen)
        assert -b == pytest.approx(shot["scale"], rel=0.03) and a == pytest.approx(shot["scale"] * shot["screen"], abs=PX)
        lo, hi = np.nanpercentile(p, [1, 99])  # the nearest and the farthest 1 %
        assert hi - lo == pytest.approx(report["frames"]["strength"][t], abs=2 * PX)
        assert hi / (hi - lo) == pytest.approx(report["frames"]["convergence"][t], abs=0.1)
        assert report["frames"]["convergence"][t] < 0  # everything in front of the screen: its plane behind the scene


@pytest.fixture(scope="module")
def edge_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("edge")
    frames, depth = write_clip(folder, [_shot(3, 4, edge_box=True)])
    return folder, frames, depth


def _edge_parallax(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Measured parallax (px) of the box cut by the left edge: columns 0..7 of the middle rows, where it is."""
    return measure(left, right)[H // 4 : 3 * H // 4, :8]


def test_an_object_cut_by_the_frame_edge_in_front_of_the_screen_is_handled(edge_clip):
    folder, frames, depth = edge_clip
    left, right, report = convert_clip(frames, depth, folder / "off", window_violations="off")
    crossed = np.nanmin(_edge_parallax(left[0], right[0]))
    assert crossed <= -2  # unhandled: the box stands in front of the screen at the frame edge
    assert (
        report["violation_frames"] == report["unhandled_violation_frames"] == [0, 1, 2, 3]
        and report["window_violations"] == "off"
    )

    left, right, report = convert_clip(frames, depth, folder / "screen")  # the default: the screen plane moves
    assert (
        report["violation_frames"] == [0, 1, 2, 3]
        and report["window_violations"] == "screen"
        and report["unhandled_violation_frames"] == []
    )
    for t in range(4):
        p = _edge_parallax(left[t], right[t])
        assert np.isfinite(p).mean() > 0.8 and np.nanmin(p) >= -0.5  # measured: the box sits on or behind the screen
    assert report["shots"][0]["convergence"] > 0.5

    left, right, report = convert_clip(frames, depth, folder / "float", window_violations="float")
    bar = report["frames"]["float_left_px"][0]
    assert report["unhandled_violation_frames"] == [] and report["shots"][0]["handled"] == "float"
    assert bar >= -crossed  # the window's left edge floats in front of the box
    for t in range(4):
        assert (left[t][:, :bar] == 0).all() and left[t][:, bar:].any(axis=(0, 2)).all()
        assert not (right[t][:, -1] == 0).all()  # nothing at the right edge: no bar there
    assert (
        report["shots"][0]["convergence"] == 0.5 and report["shots"][0]["strength"] == 2.5
    )  # the effect itself unchanged


def test_reports_of_a_batchs_segments_join_into_the_whole_clips():
    """batch splits a long input at cuts and joins the exports: the joined report equals the whole clip's."""
    rng = np.random.default_rng(0)
    lo, hi, cuts = _ranges((5, 0.2, 1.0), (7, 0.5, 1.0), (4, 0.1, 1.0))
    edge = np.zeros((16, 2))
    edge[9, 0] = 0.9
    hist = rng.random((16, comfort.HISTOGRAM_BINS))
    hist /= hist.sum(1, keepdims=True)
    budget = comfort.screen_budget("tv")

    def report_of(a: int, b: int) -> dict:
        cut = [c - a for c in cuts if a < c < b]
        track = comfort.effect_track(
            lo[a:b], hi[a:b], edge[a:b], cut, width=W, budget=budget, strength=None, convergence=None, auto=True
        )
        return report.build_report(near=track.parallax(1.0), far=track.parallax(0.0), histogram=hist[a:b], budget=budget, shots=track.shots,
                                   fps=25.0, track=track, lo=lo[a:b], hi=hi[a:b], width=W)  # fmt: skip

    whole, joined = report_of(0, 16), report.join_reports([report_of(0, 5), report_of(5, 16)], [5, 11])
    for key in (
        "frames",
        "shots",
        "cuts",
        "violation_frames",
        "unhandled_violation_frames",
        "frames_count",
        "inside_budget_min",
        "screen_change",
    ):
        assert joined[key] == whole[key], key
    mean = lambda r: np.dot(np.convolve(r["histogram"]["edges"], [0.5, 0.5], "valid"), r["histogram"]["share"])  # noqa: E731
    step = np.diff(joined["histogram"]["edges"])[0] + np.diff(whole["histogram"]["edges"])[0]
    assert sum(joined["histogram"]["share"]) == pytest.approx(1.0, abs=1e-4) and mean(joined) == pytest.approx(
        mean(whole), abs=step
    )

"""The 3D effect (strength and screen plane, or the physical camera) and per-shot depth ranges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from svg3d import camera, shots
from svg3d.checks import InputError
from svg3d.config import ConvertConfig, MatrixConfig
from svg3d.scene import make_scene, render
from svg3d.stages.matrix import MatrixSource


def texture(h: int, w: int) -> np.ndarray:
    """A random texture ``uint8 (1, H, W, 3)``: every pixel distinct enough to find where it went."""
    return np.random.default_rng(0).integers(0, 256, (1, h, w, 3), dtype=np.uint8)


def shift_of(source: np.ndarray, warped: torch.Tensor, known: torch.Tensor, rows: slice, cols: slice) -> int:
    """The integer column shift s with warped[y, x + s] == source[y, x] over a region (exactly)."""
    src = torch.from_numpy(source[0]).permute(2, 0, 1).float() / 255
    for s in range(-40, 41):
        x0, x1 = cols.start + s, cols.stop + s
        if x0 < 0 or x1 > src.shape[-1] or not known[rows, x0:x1].all():
            continue
        if torch.equal(warped[:, rows, x0:x1], src[:, rows, cols]):
            return s
    raise AssertionError("no shift found")


def two_planes(h: int = 48, w: int = 160, far: float = 1.0, near: float = 3.0) -> np.ndarray:
    """Disparity ``(1, H, W)``: the left half far, the right half near (larger = nearer)."""
    d = np.full((1, h, w), far, np.float32)
    d[:, :, w // 2 :] = near
    return d


@pytest.mark.parametrize("strength, convergence", [(2.5, 0.5), (4.0, 0.0), (2.0, 1.0), (3.0, 0.25)])
def test_strength_and_convergence_give_the_hand_computed_disparities(strength, convergence):
    """Far plane d = 0 moves by +s * c, the near plane d = 1 by -s * (1 - c), s = strength % of the width."""
    h, w = 48, 160
    frames, disparity = texture(h, w), two_planes(h, w)
    config = MatrixConfig(num_views=2, strength=strength, convergence=convergence)
    plan = camera.plan_views(config, w)
    lo, hi = shots.depth_ranges({"min": disparity.min((1, 2)), "max": disparity.max((1, 2)), "p01": None, "p99": None}, "clip")
    source = MatrixSource(lambda a, b: frames, lambda a, b: disparity, lo, hi, plan, config)
    cells = source.cells(0, 1, views=(1,))
    span = strength / 100 * w  # pixels between the nearest and the farthest point
    # u' = u - fx b (1/Z - screen): the far half goes right by span * c (behind the screen), the near half left
    far = shift_of(frames, cells.images[0, 0], cells.known[0, 0], slice(4, h - 4), slice(45, 55))
    near = shift_of(frames, cells.images[0, 0], cells.known[0, 0], slice(4, h - 4), slice(110, 120))
    assert far == int(np.floor(span * convergence + 0.5 + 1e-4))  # floor(u + shift + 0.5): halves round up
    assert near == int(np.floor(-span * (1 - convergence) + 0.5 + 1e-4))
    assert far - near == pytest.approx(span, abs=1)


def test_default_effect_is_comfortable_on_a_rendered_scene():
    """The convert defaults: 2.5 % of the width in total, background behind the screen, foreground in front."""
    sc = make_scene(3, num_frames=1, height=64, width=112)
    rgb, z = render(sc)
    disparity = (1 / z).numpy()
    frames = (rgb.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    config = ConvertConfig().matrix
    plan = camera.plan_views(config, 112)
    lo, hi = np.array([disparity.min()], np.float32), np.array([disparity.max()], np.float32)
    source = MatrixSource(lambda a, b: frames, lambda a, b: disparity, lo, hi, plan, config)
    _, zs = source.source(0, 1)
    shift = plan.focal * plan.baselines[plan.eyes[1]] * (1 / zs - plan.screen)  # crossed disparity, px
    assert float(shift.max() - shift.min()) == pytest.approx(camera.DEFAULT_STRENGTH / 100 * 112, rel=1e-3)
    assert float(shift.max()) == pytest.approx(0.5 * camera.DEFAULT_STRENGTH / 100 * 112, rel=1e-3)  # nearest: in front
    assert float(shift.min()) < 0  # the backdrop: behind the screen


def test_physical_camera_moves_a_pixel_by_exactly_f_b_over_z():
    """--metric-depth --focal F --baseline B: a plane at inverse depth q moves by round(F B q) px, no screen shift."""
    h, w = 32, 160
    frames = texture(h, w)
    for q in (0.25, 0.5, 1.0):
        config = MatrixConfig(num_views=2, max_baseline=0.06, focal=500.0, metric_depth=True)
        plan = camera.plan_views(config, w)
        assert plan.screen == 0.0
        disparity = np.full((1, h, w), q, np.float32)
        source = MatrixSource(lambda a, b: frames, lambda a, b, d=disparity: d, np.ones(1), np.ones(1), plan, config)
        cells = source.cells(0, 1, views=(1,))
        assert shift_of(frames, cells.images[0, 0], cells.known[0, 0], slice(0, h), slice(60, 90)) == -round(500 * 0.06 * q)


def test_effect_flags_are_checked():
    with pytest.raises(InputError, match="strength 50"):
        MatrixConfig(strength=50)
    with pytest.raises(InputError, match="convergence 1.5"):
        MatrixConfig(strength=2, convergence=1.5)
    with pytest.raises(InputError, match="focal inf"):
        MatrixConfig(focal=float("inf"))
    with pytest.raises(InputError) as e:
        MatrixConfig(nearest_depth=5, farest_depth=1)
    assert "--near 5" in e.value.flag_message({"nearest_depth": "--near", "farest_depth": "--far"})
    assert "--far 1" in e.value.flag_message({"nearest_depth": "--near", "farest_depth": "--far"})


# --------------------------------------------------------------------------------------------------
# shots


def rendered(seed: int, frames: int) -> np.ndarray:
    rgb, _ = render(make_scene(seed, num_frames=frames, height=64, width=112))
    return (rgb.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def test_a_cut_between_two_scenes_is_found_and_motion_is_not_a_cut():
    clip = np.concatenate([rendered(0, 10), rendered(5, 12)])
    scores = shots.cut_scores(shots.frame_signature(clip))
    assert shots.detect_cuts(scores) == [10]
    assert shots.detect_cuts(shots.cut_scores(shots.frame_signature(rendered(1, 20)))) == []  # moving objects, one shot
    # chunked (each chunk scored against the frame before it) equals whole
    parts = [shots.cut_scores(shots.frame_signature(clip[a : a + 7]), shots.frame_signature(clip[a - 1 : a])[0] if a else None) for a in range(0, 22, 7)]
    np.testing.assert_array_equal(np.concatenate(parts), scores)


def test_a_chunk_is_cut_into_pieces_whose_context_stays_in_their_shot():
    """``shots.chunk_pieces``: a chunk across cuts becomes a piece per shot, each with the context of its own shot."""
    assert shots.chunk_pieces([], 16, 32, 9, 100) == [(16, 32, 7, 41)]
    assert shots.chunk_pieces([20, 40], 16, 32, 9, 100) == [(16, 20, 7, 20), (20, 32, 20, 40)]
    assert shots.chunk_pieces([20, 40], 36, 48, 9, 48) == [(36, 40, 27, 40), (40, 48, 40, 48)]  # the clip ends
    assert shots.chunk_pieces([20, 24], 16, 32, 9, 100) == [(16, 20, 7, 20), (20, 24, 20, 24), (24, 32, 24, 41)]
    assert shots.chunk_pieces([16, 32], 16, 32, 2, 100) == [(16, 32, 16, 32)]  # cuts at the chunk's edges


def test_per_shot_ranges_ignore_a_spike_and_do_not_cross_a_cut():
    t = 40
    rng = np.random.default_rng(0)
    p01 = np.where(np.arange(t) < 20, 1.0, 5.0) + 0.01 * rng.standard_normal(t)
    p99 = np.where(np.arange(t) < 20, 2.0, 9.0) + 0.01 * rng.standard_normal(t)
    p99[8] = 50.0  # one frame with a near particle
    stats = {"min": p01 - 0.5, "max": np.maximum(p99, 60.0 * (np.arange(t) == 8)), "p01": p01, "p99": p99}
    lo, hi = shots.depth_ranges(stats, "shot", cuts=[20], fps=10)
    assert np.abs(hi[:20] - 2.0).max() < 0.05 and np.abs(hi[20:] - 9.0).max() < 0.05  # no jump at frame 8
    assert np.abs(lo[:20] - 1.0).max() < 0.05 and np.abs(lo[20:] - 5.0).max() < 0.05  # each shot its own range
    clip_lo, clip_hi = shots.depth_ranges(stats, "clip")
    assert (clip_lo == clip_lo[0]).all() and clip_hi[0] == 60.0  # the reference: the spike sets every frame's range


def test_cells_handed_on_equal_the_warp_and_the_cache_stays_bounded():
    """``HandOn``: a source that puts (the fill's) and one that takes (the export's) over the same frames; the cells
    taken equal those the taking source warps itself, and taking them keeps its cache to ``cache_frames`` as
    warping does (frames that were only taken must leave it too)."""
    from svg3d.stages.matrix import HandOn

    h, w, n = 48, 160, 10
    frames = np.repeat(texture(h, w), n, axis=0)
    disparity = np.repeat(two_planes(h, w), n, axis=0) * np.linspace(1, 2, n, dtype=np.float32)[:, None, None]
    config = MatrixConfig(num_views=2)
    plan = camera.plan_views(config, w)
    lo, hi = np.full(n, 0.5, np.float32), np.full(n, 7.0, np.float32)

    def source(**kw):
        return MatrixSource(lambda a, b: frames[a:b], lambda a, b: disparity[a:b], lo, hi, plan, config, cache_frames=3, **kw)

    cells = HandOn()
    putting, taking, own = source(hand_on=cells), source(take_from=cells), source()
    for a in range(0, n, 2):
        putting.cells(a, a + 2)
    for a in range(0, n, 2):
        got, warped = taking.cells(a, a + 2), own.cells(a, a + 2)
        assert torch.equal(got.images, warped.images) and torch.equal(got.known, warped.known)
        assert torch.equal(got.depth, warped.depth) and torch.equal(got.source_depth, warped.source_depth)
        assert len(taking._cache) <= 3
    assert cells.handed == n


@pytest.mark.gpu
def test_a_cell_handed_on_to_another_stream_is_read_after_it_is_written_and_its_memory_kept():
    """On CUDA the fill and the export queue their work on streams of their own. A cell taken on another stream is
    read only once the putter's queued work has written it (without the wait the taker's first kernel runs while the
    putter's stream still sleeps, on memory not written yet), and the taker's use keeps its memory from the putter's
    allocator until the taker's kernels are done (without it the putter's next allocation of that size gets the
    block while the taker still sleeps before reading it)."""
    from svg3d.stages.matrix import HandOn

    device = torch.device("cuda", torch.cuda.current_device())
    putter, taker = torch.cuda.Stream(device), torch.cuda.Stream(device)
    cells = HandOn()
    with torch.cuda.stream(putter):
        torch.cuda._sleep(500_000_000)  # the putter's stream busy
        cell = torch.full((1 << 20,), 7.0, device=device)  # written after the sleep
        cells.put((0, (1,)), (cell,))
        pointer = cell.data_ptr()
    with torch.cuda.stream(taker):
        (got,) = cells.take((0, (1,)))
        first = got * 2  # at once: must wait for the putter's write
        torch.cuda._sleep(1_000_000_000)  # the taker busy past the putter's release of the cell
        second = got + 1
    del cell, got
    with torch.cuda.stream(putter):
        reused = torch.empty(1 << 20, device=device)  # may not take the cell's block while the taker still reads it
        assert reused.data_ptr() != pointer or taker.query()
        reused.fill_(0.0)
    torch.cuda.synchronize(device)
    assert first.eq(14.0).all() and second.eq(8.0).all()


@pytest.mark.parametrize("strength", [None, 4.0, 15.0])
def test_known_share_is_the_cells_share_from_the_disparity_alone(strength):
    """``MatrixSource.known_share`` (the 3D effect's check at the middle frame) equals the share of known pixels of
    the view's warped cell, and reads no frame: a look far from where the fill reads moves nothing of the clip's
    shared decoder."""
    h, w, n = 48, 160, 6
    frames = np.repeat(texture(h, w), n, axis=0)
    disparity = np.repeat(two_planes(h, w), n, axis=0) * np.linspace(1, 2, n, dtype=np.float32)[:, None, None]
    config = MatrixConfig(num_views=2, strength=strength)
    plan = camera.plan_views(config, w)
    lo, hi = np.full(n, 0.5, np.float32), np.full(n, 7.0, np.float32)

    def no_frames(a, b):
        raise AssertionError("a frame was read")

    looking = MatrixSource(no_frames, lambda a, b: disparity[a:b], lo, hi, plan, config)
    warping = MatrixSource(lambda a, b: frames[a:b], lambda a, b: disparity[a:b], lo, hi, plan, config)
    for t in (0, n // 2, n - 1):
        for view in range(plan.num_views):
            share = float(warping.cells(t, t + 1, views=(view,)).known.float().mean())
            assert looking.known_share(t, view, (h, w)) == share
    far = 1 - plan.reference
    assert looking.known_share(n - 1, far, (h, w)) < 1.0  # (the far view has holes: the comparison is not all ones)


# --------------------------------------------------------------------------------------------------
# the effect worked out shot by shot (matrix.Effect)


class ArrivingStore:
    """A stand-in for a stage's store over whole arrays: ``stats`` and ``read`` as ``work.StageStore``'s, and the
    furthest frame each was asked for (``asked``): what a reader would have waited for while the stage ran."""

    def __init__(self, arrays: dict[str, np.ndarray], stats: dict[str, np.ndarray]) -> None:
        self.arrays, self._stats = arrays, stats
        self.num_frames = len(next(iter(stats.values())))
        self.asked = 0

    def stats(self, name: str, end: int | None = None) -> np.ndarray:
        end = self.num_frames if end is None else min(end, self.num_frames)
        self.asked = max(self.asked, end)
        return self._stats[name][:end]

    def read(self, a: int, b: int, name: str) -> np.ndarray:
        self.asked = max(self.asked, b)
        return self.arrays[name][a:b]


def three_shots(n_shots=(14, 11, 15), h=24, w=40):
    """Disparity ``(T, h, w)`` of three shots of other depth ranges, the second with a near object cut by the left
    frame edge (a window violation: its screen plane moves, so only its frames are remapped), and the stores over it:
    the depth stage's shot-change scores (a clear peak at each cut) and the disparity with its per-frame statistics."""
    rng = np.random.default_rng(3)
    parts = []
    for k, (m, scale) in enumerate(zip(n_shots, (1.0, 3.0, 0.4), strict=True)):
        d = scale * (0.5 + rng.random((m, h, w))).astype(np.float32) * np.linspace(1, 1.3, m, dtype=np.float32)[:, None, None]
        d[:, :, :3] = d[:, :, -3:] = 0.5 * scale  # far at the frame's edges
        if k == 1:
            d[:, :, :3] = 2.2 * scale  # near, at the left edge, in every row
        parts.append(d)
    d = np.concatenate(parts)
    cuts = np.cumsum(n_shots)[:-1]
    scores = np.full(len(d), 0.02) + 0.01 * rng.random(len(d))
    scores[cuts] = 0.9
    stats = {"min": d.min((1, 2)), "max": d.max((1, 2)), "p01": np.percentile(d, 1, axis=(1, 2)), "p99": np.percentile(d, 99, axis=(1, 2))}
    return d, [int(c) for c in cuts], ArrivingStore({}, {"cut": scores}), ArrivingStore({"disparity": d}, stats)


@pytest.mark.parametrize("auto", [False, True])
def test_the_effect_shot_by_shot_is_the_whole_clips_and_waits_for_its_shots_only(auto):
    """``matrix.Effect`` works the effect out shot by shot as the disparity arrives: every frame's ranges, strength,
    screen plane, window bars, scan and remap equal the whole clip's computation (``comfort``'s functions over all of
    it, as the effect was made before), bit for bit, read chunk by chunk; and a chunk of the first shot waits only for
    the scores and the disparity up to a little past that shot's end, not for the whole clip."""
    from dataclasses import replace

    from svg3d import comfort
    from svg3d.stages.matrix import Effect

    d, cuts, depth, disparity = three_shots()
    n, w, fps, chunk = len(d), d.shape[2], 10.0, 4
    config = ConvertConfig()
    config = replace(config, matrix=replace(config.matrix, auto_strength=auto, screen="tv"))
    m = config.matrix
    plan = camera.plan_views(comfort.plan_config(m), d.shape[1])
    # the whole clip at once
    found = shots.detect_cuts(depth.stats("cut"))
    assert found == cuts
    lo, hi = shots.depth_ranges({k: disparity.stats(k) for k in ("min", "max", "p01", "p99")}, "shot", cuts=cuts, fps=fps)
    lo, hi = comfort.effect_ranges(m, lo, hi, cuts)
    scan = comfort.scan_disparity(lambda a, b: d[a:b], n, lo, hi, chunk=chunk)
    whole = comfort.effect_of(m, lo, hi, cuts, scan, width=w)
    if auto:  # every shot its own strength
        assert len(set(whole.strength[[0, cuts[0], cuts[1]]])) == 3
    else:  # the second shot's screen plane moved: its frames alone are remapped
        assert whole.remapped[cuts[0] : cuts[1]].all() and not whole.remapped[: cuts[0]].any() and not whole.remapped[cuts[1] :].any()

    depth.asked = disparity.asked = 0
    effect = Effect(config, plan, disparity="stabilised", width=w, fps=fps, chunk_frames=chunk)
    assert effect.per_shot
    inputs = {"depth": depth, "stabilised": disparity}
    ranges, track = effect.ranges(inputs), effect.track(inputs)
    got_lo, got_hi = ranges(0, chunk)
    assert np.array_equal(got_lo, lo[:chunk].astype(np.float32)) and np.array_equal(got_hi, hi[:chunk].astype(np.float32))
    # the first shot's end is final once the scores reach CUT_NEIGHBOURHOOD past it (read a chunk at a time)
    assert cuts[0] + shots.CUT_NEIGHBOURHOOD < depth.asked <= cuts[0] + shots.CUT_NEIGHBOURHOOD + 2 * chunk
    assert disparity.asked == cuts[0]  # the first shot's disparity, nothing after it
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        got_lo, got_hi = ranges(a, b)
        assert np.array_equal(got_lo, lo[a:b].astype(np.float32)) and np.array_equal(got_hi, hi[a:b].astype(np.float32))
        part = track(b)
        for name in ("strength", "convergence", "windows", "remapped"):
            assert np.array_equal(getattr(part, name)[a:b], getattr(whole, name)[a:b]), (name, a)
        x = torch.rand(b - a, 5, 6, generator=torch.Generator().manual_seed(a), dtype=torch.float32)
        assert torch.equal(part.remap(x, a, b), whole.remap(x, a, b))
    got, got_scan, near, far, got_cuts, got_lo, got_hi = effect.get(inputs)
    assert got_cuts == cuts and got.shots == whole.shots and got.handling == whole.handling and got.envelope == whole.envelope
    for name in ("strength", "convergence", "rho", "edge", "violations", "windows"):
        assert np.array_equal(getattr(got, name), getattr(whole, name)), name
    assert np.array_equal(got_scan.edge, scan.edge) and np.array_equal(got_scan.histogram, scan.histogram)
    assert np.array_equal(got_lo, lo) and np.array_equal(got_hi, hi)
    assert np.array_equal(near, whole.parallax(1.0)) and np.array_equal(far, whole.parallax(0.0))


def test_a_chunk_across_shots_is_warped_frame_by_frame():
    """A chunk holding frames of a remapped shot (its screen plane moved) and of one that is not gives every frame the
    depth it gets read alone: the remap is the frame's, not the chunk's."""
    from svg3d import comfort
    from svg3d.stages.matrix import Effect

    d, cuts, depth, disparity = three_shots()
    n, h, w = d.shape
    config = ConvertConfig()
    plan = camera.plan_views(comfort.plan_config(config.matrix), h)
    effect = Effect(config, plan, disparity="stabilised", width=w, fps=10.0, chunk_frames=4)
    inputs = {"depth": depth, "stabilised": disparity}
    frames = np.repeat(texture(h, w), n, axis=0)
    source = MatrixSource(lambda a, b: frames[a:b], lambda a, b: d[a:b], None, None, plan, config.matrix, ranges=effect.ranges(inputs),
                          track=effect.track(inputs))  # fmt: skip
    a, b = cuts[0] - 2, cuts[1] + 2  # the end of shot 1, all of shot 2 (remapped), the start of shot 3
    assert effect.track(inputs)(n).remapped[a:b].any() and not effect.track(inputs)(n).remapped[a:b].all()
    together = source._depth(a, b, (h, w))
    alone = torch.cat([source._depth(t, t + 1, (h, w)) for t in range(a, b)])
    assert torch.equal(together, alone)

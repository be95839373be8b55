"""The stage runner (``work.Runner``): lazy, resumable, and concurrent with the same bytes as one stage after another."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from svg3d import shots, work
from svg3d.config import ConvertConfig
from svg3d.stages.fill.stage import store_name
from svg3d.threads import plan_threads
from tests.media import stage_folder

N = 40  # frames of the toy clip
CHUNK = 8


class Source:
    """A toy first stage: frame i is ``[i, i**2]``; it can wait for an event before its last chunk."""

    name, needs, lookahead = "source", (), 0

    def __init__(self, before_last: threading.Event | None = None, fail_at: int | None = None) -> None:
        self.before_last, self.fail_at = before_last, fail_at

    def params(self) -> dict:
        return {"kind": "toy"}

    def check(self) -> None:
        pass

    def run(self, inputs, store, chunks, progress) -> None:
        for a, b in chunks:
            if self.fail_at is not None and a >= self.fail_at:
                raise RuntimeError(f"source failed at {a}")
            if b == N and self.before_last is not None:
                assert self.before_last.wait(20), "the next stage did not start before this one finished"
            x = np.arange(a, b, dtype=np.float64)
            store.commit(a, {"x": np.stack([x, x**2], 1)}, {"mean": x})
            progress(b - a)


class Window:
    """A toy second stage with one frame of look-ahead: frame i sums frames i-1, i, i+1 of the source."""

    name, needs, lookahead = "window", ("source",), 1

    def __init__(self, first_commit: threading.Event | None = None) -> None:
        self.first_commit = first_commit

    def params(self) -> dict:
        return {"radius": 1}

    def check(self) -> None:
        pass

    def run(self, inputs, store, chunks, progress) -> None:
        src = inputs["source"]
        for a, b in chunks:
            lo, hi = max(0, a - 1), min(N, b + 1)
            x = src.read(lo, hi, "x")
            padded = np.concatenate([np.zeros((1, 2)) if a == 0 else x[:0], x, np.zeros((1, 2)) if b == N else x[:0]])
            out = padded[:-2] + padded[1:-1] + padded[2:]
            store.commit(a, {"y": out})
            if self.first_commit is not None:
                self.first_commit.set()
            progress(b - a)


def run(root: Path, stages, *, concurrent: bool = True) -> work.Runner:
    def make_store(name, key, params):
        return work.StageStore(root, name, key=key, params=params, inputs={}, num_frames=N)

    runner = work.Runner(stages, make_store, chunk_frames=CHUNK, concurrent=concurrent)
    runner.run(stages[-1].name)
    return runner


def chunk_bytes(root: Path, name: str) -> bytes:
    record = json.loads((root / f"{name}.json").read_text())
    return b"".join((root / name / c["file"]).read_bytes() for c in record["chunks"]) + record["digest"].encode()


def test_concurrent_stages_overlap_and_equal_the_sequential_run(tmp_path):
    # The source's last chunk waits until the window stage has committed its first: that only happens if the two run
    # at once (one after another, the wait would time out and the assertion in the stage fail).
    first = threading.Event()
    runner = run(tmp_path / "c", [Source(before_last=first), Window(first_commit=first)])
    assert {r.name for r in runner.reports.values() if r.ran} == {"source", "window"}
    sequential = run(tmp_path / "s", [Source(), Window()], concurrent=False)
    for name in ("source", "window"):
        assert chunk_bytes(tmp_path / "c", name) == chunk_bytes(tmp_path / "s", name)
    y = sequential.stores["window"].read(0, N, "y")[:, 0]
    x = np.arange(N, dtype=np.float64)
    assert np.array_equal(y, np.convolve(x, [1, 1, 1])[1:-1])  # the sums with the clip's ends as zeros


class Squares:
    """A toy ``spread`` stage: frame i is the square of the source's ``x``, each chunk from its own frames alone; it
    notes the thread of every chunk and can fail at one."""

    name, needs, lookahead, spread = "squares", ("source",), 0, True

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at, self.threads, self.lock = fail_at, {}, threading.Lock()

    def params(self) -> dict:
        return {"power": 2}

    def check(self) -> None:
        pass

    def run(self, inputs, store, chunks, progress) -> None:
        for a, b in chunks:
            with self.lock:
                self.threads[a] = threading.get_ident()
            if a == self.fail_at:
                raise RuntimeError(f"squares failed at {a}")
            store.commit(a, {"y": inputs["source"].read(a, b, "x") ** 2})
            progress(b - a)


def run_workers(root: Path, stage: Squares, workers: int, seen: list) -> work.Runner:
    def make_store(name, key, params):
        return work.StageStore(root, name, key=key, params=params, inputs={}, num_frames=N)

    runner = work.Runner([Source(), stage], make_store, chunk_frames=CHUNK, concurrent=False, workers={"squares": workers},
                         on_thread=lambda name, k: seen.append((name, k, threading.get_ident())))  # fmt: skip
    runner.run("squares")
    return runner


def test_a_spread_stage_computes_its_chunks_in_workers_with_the_same_bytes(tmp_path):
    one, two = Squares(), Squares()
    seen_one, seen_two = [], []
    a, b = run_workers(tmp_path / "one", one, 1, seen_one), run_workers(tmp_path / "two", two, 2, seen_two)
    # the same frames and digest (the chunk across the middle is cut in two: other files, the same frames)
    assert np.array_equal(a.stores["squares"].read(0, N, "y"), b.stores["squares"].read(0, N, "y"))
    assert a.stores["squares"].record["digest"] == b.stores["squares"].record["digest"]
    assert len(set(one.threads.values())) == 1 and sorted(one.threads) == list(range(0, N, CHUNK))
    # half the frames in each thread, as contiguous runs of chunks (work.split), each told its share first
    runs = work.split([(f, min(f + CHUNK, N)) for f in range(0, N, CHUNK)], 2)
    assert [sum(b - a for a, b in run) for run in runs] == [N // 2] * 2 and sorted(two.threads) == [a for run in runs for a, _ in run]
    assert [len({two.threads[a] for a, _ in run}) for run in runs] == [1, 1]
    assert two.threads[runs[0][0][0]] != two.threads[runs[1][0][0]]
    assert {(n, k) for n, k, _ in seen_two} == {("source", 1), ("squares", 2)}
    assert {t for n, _, t in seen_two if n == "squares"} == set(two.threads.values())


def test_a_failing_worker_stops_its_stage_and_a_rerun_resumes(tmp_path):
    with pytest.raises(RuntimeError, match="squares failed at 8"):
        run_workers(tmp_path, Squares(fail_at=8), 2, [])
    runner = run_workers(tmp_path, Squares(), 2, [])
    assert runner.reports["squares"].resumed_from is not None
    y = runner.stores["squares"].read(0, N, "y")
    assert np.array_equal(y, np.stack([np.arange(N) ** 2, np.arange(N) ** 4], 1).astype(np.float64))


def test_a_failing_stage_stops_the_next_and_a_rerun_resumes(tmp_path):
    with pytest.raises(RuntimeError, match="source failed at 24"):
        run(tmp_path, [Source(fail_at=24), Window()])
    kept = work.StageStore(tmp_path, "source", key=run_key(), params={}, inputs={}, num_frames=N)
    assert kept.missing() == [(24, N)]  # what was committed stays
    runner = run(tmp_path, [Source(), Window()])
    assert runner.reports["source"].resumed_from == 24
    sequential = run(tmp_path / "s", [Source(), Window()], concurrent=False)
    assert np.array_equal(runner.stores["window"].read(0, N, "y"), sequential.stores["window"].read(0, N, "y"))


def run_key() -> str:
    return work.digest({"stage": "source", "svg3d": work.__version__, "params": Source().params(), "inputs": {}})


def test_a_complete_pipeline_runs_nothing(tmp_path):
    run(tmp_path, [Source(), Window()])
    again = run(tmp_path, [Source(), Window()])
    assert not any(r.ran for r in again.reports.values())


def test_ranges_of_a_prefix_equal_the_whole_clip():
    """The per-shot range of frames a..b-1 needs the statistics of b + lookahead frames only (the concurrent
    fill stage reads them as the stabilisation commits them)."""
    rng = np.random.default_rng(0)
    n, fps = 200, 24.0
    p01 = np.cumsum(rng.normal(0, 0.05, n)) + 1
    stats = {"min": p01 - 0.5, "max": p01 + 3, "p01": p01, "p99": p01 + 2 + rng.normal(0, 0.1, n)}
    cuts = [60, 131]
    lo_all, hi_all = shots.depth_ranges(stats, "shot", cuts=cuts, fps=fps)
    look = shots.range_lookahead(fps)
    for a, b in [(0, 16), (48, 64), (120, 136), (184, 200)]:
        end = min(n, b + look)
        prefix = {k: v[:end] for k, v in stats.items()}
        lo, hi = shots.depth_ranges(prefix, "shot", cuts=[c for c in cuts if c < end], fps=fps, frames=(a, b))
        assert np.array_equal(lo, lo_all[a:b]) and np.array_equal(hi, hi_all[a:b])


def test_ranges_read_out_of_order_equal_the_whole_clip():
    """``matrix.Ranges`` read chunk by chunk in any order (the fill's chunks split over threads: one reads the middle
    of the clip, then another its start) gives every chunk the whole clip's ranges. Before, a read that ended before
    the one before it dropped the cuts found past its end for good, and every later chunk got ranges across them."""
    from types import SimpleNamespace

    from svg3d.stages.matrix import Ranges

    rng = np.random.default_rng(1)
    n, fps, cuts = 120, 10.0, [37, 81]
    p01 = np.where(np.arange(n) < 37, 1.0, np.where(np.arange(n) < 81, 4.0, 0.5)) + 0.01 * rng.random(n)
    stats = {"min": p01 - 0.2, "max": p01 + 3, "p01": p01, "p99": p01 + 2 + 0.01 * rng.random(n), "cut": np.full(n, 0.02)}
    stats["cut"][cuts] = 0.9

    def store():
        return SimpleNamespace(num_frames=n, stats=lambda name, end=None: stats[name][: n if end is None else end])

    lo_all, hi_all = shots.depth_ranges(stats, "shot", cuts=cuts, fps=fps)
    chunks = [(a, min(n, a + 8)) for a in range(0, n, 8)]
    for order in (chunks, chunks[len(chunks) // 2 :] + chunks[: len(chunks) // 2], chunks[::-1]):
        ranges = Ranges(store(), store(), "shot", fps)
        for a, b in order:
            lo, hi = ranges(a, b)
            assert np.array_equal(lo, lo_all[a:b]) and np.array_equal(hi, hi_all[a:b]), (a, b)


def test_overlapping_stages_give_the_bytes_of_one_after_another(tmp_path):
    """convert with its stages overlapping against one after another, and with the fill's chunks two at once against
    one at a time on one thread: the same stage data (digests hash every frame's bytes), the same lossless exports and
    the same encoded video."""
    from svg3d import convert
    from svg3d.config import DepthConfig, ExportSettings
    from tests.media import rendered_clip

    video, depth, _ = rendered_clip(tmp_path / "clip", frames=12)
    config = ConvertConfig(depth=DepthConfig(depth_from=depth), flow="dis", filler="classical", chunk_frames=3,
                           exports=ExportSettings(exports=("eyes_png", "sbs")))  # fmt: skip
    results = {}
    # threads 2: the fill computes two chunks at once, each on one torch thread (threads.ThreadPlan.fill_workers)
    for overlap, cpus in ((True, 2), (False, 2), (False, 1)):
        out = tmp_path / f"overlap_{overlap}_{cpus}"
        result = convert.convert(video, out, replace(config, concurrent_stages=overlap, threads=cpus))
        digests = {name: json.loads(stage_folder(out / "work", name).with_suffix(".json").read_text())["digest"] for name in ("depth", "stabilised", "filled")}
        folder = result.exports["eyes_png"]
        pngs = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}
        results[overlap, cpus] = (digests, pngs, result.exports["sbs"].read_bytes())
    first = results[True, 2]
    assert len(first[1]) == 24
    for other in ((False, 2), (False, 1)):
        assert results[other] == first, other


def test_sigterm_is_handled_as_ctrl_c_and_the_rerun_resumes(tmp_path):
    import signal

    from tests.media import rendered_clip, wait_for_chunk

    video, depth, _ = rendered_clip(tmp_path / "clip", frames=12)
    out = tmp_path / "out"
    root = Path(__file__).parents[1]
    argv = [sys.executable, "-m", "svg3d", "convert", str(video), "-o", str(out), "--depth-from", str(depth), "--flow", "dis",
            "--fill", "classical", "--chunk-frames", "2", "--exports", "eyes_png", "--device", "cpu", "--quiet"]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(root)}
    proc = subprocess.Popen(argv, cwd=root, env=env, stderr=subprocess.PIPE, text=True)
    record = out / "work" / f"{store_name('filled', 2)}.json"
    wait_for_chunk(proc, record)
    assert proc.poll() is None, "convert ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated: finished outputs are kept" in err and "Traceback" not in err
    assert "terminated (SIGTERM)" in (out / "work" / work.LOG_FILE).read_text()
    res = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "filled     resumed at frame" in (out / "work" / work.LOG_FILE).read_text()


def test_help_and_flag_errors_import_no_torch():
    code = (
        "import sys, runpy\n"
        "sys.argv = ['svg3d', 'convert', '--help']\n"
        "try:\n    runpy.run_module('svg3d', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1])
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr
    bad = subprocess.run([sys.executable, "-m", "svg3d", "convert", "in.mp4", "-o", "out", "--strength", "x"], capture_output=True,
                         text=True, timeout=120, cwd=Path(__file__).parents[1])  # fmt: skip
    assert bad.returncode == 2 and "--strength" in bad.stderr and "Traceback" not in bad.stderr


def test_no_import_cycles_in_the_package():
    """No module of svg3d imports a module that imports it back, directly or through others, at its top or inside a
    function (``TYPE_CHECKING`` blocks aside): the package's layers go one way."""
    import ast

    root = Path(__file__).parents[1] / "svg3d"

    def name_of(path: Path) -> str:
        parts = path.relative_to(root.parent).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        me = name_of(path)
        package = me if path.name == "__init__.py" else me.rpartition(".")[0]
        deps = set()
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                       for n in ast.walk(node)}  # fmt: skip
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = (base + "." + node.module if node.module else base) if node.level else node.module
                deps.add(target)
                deps.update(f"{target}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[me] = {d for d in deps if d.startswith("svg3d")}
    modules = set(graph)
    graph = {m: {d for d in deps if d in modules and d != m} for m, deps in graph.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            m = todo.pop()
            if m == goal:
                return True
            if m not in seen:
                seen.add(m)
                todo.extend(graph.get(m, ()))
        return False

    cycles = sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps if reaches(d, m) and not d.startswith(m + ".") and not m.startswith(d + "."))
    assert not cycles, cycles


def test_a_run_over_the_free_memory_lowers_its_chunk_or_is_refused(tmp_path, monkeypatch, caplog):
    """The memory estimate (``memory.estimate_peak``) against what is free: a smaller chunk, said in one line naming the
    flag, and the same outputs; or, when one frame at a time does not fit either, a one-line refusal before anything."""
    import logging

    from svg3d import convert, memory
    from svg3d.checks import InputError
    from svg3d.config import DepthConfig, ExportSettings
    from tests.media import rendered_clip

    video, depth, _ = rendered_clip(tmp_path / "clip", frames=6)
    config = ConvertConfig(depth=DepthConfig(depth_from=depth), flow="dis", filler="classical", chunk_frames=6,
                           exports=ExportSettings(exports=("eyes_png",)), concurrent_stages=True)  # fmt: skip
    workers = plan_threads(os.cpu_count() or 1, 4, "cpu").fill_workers  # the fill's chunks at once, as convert plans them
    kw = {"num_views": 2, "filler": "classical", "exports": ("eyes_png",), "num_frames": 6, "concurrent": True, "fill_workers": workers,
          "hand_on": True}  # as convert plans a CPU run: the fill hands its cells on to the export
    two = memory.estimate_peak((64, 96), chunk_frames=2, **kw).total_mb
    monkeypatch.setattr(memory, "available_mb", lambda: two + 1e-6)  # room for chunks of 2 frames, not 3
    with caplog.at_level(logging.WARNING, logger="svg3d"):
        lowered = convert.convert(video, tmp_path / "low", config)
    assert "using --chunk-frames 2" in caplog.text and "--chunk-frames 6 would need" in caplog.text
    record = json.loads(stage_folder(tmp_path / "low" / "work", "filled").with_suffix(".json").read_text())
    counts = [c["count"] for c in record["chunks"]]  # (the fill's workers cut the middle chunk: work.split)
    assert max(counts) == 2 and sum(counts) == 6
    monkeypatch.setattr(memory, "available_mb", lambda: 10.0)
    with pytest.raises(InputError, match="chunk_frames: 96x64 frames need about .* MB even one at a time and 10 MB are free"):
        convert.convert(video, tmp_path / "none", config)
    assert not (tmp_path / "none").exists()  # refused before anything was made
    monkeypatch.setattr(memory, "available_mb", lambda: None)
    whole = convert.convert(video, tmp_path / "whole", config)
    for side in ("left", "right"):
        a = sorted((lowered.exports["eyes_png"] / side).glob("*.png"))
        b = sorted((whole.exports["eyes_png"] / side).glob("*.png"))
        assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b] and len(a) == 6


def test_exports_all_means_those_of_the_views_being_made(tmp_path, caplog):
    """``--exports all`` with the eyes being made leaves out the layouts of every view (saying how to have them),
    instead of raising the matrix to 8 views; with --num-views the views are made and every export written."""
    import logging

    from svg3d import convert
    from svg3d.config import DepthConfig, ExportSettings
    from svg3d.layouts import EXPORTS
    from tests.media import rendered_clip

    video, depth, _ = rendered_clip(tmp_path / "clip", frames=3)
    every = ExportSettings(exports=tuple(EXPORTS))
    config = ConvertConfig(depth=DepthConfig(depth_from=depth), flow="dis", filler="telea", exports=every)
    with caplog.at_level(logging.INFO, logger="svg3d"):
        eyes = convert.convert(video, tmp_path / "eyes", config)
    views_only = {n for n in EXPORTS if "views" in EXPORTS[n].needs}
    assert views_only and eyes.plan.num_views == 2
    assert set(eyes.exports) == (set(EXPORTS) - views_only) | {"preview", "report", "report_json"}
    assert "give --num-views 8 for them" in caplog.text
    four = convert.convert(video, tmp_path / "four", replace(config, matrix=replace(config.matrix, num_views=4)))
    assert four.plan.num_views == 4 and views_only <= set(four.exports)


def test_the_effect_and_the_physical_camera_are_one_choice():
    """A library caller's baseline is not dropped silently when the effect is set by strength: mixing is an error."""
    from svg3d.checks import InputError
    from svg3d.config import MatrixConfig

    with pytest.raises(InputError, match="max_baseline 0.1: the effect by strength derives the baseline") as e:
        MatrixConfig(strength=2.5, max_baseline=0.1)
    assert e.value.params == ("max_baseline", "strength")
    assert MatrixConfig(max_baseline=0.1).strength is None and MatrixConfig(strength=2.5).max_baseline > 0


class FrameByFrame:
    """A toy stage whose chunk computes its frames one at a time, saying so after each (as the fill does)."""

    name, needs, lookahead = "frames", (), 0

    def params(self) -> dict:
        return {}

    def check(self) -> None:
        pass

    def run(self, inputs, store, chunks, progress) -> None:
        for a, b in chunks:
            out = []
            for i in range(a, b):
                out.append(float(i))
                progress(1)
            store.commit(a, {"x": np.array(out)})


def test_progress_moves_frame_by_frame_inside_a_chunk_to_the_bars_and_the_log(tmp_path, capsys):
    """Per-frame progress goes through the runner to the CLI's bars ("k/n stage" and the overall one) and to the
    progress log the web page reads: in order, one frame at a time, before the chunk is committed, ending at the total."""
    from svg3d import cli, jobs

    events = []
    stage = FrameByFrame()

    def record(desc, total, initial=0):
        def advance(n):
            events.append((n, len(runner.stores[desc].chunks)))  # (frames, chunks committed so far)

        return advance, lambda: None

    bars, log = cli.StageBars(), cli.ProgressLog(tmp_path / "progress.jsonl", interval=0.0)
    runner = work.Runner([stage], lambda name, key, params: work.StageStore(tmp_path, name, key=key, params=params, inputs={}, num_frames=N),
                         chunk_frames=CHUNK, progress=cli.both(record, bars, log))  # fmt: skip
    runner.run("frames")
    assert [n for n, _ in events] == [1] * N
    # frame i of a chunk is said before its commit, and the chunk before may still be being written (in the background)
    assert all(i // CHUNK - 1 <= c <= i // CHUNK for i, (_, c) in enumerate(events))
    assert bars.overall.n == N and bars.overall.total == N
    lines = [json.loads(line) for line in (tmp_path / "progress.jsonl").read_text().splitlines()]
    assert [e["done"] for e in lines if e["stage"] == "frames"][2:] == list(range(1, N + 1)) + [N]  # (plan, start; close)
    (read,) = jobs.read_progress(tmp_path / "progress.jsonl")
    assert (read.stage, read.done, read.total) == ("frames", N, N)
    assert "1/1 frames" in capsys.readouterr().err


def test_scaled_progress_counts_other_units_as_frames():
    """A filler's view-frames or the denoiser's steps reported as frames: in proportion, exactly the frames at the end."""
    from svg3d.stages import scaled

    for units, frames, step in ((7 * 16, 16, 1), (50, 6, 1), (3, 16, 1), (10, 4, 3), (0, 5, 1)):
        got = []
        advance = scaled(got.append, units, frames)
        done = 0
        while done < units:
            advance(step)
            done += step
            assert sum(got) == frames * min(done, units) // units  # never ahead of the work
        assert sum(got) == frames and all(n > 0 for n in got), (units, frames, got)
    assert scaled(None, 4, 4) is None


def test_a_reader_with_context_decompresses_each_chunk_once(tmp_path, monkeypatch):
    """A chunk and its context span three chunk files, and the next read most of them again: the store keeps the
    last six read (``READ_CACHE_CHUNKS``: three for each of two readers), so a pass over the clip reads each file
    once (one at a time: 13 reads for these 5 chunks), two readers at two places of it too, and a chunk written again
    is read again."""
    store = work.StageStore(tmp_path, "x", key="k", params={}, inputs={}, num_frames=N)
    for a in range(0, N, CHUNK):
        store.commit(a, {"y": np.arange(a, a + CHUNK, dtype=np.float32)[:, None] * np.ones(3, np.float32)})
    store.finish()
    reads, real_read = [], work.read_chunk
    monkeypatch.setattr(work, "read_chunk", lambda path, names=None: reads.append(path.name) or real_read(path, names))
    for a in range(0, N, CHUNK):
        lo, hi = max(0, a - 2), min(N, a + CHUNK + 2)
        assert np.array_equal(store.read(lo, hi, "y")[:, 0], np.arange(lo, hi, dtype=np.float32))
    assert sorted(reads) == sorted({c["file"] for c in store.chunks})
    reads.clear()
    store._cache.clear()
    half = N // 2
    for a in range(0, half, CHUNK):  # two readers in turn, each with its context, half a clip apart (the fill's runs)
        for first in (a, a + half):
            lo, hi = max(0, first - 2), min(N, first + CHUNK + 2)
            assert np.array_equal(store.read(lo, hi, "y")[:, 0], np.arange(lo, hi, dtype=np.float32))
    assert len(reads) == len(set(reads)), reads
    store.commit(8, {"y": np.full((CHUNK, 3), -1, np.float32)})
    store.flush()
    assert np.array_equal(store.read(8, 9, "y"), np.full((1, 3), -1, np.float32))


def test_two_threads_committing_at_once_lose_no_chunk(tmp_path, monkeypatch):
    """The fill's two runs commit to one store at once, each chunk written in the background: every writer is waited
    for before the stage finishes. Here two threads commit together, chunk after chunk (a barrier), with slow writes
    so that both are in flight at once. With one pending write per store, a thread's commit could replace the other
    thread's write before it was waited for: finish then found its frames missing (2 runs of 3 here; once in CI, in
    test_batch's killed worker)."""
    import time

    real_write = work.write_chunk

    def write_slowly(path, arrays):  # the odd frames' thread writes slowly
        time.sleep(0.1 if int(path.stem.split("_")[-1]) % 2 else 0.0)
        real_write(path, arrays)

    monkeypatch.setattr(work, "write_chunk", write_slowly)
    store = work.StageStore(tmp_path, "x", key="k", params={}, inputs={}, num_frames=N)
    store.start()
    together = threading.Barrier(2)

    def commit_every_other(j: int) -> None:
        for a in range(j, N, 2):
            together.wait()
            store.commit(a, {"y": np.full((1, 3), a, np.float32)})

    threads = [threading.Thread(target=commit_every_other, args=(j,)) for j in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.finish()  # (raises when a frame is missing)
    assert np.array_equal(store.read(0, N, "y")[:, 0], np.arange(N, dtype=np.float32))


def test_a_store_writes_up_to_its_count_of_chunks_at_once_and_raises_their_errors(tmp_path, monkeypatch):
    """``StageStore(writes=3)`` (on CUDA: ``threads.GPU_WRITES``): three commits return while their chunks are still
    being written, the fourth waits for the oldest, never more than three are written at once, every chunk is
    recorded by ``finish``; a failed write is raised by a later commit or the flush."""
    real_write, busy, most, fail = work.write_chunk, [], [0], [False]
    lock, gate = threading.Lock(), threading.Event()

    def write_when_let(path, arrays):  # every write waits for the gate
        with lock:
            busy.append(path)
            most[0] = max(most[0], len(busy))
        gate.wait(10)
        if int(path.stem.split("_")[-1]) == CHUNK and fail[0]:  # the second chunk
            raise OSError("disk full")
        real_write(path, arrays)
        with lock:
            busy.remove(path)

    monkeypatch.setattr(work, "write_chunk", write_when_let)
    store = work.StageStore(tmp_path / "a", "x", key="k", params={}, inputs={}, num_frames=N, writes=3)
    store.start()
    chunk = lambda a: {"y": np.full((CHUNK, 3), a, np.float32)}  # noqa: E731
    for a in range(0, 3 * CHUNK, CHUNK):
        store.commit(a, chunk(a))  # returns at once: the gate is shut, so a commit that waited would hang here
    fourth = threading.Thread(target=store.commit, args=(3 * CHUNK, chunk(3 * CHUNK)))
    fourth.start()
    fourth.join(0.3)
    assert fourth.is_alive()  # it waits for the oldest write
    gate.set()
    fourth.join(10)
    for a in range(4 * CHUNK, N, CHUNK):
        store.commit(a, chunk(a))
    store.finish()
    assert most[0] == 3 and np.array_equal(store.read(0, N, "y")[:, 0], np.repeat(np.arange(0, N, CHUNK), CHUNK).astype(np.float32))
    fail[0] = True
    failing = work.StageStore(tmp_path / "b", "x", key="k", params={}, inputs={}, num_frames=N, writes=3)
    failing.start()
    with pytest.raises(OSError, match="disk full"):
        for a in range(0, N, CHUNK):
            failing.commit(a, chunk(a))
        failing.flush()

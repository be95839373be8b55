"""run.sh: the shell entry point's dispatch and the batch reproduction of the authors' recipes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from svg3d import io, scene

ROOT = Path(__file__).resolve().parents[1]


def run_sh(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "run.sh"), *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600
    )


def test_unknown_command_and_recipe_are_refused():
    bad = run_sh("nonsense")
    assert bad.returncode == 2 and "unknown command 'nonsense'" in bad.stderr
    recipe = run_sh("reproduce", "sideways")
    assert recipe.returncode == 2 and "unknown recipe 'sideways'" in recipe.stderr


@pytest.mark.slow
def test_reproduce_runs_the_recipes_over_every_clip(tmp_path, model_dir):
    """Stages 3-4 of the left2right and multi-view recipes on a rendered clip (depth already there)."""
    clip = tmp_path / "Videos" / "A_rendered_scene_64x96"
    s = scene.make_scene(3, num_frames=16, height=64, width=96)
    rgb, z = scene.render(s)
    for t in range(16):
        io.write_image(clip / "images" / f"{t:05d}.png", (rgb[t].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        for sub in ("depths", "depths_refined"):
            io.write_depth(clip / sub / f"{t:05d}_depth.npy", 1 / z[t].numpy())
    env = {
        "SVG_VIDEOS": str(tmp_path / "Videos"),
        "SVG_RESULTS": str(tmp_path / "results"),
        "SVG_ARGS": f"--model_path {model_dir} --device cpu --num_inference_steps 1 --quiet",
        "HF_HUB_OFFLINE": "1",
    }
    done = run_sh("reproduce", "left2right", "multiview", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "A_rendered_scene_64x96: left2right ('A rendered scene')" in done.stderr
    stereo = tmp_path / "results" / "A_rendered_scene_64x96" / "left2right"
    multi = tmp_path / "results" / "A_rendered_scene_64x96" / "multiview"
    assert len(list(stereo.glob("view007_*.jpg"))) == 16 and (stereo / "results3d.mp4").is_file()
    assert {p.name[:7] for p in multi.glob("view*.jpg")} == {f"view{v:03d}" for v in range(8)}
    assert (tmp_path / "Videos" / "frame_matrix" / "A_rendered_scene_left2right" / "manifest.json").is_file()


def test_run_sh_takes_paths_from_the_folder_it_is_called_from(tmp_path):
    """``./run.sh convert clip.mp4 -o out/`` from another folder reads and writes there, not in the project."""
    from tests.media import rendered_clip

    video, depth, _ = rendered_clip(tmp_path / "clip", frames=3)
    done = subprocess.run(
        ["bash", str(ROOT / "run.sh"), "convert", "clip/clip.mp4", "-o", "out", "--depth-from", "clip/depth", "--flow", "dis",
         "--fill", "telea", "--exports", "eyes_png", "--device", "cpu", "--quiet"],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list((tmp_path / "out" / "clip_eyes" / "left").glob("*.png"))) == 3
    assert not (ROOT / "out").exists()


def _pins(name: str) -> list[str]:
    """The requirements of ``name`` (a requirements file of the project), comments left out."""
    return [p for line in (ROOT / name).read_text().splitlines() if (p := line.split("#")[0].strip())]


def test_the_wheel_holds_every_module_and_declares_the_pins(tmp_path):
    """``pip install .`` installs what ``pip wheel .`` builds: every module of the package (subpackages too), the
    ``svg3d`` command, and the pinned dependencies of requirements.txt; the test-only pins of requirements-test.txt
    only behind the ``test`` extra (``pip install '.[test]'``), so a plain install pulls none of them."""
    import sys
    import zipfile

    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(tmp_path), "-q"],
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("svg3d-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        metadata = next(z.read(n).decode() for n in names if n.endswith("METADATA"))
        entry = next(z.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "svg3d").rglob("*.py")}
    assert modules and modules <= names, sorted(modules - names)
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
    assert "svg3d = svg3d.__main__:main" in entry
    requires = [line.removeprefix("Requires-Dist: ") for line in metadata.splitlines() if line.startswith("Requires-Dist: ")]
    runtime, test = _pins("requirements.txt"), _pins("requirements-test.txt")
    assert runtime and test and not set(runtime) & set(test)
    assert sorted(r for r in requires if ";" not in r) == sorted(runtime), metadata
    assert sorted(r.split(";")[0].strip() for r in requires if r.endswith('extra == "test"')) == sorted(test), metadata
    assert "Provides-Extra: test" in metadata

"""``python -m svg3d ui``: a Gradio page over ``convert``, its jobs run by ``svg3d.jobs``.

The settings are the convert CLI's flags, generated from its parser (``jobs.convert_parser``), with its defaults
and choices: one source. Each has a plain-language label (``LABELS``; the flag and its help are the control's
info line); the 3D controls come first (``MAIN``: strength, screen plane, filler, layout; adding one is one
entry there), then clip trimming and the other flags in folded sections (``SECTIONS``). Every change is checked
with the CLI's own parser and ``config_from_args`` and the CLI's one-line message shown in the section of the
flag it names.

The depth source is chosen on the page (``jobs.depth_models``: the model folders given with ``--models-dir``, the
depth models in the Hugging Face cache, the known hub ids; or an uploaded zip of depth maps; the demo clip's
exact depth); a model this server does not have is refused on the page, before anything is queued.

Before any long run, the preview shows the effect on a chosen frame in seconds (``svg3d.preview``: the depth of
that frame by the chosen source, the warp and a quick fill convert uses) as an anaglyph, side by side, a wiggle
GIF and the depth, and follows every setting; the frame's depth is cached, so a moved slider only re-warps.

Start queues a job (``jobs.JobQueue``): a ``convert`` subprocess in the jobs folder; the page polls its progress
log (a bar and ETA per stage, and the whole job's stage k of n and ETA) and shows its results: the side-by-side
video in a player, the anaglyph and depth previews, a slider over the views of a ``views_png`` export, the 3D report, a download
of every export (folders as zips) and of the log. Cancel (while queued or running) kills the job within about a
second, keeping its finished chunks; Resume (once stopped) continues it; Download (once done) gives the video.

Serving: bound to 127.0.0.1 unless ``host`` says otherwise; uploads larger than ``max_upload_mb`` are refused
while they stream in (Gradio's ``max_file_size``: the request is cut at the limit and its partial file deleted)
and, when their request says its length, before any byte is read (``_UploadLimit``). Gradio's cache (uploads and
the copies of the files it shows) is ``<jobs>/.gradio`` and Python's temporary folder the jobs folder, so
nothing the server stores is outside it; ``allowed_paths`` is empty, so Gradio serves its cache and its own
assets only: not the jobs' work folders, not the working directory.

API (``gradio_client``): ``/submit(upload, depth_zip, demo, flags) -> (job_id, message)`` with convert flags as
one string (``jobs.parse_flags`` checks them), ``/wait(job_id) -> (status, files)`` blocking until the job
stops, ``/status``, ``/cancel``, ``/resume`` ``(job_id) -> status``; ``status`` is a dict (state, message,
queue position, stages, overall progress, exports).
"""

from __future__ import annotations

import argparse
import hashlib
import html
import logging
import math
import os
import re
import shlex
import tempfile
import threading
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import camera, jobs
from .checks import InputError
from .config import UISettings, default
from .jobs import Job, JobQueue

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

DEFAULT_JOBS_DIR = default(UISettings, "jobs_dir")
DEFAULT_PORT = default(UISettings, "port")
DEFAULT_MAX_UPLOAD_MB = default(UISettings, "max_upload_mb")
CACHE_DIR = ".gradio"  # Gradio's cache, inside the jobs folder
PREVIEW_DIR = ".preview"  # the preview's unpacked uploads and wiggle GIFs, inside the jobs folder
POLL_SECONDS = 1.0  # the page asks for progress this often
# set by the jobs (jobs.UI_FLAGS) or by the page's depth source: no control
UI_DESTS = ("work_dir", "progress_log", "depth_from", "depth_model", "quiet")
PLAYABLE = (".mp4", ".webm")  # containers a browser plays (mkv is not)
PLAYER_ORDER = ("sbs", "hsbs", "cross", "tb", "htb", "anaglyph", "left")  # the first present goes in the player
UPLOAD_TYPES = [*jobs.VIDEO_SUFFIXES, ".zip"]
MULTIPART_SLACK = 64 * 1024  # bytes of an upload request that are not the file: boundaries, headers, names
RESUMABLE = ("cancelled", "interrupted", "failed")  # the states Resume applies to
KEEP_WIGGLES = 8  # the preview's latest wiggle GIFs kept in <jobs>/.preview/wiggle (pages being served may read them)

# The 3D controls, shown first and open, in this order (a flag added to convert is one entry here to join them).
MAIN = ("strength", "convergence", "fill", "layout")
MAIN_TITLE = "3D effect"
# Sliders: (minimum, maximum, step, the value convert takes when the flag is not given). The strength slider
# stops at 10 % of the width (beyond it few people fuse the pair; the flag takes up to 20).
SLIDERS = {
    "strength": (0.5, 10.0, 0.1, camera.DEFAULT_STRENGTH),
    "convergence": (0.0, 1.0, 0.05, camera.DEFAULT_CONVERGENCE),
}
# Page sections for the other parser groups (by --help title), in page order after MAIN; folded. A group not
# listed keeps its --help title and comes last.
SECTIONS = {
    "clip": "Clip: trim and resize",
    "depth": "Depth",
    "3D effect": "Physical camera and depth range",
    "views": "Views",
    "hole filling": "Hole filling: diffusion settings",
    "outputs": "Outputs",
    "run": "Run",
}
# Plain-language labels; the flag is in the control's info line. A flag not listed gets its name in words.
LABELS = {
    "strength": "3D strength (% of the picture width)",
    "convergence": "Screen plane (0 = all in front, 1 = all behind)",
    "fill": "Hole filler",
    "layout": "The input is the…",
    "start_frame": "First frame",
    "num_frames": "Number of frames",
    "width": "Width (px)",
    "height": "Height (px)",
    "depth_resolution": "Depth resolution (short side, px)",
    "stabilise": "Steady the depth over time",
    "flow": "Motion estimator",
    "depth_range": "Depth range normalised per",
    "baseline": "Eye distance (m)",
    "focal": "Focal length (px)",
    "near": "Nearest point (m)",
    "far": "Farthest point (m)",
    "metric_depth": "Depth maps are in 1/metres",
    "num_views": "Number of views",
    "border": "Picture edge",
    "video_model": "Video model",
    "prompt": "Describe the video (diffusion)",
    "steps": "Denoising steps",
    "seed": "Random seed",
    "window": "Frames per window",
    "overlap": "Window overlap (frames)",
    "diffusion_size": "Diffusion size (WxH)",
    "offload": "Save GPU memory (offload)",
    "max_unet_frames": "Frames per UNet call",
    "vae_frames": "Frames per VAE call",
    "unet": "UNet implementation",
    "compile": "Compile the model (torch.compile)",
    "exports": "Files to make",
    "naming": "File names",
    "anaglyph": "Anaglyph colours",
    "vr180": "Also a VR180 video",
    "vr180_fov": "Field of view for VR180 (degrees)",
    "vr180_size": "VR180 size per eye (px)",
    "codec": "Video codec",
    "crf": "Quality (CRF, lower = better)",
    "preset": "Encoder speed preset",
    "pix_fmt": "Pixel format",
    "container": "Container",
    "preview": "Also a preview picture",
    "chunk_frames": "Frames per chunk",
    "clean_work": "Delete the work files afterwards",
    "device": "Device",
}
LAYOUT_LABELS = {"left2right": "left eye", "right2left": "right eye", "middle2leftright": "middle, between the eyes"}
DEPTH_ZIP, DEPTH_DEMO = "zip", "demo"  # depth-source choices that are not models


# --------------------------------------------------------------------------------------------------
# the controls: one per convert flag, from its parser


@dataclass(frozen=True)
class Control:
    """A convert flag as a control: ``kind`` is toggle (--x/--no-x), bool (store_true), choice, int, float, slider
    (a number with a slider and a default convert takes when the flag is absent), text or exports (a set of export
    names); ``label``: what people read; ``section``: the page section it is in."""

    dest: str
    option: str
    kind: str
    default: object
    choices: tuple[str, ...]
    help: str
    group: str
    label: str = ""
    section: str = ""


def controls() -> list[Control]:
    """The convert flags but those the page sets itself (``UI_DESTS``), ``MAIN`` first, the others in ``--help``
    order, from the CLI's parser."""
    from .stages.export import EXPORTS, parse_exports

    out = []
    parser = jobs.convert_parser()
    for group in parser._action_groups:
        for a in group._group_actions:
            if a.dest in UI_DESTS or not a.option_strings:
                continue
            option = next(o for o in a.option_strings if o.startswith("--") and not o.startswith("--no-"))
            text = (a.help or "") % {**vars(a), "prog": parser.prog} if a.help else ""
            if a.dest == "exports":
                kind, default, choices = "exports", tuple(parse_exports(a.default)), tuple(EXPORTS)
            elif a.dest in SLIDERS:
                kind, default, choices = "slider", SLIDERS[a.dest][3], ()
            elif isinstance(a, argparse.BooleanOptionalAction):
                kind, default, choices = "toggle", a.default, ()
            elif isinstance(a, argparse._StoreTrueAction):
                kind, default, choices = "bool", False, ()
            elif a.choices is not None:
                kind, default, choices = "choice", a.default, tuple(a.choices)
            elif a.type in (int, float):
                kind, default, choices = a.type.__name__, a.default, ()
            else:
                kind, default, choices = "text", a.default, ()
            label = LABELS.get(a.dest, a.dest.replace("_", " ").capitalize())
            section = MAIN_TITLE if a.dest in MAIN else SECTIONS.get(group.title, group.title)
            out.append(Control(a.dest, option, kind, default, choices, text, group.title, label, section))
    main = sorted((c for c in out if c.dest in MAIN), key=lambda c: MAIN.index(c.dest))
    return main + [c for c in out if c.dest not in MAIN]


def section_titles(specs: Sequence[Control]) -> list[str]:
    """The page's sections in order: ``MAIN_TITLE``, then ``SECTIONS``' order, then any other group."""
    present = list(dict.fromkeys(c.section for c in specs))
    order = [MAIN_TITLE, *SECTIONS.values()]
    return sorted(present, key=lambda t: order.index(t) if t in order else len(order) + present.index(t))


def flag_sections(specs: Sequence[Control]) -> dict[str, str]:
    """Each convert option string (--x and --no-x) -> the page section of its control; the flags with no control
    (``UI_DESTS``) -> the section of their --help group."""
    by_dest = {c.dest: c.section for c in specs}
    out = {}
    for group in jobs.convert_parser()._action_groups:
        for action in group._group_actions:
            for option in action.option_strings:
                out[option] = by_dest.get(action.dest, SECTIONS.get(group.title, group.title))
    return out


def flags_of(specs: Sequence[Control], values: Sequence[object]) -> list[str]:
    """The convert flags that set ``values`` (one per control), leaving out every value equal to its default."""
    flags: list[str] = []
    for c, v in zip(specs, values, strict=True):
        if c.kind == "toggle":
            if bool(v) != bool(c.default):
                flags.append(c.option if v else c.option.replace("--", "--no-", 1))
        elif c.kind == "bool":
            if v:
                flags.append(c.option)
        elif c.kind == "exports":
            chosen = tuple(v or ())
            if set(chosen) != set(c.default):
                flags += [c.option, ",".join(chosen)]
        elif v is None or (isinstance(v, str) and not v.strip()):
            continue
        elif c.kind in ("int", "float", "slider"):
            x = _number(c, v)
            if c.default is None or not math.isclose(x, c.default, rel_tol=0, abs_tol=1e-9):
                flags += [c.option, str(x) if c.kind == "int" else f"{x:g}"]
        elif str(v) != str(c.default):
            flags += [c.option, str(v).strip()]
    return flags


def _number(c: Control, v: object) -> int | float:
    """A number control's value (a number, or the text of a control whose default is unset) as the flag's type."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise InputError(f"{c.option} {v!r}: not a number") from None
    if not math.isfinite(x):
        raise InputError(f"{c.option} {v!r}: not a finite number")
    if c.kind == "int":
        if x != int(x):
            raise InputError(f"{c.option} {v!r}: not a whole number")
        return int(x)
    return x


FLAG_IN_MESSAGE = re.compile(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*|-o)(?![\w-])")


def message_group(message: str, groups: dict[str, str]) -> str | None:
    """The section of the first flag an error message names (``flag_sections``), None when it names none."""
    for m in FLAG_IN_MESSAGE.finditer(message):
        flag = m.group(1)
        for option in (flag, flag.replace("--no-", "--", 1)):
            if option in groups:
                return groups[option]
    return None
# --------------------------------------------------------------------------------------------------
# what the page shows of a job


def status(queue: JobQueue, job: Job) -> dict:
    """A job's state as the API returns it (JSON-able)."""
    since = job.runs[-1]["started"] if job.runs else 0.0
    progress = jobs.read_progress(job.progress_log, since)
    stages = [{"stage": s.stage, "done": s.done, "total": s.total, "eta": s.eta} for s in progress]
    whole = jobs.overall_progress(progress, jobs.expected_stages(job.flags))
    overall = {"stage": whole.stage, "stages": whole.stages, "done": whole.done, "total": whole.total, "eta": whole.eta}
    exports = {name: p.name for name, p in jobs.results(job).items()} if job.state == "done" else {}
    return {"job": job.id, "name": job.name, "state": job.state, "message": job.message, "position": queue.position(job.id),
            "queued": queue.queue_length(), "flags": job.flags, "stages": stages, "overall": overall, "exports": exports}  # fmt: skip


def _seconds(s: float | None) -> str:
    if s is None:
        return "ETA …"
    s = round(s)
    return f"ETA {s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"ETA {s // 60}:{s % 60:02d}"


def status_markdown(st: dict) -> str:
    state = st["state"]
    text = f"**{html.escape(st['name'])}** (`{st['job']}`): **{state}**"
    if state == "queued" and st["position"]:
        ahead = st["position"] - 1
        text += f", number {st['position']} in line (runs after the running job" + (f" and {ahead} more)" if ahead else ")")
    if st["message"]:
        text += f"  \n{html.escape(st['message'])}"
    return text


def progress_html(st: dict) -> str:
    """The whole job (stage k of n, frames over all stages, ETA) above a bar per stage (frames, ETA)."""
    rows = []
    o = st.get("overall")
    if o and st["stages"]:
        finished = st["state"] == "done" or o["done"] >= o["total"] > 0
        eta = "done" if finished else _seconds(o["eta"])
        rows.append(
            f'<div class="svg3d-overall" data-stage="{o["stage"]}" data-stages="{o["stages"]}" data-done="{o["done"]}" '
            f'data-total="{o["total"]}"><span class="svg3d-stage-name">stage {o["stage"]} of {o["stages"]}</span>'
            f'<progress value="{o["done"]}" max="{max(o["total"], 1)}"></progress><span>overall · {eta}</span></div>'
        )
    for s in st["stages"]:
        done, total = s["done"], s["total"]
        eta = "done" if done >= total else _seconds(s["eta"])
        rows.append(
            f'<div class="svg3d-stage" data-stage="{html.escape(s["stage"])}" data-done="{done}" data-total="{total}">'
            f'<span class="svg3d-stage-name">{html.escape(s["stage"])}</span>'
            f'<progress value="{done}" max="{max(total, 1)}"></progress>'
            f"<span>{done}/{total} frames · {eta}</span></div>"
        )
    if not rows and st["state"] == "running":
        rows.append('<div class="svg3d-stage">starting …</div>')
    return f'<div class="svg3d-progress" data-state="{st["state"]}">{"".join(rows)}</div>'


def _first_frame(video: Path):
    from .source import open_source

    source = open_source(video, count=1)
    try:
        return source.frames(0, 1)[0]
    finally:
        source.close()


def previews(job: Job, exports: dict[str, Path]) -> tuple[Path | None, Path | None]:
    """The anaglyph and depth previews of a finished job (PNGs in ``<job>/previews``; None: none can be made).

    Anaglyph: the first frame of the anaglyph export, else made from the preview pair. Depth: the first frame of
    the depth export, else the first disparity map of the work folder, colour-mapped.
    """
    import json

    import numpy as np

    from . import io, work
    from .stages import export

    folder = job.folder / "previews"
    anaglyph, depth = folder / "anaglyph.png", folder / "depth.png"
    try:
        if not anaglyph.is_file():
            if "anaglyph" in exports and exports["anaglyph"].is_file():
                io.write_image(anaglyph, _first_frame(exports["anaglyph"]))
            elif "preview" in exports:
                pair = io.read_image(exports["preview"])
                w = pair.shape[1] // 2
                io.write_image(anaglyph, export.anaglyph(pair[None, :, :w], pair[None, :, w : 2 * w])[0])
        if not depth.is_file():
            if "depth" in exports and exports["depth"].is_file():
                io.write_image(depth, _first_frame(exports["depth"]))
            else:
                work_dir = job.out / work.WORK_DIR
                for stage in ("stabilised", "depth"):
                    record = work_dir / f"{stage}.json"
                    if record.is_file():
                        chunks = json.loads(record.read_text()).get("chunks", [])
                        first = min(chunks, key=lambda c: c["first"], default=None)
                        if first is not None and (work_dir / stage / first["file"]).is_file():
                            d = work.read_chunk(work_dir / stage / first["file"], ("disparity",))["disparity"][:1]
                            io.write_image(depth, export.depth_video(d.astype(np.float32))[0])
                            break
    except (InputError, OSError, ValueError, KeyError) as e:
        log.warning("%s: no preview (%s)", job.id, e)
    return (anaglyph if anaglyph.is_file() else None), (depth if depth.is_file() else None)


def downloads(job: Job, exports: dict[str, Path]) -> list[Path]:
    """Every export as a file (a frames folder zipped once into ``<job>/downloads``) and the job's log."""
    out = []
    for _name, path in exports.items():
        if path.is_dir():
            archive = job.folder / "downloads" / f"{path.name}.zip"
            if not archive.is_file():
                archive.parent.mkdir(parents=True, exist_ok=True)
                tmp = archive.with_suffix(".zip.part")
                with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:  # PNGs are compressed already
                    for f in sorted(path.rglob("*")):
                        if f.is_file():
                            zf.write(f, f"{path.name}/{f.relative_to(path).as_posix()}")
                os.replace(tmp, archive)
            out.append(archive)
        else:
            out.append(path)
    if job.log_file.is_file():
        out.append(job.log_file)
    return out


def view_folders(exports: dict[str, Path]) -> list[Path]:
    """The per-view frame folders of a ``views_png`` export, leftmost camera first (view index order)."""
    folder = exports.get("views_png")
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("view_")) if folder and folder.is_dir() else []


def view_frame(job: Job, view: int, frame: int) -> Path | None:
    """Frame ``frame`` of view ``view`` of the job's ``views_png`` export, None when there is no such file."""
    from .stages.export import FRAME_NAME

    views = view_folders(jobs.results(job))
    if not views:
        return None
    folder = views[min(max(int(view), 0), len(views) - 1)]
    files = sorted(folder.glob("*.png"))
    if not files:
        return None
    path = folder / FRAME_NAME.format(frame=min(max(int(frame), 0), len(files) - 1))
    return path if path.is_file() and jobs.inside(path, job.folder) else None


def player_video(exports: dict[str, Path]) -> Path | None:
    for name in PLAYER_ORDER:
        p = exports.get(name)
        if p is not None and p.is_file() and p.suffix.lower() in PLAYABLE:
            return p
    return None



# --------------------------------------------------------------------------------------------------
# the preview of the effect, before a job


class PagePreview:
    """The page's preview (``svg3d.preview``) over the inputs a job would get: an upload (a video, or a zip of
    frames unpacked once into ``<jobs>/.preview``), or the demo clip; depth from a server's model (one kept
    loaded), an uploaded zip of maps, or the demo's exact depth. Frames and depth maps are cached per frame.
    """

    def __init__(self, queue: JobQueue, *, max_upload_bytes: int, depth_models: Sequence[jobs.DepthChoice]) -> None:
        from . import preview

        self.queue, self.max_upload_bytes = queue, max_upload_bytes
        self.folder = queue.root / PREVIEW_DIR
        self.models = {c.name: c for c in depth_models}
        self.frames, self.depths = preview.Previewer(), preview.Previewer()
        self._lock = threading.Lock()  # unpacking and model loading, one at a time
        self._model: tuple[str, object] | None = None

    def _upload(self, upload, what: str) -> Path:
        if upload is None or not (Path(upload).is_file() and jobs.inside(upload, self.queue.root)):
            raise InputError(f"{what}: not a file uploaded to this server")
        return Path(upload)

    def _unpacked(self, archive: Path, kind: str, suffixes: Sequence[str]) -> Path:
        """The files of an uploaded zip, unpacked once (``jobs.unpack_zip``, the jobs' checks and bounds)."""
        st = archive.stat()
        digest = hashlib.sha256(f"{archive}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
        folder = self.folder / digest / kind
        with self._lock:
            if not (folder / ".done").is_file():
                import shutil

                shutil.rmtree(folder, ignore_errors=True)
                jobs.unpack_zip(archive, folder, suffixes=suffixes, max_bytes=jobs.UNPACK_FACTOR * self.max_upload_bytes,
                                what=jobs.safe_name(archive.name))  # fmt: skip
                (folder / ".done").touch()
        return folder

    def input_path(self, source: str, upload) -> Path:
        """The video or frames folder to preview (``InputError`` when there is none)."""
        from . import io

        if source == "demo":
            return self.queue.demo()[0]
        if upload is None:
            raise InputError("choose a video (or a zip of frames) to preview, or the demo clip")
        path = self._upload(upload, "upload")
        if path.suffix.lower() == ".zip":
            return self._unpacked(path, "frames", io.IMAGE_SUFFIXES)
        if path.suffix.lower() not in jobs.VIDEO_SUFFIXES:
            raise InputError(f"{path.name}: not a video or a zip of frames")
        return path

    def frame_count(self, source: str, upload) -> int:
        from .source import open_source

        src = open_source(self.input_path(source, upload))
        src.close()
        return src.info.total_frames

    def frame(self, path: Path, index: int, size) -> np.ndarray:
        from .source import open_source

        def read():
            src = open_source(path, size=size)
            try:
                if not 0 <= index < src.info.total_frames:
                    raise InputError(f"frame {index}: the clip has {src.info.total_frames} frames")
                return src.frames(index, index + 1)[0]
            finally:
                src.close()

        return self.frames.get((str(path), index, size), read)

    def depth_source(self, choice: str, source: str, depth_zip) -> tuple[Path | None, str | None]:
        """(depth zip, depth model) of the page's depth source, both None for the demo's exact depth; ``InputError``
        when it cannot be used (no zip uploaded, the demo's depth without the demo, a model the server lacks)."""
        if choice == DEPTH_ZIP:
            if depth_zip is None:
                raise InputError("upload the depth maps (a zip, one map per frame), or choose a depth model")
            return self._upload(depth_zip, "depth maps"), None
        if choice == DEPTH_DEMO:
            if source != "demo":
                raise InputError("the demo clip's depth goes with the demo clip: choose a depth model or upload depth maps")
            return None, None
        if choice not in self.models:
            raise InputError(f"depth model {choice!r}: not one of this server's")
        jobs.check_depth_model(choice)
        return None, choice

    def disparity(self, choice: str, depth_zip, source: str, path: Path, index: int, frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """The depth of the frame by the chosen source at ``size`` (h, w), the size convert keeps depth at."""
        from . import io
        from .stages import depth as depth_stage

        archive, model = self.depth_source(choice, source, depth_zip)
        if model is not None:
            return self.depths.get(("model", model, str(path), index, size), lambda: self._model_depth(model, frame, size))
        folder = self._unpacked(archive, "depth", io.DEPTH_SUFFIXES) if archive is not None else self.queue.demo()[1]

        def read():
            files = io.list_depths(folder)
            if index >= len(files):
                raise InputError(f"depth maps: {len(files)} maps, no map for frame {index}")
            return depth_stage.resize_depth(io.read_depth(files[index])[None], size)[0]  # as convert's FolderDepth

        return self.depths.get(("folder", str(folder), index, size), read)

    def _model_depth(self, name: str, frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        import torch

        from . import models, preview

        with self._lock:
            if self._model is None or self._model[0] != name:
                self._model = None  # the previous one goes before the next loads
                self._model = (name, models.load_depth_model(name, device=torch.device("cpu"), flag="depth_model"))
            model = self._model[1]
        return preview.model_disparity(model, frame, size)

    def render(self, source: str, upload, choice: str, depth_zip, index: int, config) -> dict:
        """The preview of frame ``index``: anaglyph, side by side, wiggle GIF (a file), depth, and a line on it."""
        from . import convert, preview
        from .stages import depth as depth_stage

        started = time.perf_counter()
        path = self.input_path(source, upload)
        frame = self.frame(path, index, config.clip.size)
        computed = self.depths.computed
        size = depth_stage.depth_size(frame.shape[:2], config.depth.resolution)
        d = self.disparity(choice, depth_zip, source, path, index, frame, size)
        cached = self.depths.computed == computed
        small, small_config = preview.downscale(frame, config)
        pair = preview.stereo_pair(small, d, small_config)
        wiggle = preview.write_wiggle(self.folder / "wiggle" / f"{time.time_ns()}.gif", pair)
        for old in sorted(wiggle.parent.glob("*.gif"))[:-KEEP_WIGGLES]:  # Gradio has its copy of those it showed
            old.unlink(missing_ok=True)
        kept = 1.0 - pair.holes
        line = f"frame {index}: {pair.filler} fill"
        if pair.filler != config.filler:
            line += f" (standing in for {config.filler}, which fills in the real run)"
        line += f"; {pair.holes:.1%} of the other eye was hidden and filled · depth {'kept from before' if cached else 'computed'}"
        if small is not frame:
            line += f" · previewed at {small.shape[1]}×{small.shape[0]}"
        line += f" · {1000 * (time.perf_counter() - started):.0f} ms"
        if kept < convert.LOW_KNOWN_SHARE:
            line += f"  \n⚠ the other eye shows only {kept:.0%} of the picture: the effect is too strong; lower the 3D strength"
        return {"anaglyph": preview.anaglyph(pair, config.exports.anaglyph), "sbs": preview.side_by_side(pair), "wiggle": wiggle,
                "depth": depth_stage.preview_image(d), "message": line}  # fmt: skip


# --------------------------------------------------------------------------------------------------
# the page


CSS = """
.svg3d-stage, .svg3d-overall { display: flex; gap: .75em; align-items: center; margin: .2em 0; font-variant-numeric: tabular-nums; }
.svg3d-overall { font-weight: 600; }
.svg3d-stage-name { width: 7em; font-weight: 600; }
.svg3d-stage progress, .svg3d-overall progress { flex: 1; height: 1em; }
.svg3d-error p { color: #c0392b; font-weight: 600; }
"""


def depth_source_choices(found: Sequence[jobs.DepthChoice]) -> list[tuple[str, str]]:
    """The page's depth sources: the server's models (usable first), the user's depth maps, the demo's depth."""
    return [*((c.label, c.name) for c in found), ("My depth maps (a zip I upload)", DEPTH_ZIP),
            ("The demo clip's exact depth (with the demo clip)", DEPTH_DEMO)]  # fmt: skip


def depth_note_text(found: Sequence[jobs.DepthChoice], choice: str) -> str:
    """What the page says under the depth source: why a model the server lacks cannot be used (else nothing)."""
    for c in found:
        if c.name == choice and c.missing is not None:
            try:
                jobs.check_depth_model(c.name)
            except InputError as e:
                return f"⚠ {e}"
    return ""


def build_app(queue: JobQueue, *, max_upload_bytes: int, models_dirs: Sequence[str | os.PathLike] = ()):
    """The Gradio page (``gr.Blocks``) over ``queue``; ``max_upload_bytes`` bounds what a zip may unpack to;
    ``models_dirs``: folders of depth models on this server (``jobs.depth_models``)."""
    import gradio as gr

    specs = controls()
    groups = flag_sections(specs)
    titles = section_titles(specs)
    found = jobs.depth_models(models_dirs)
    usable = [c.name for c in found if c.missing is None]
    default_depth = usable[0] if usable else DEPTH_ZIP
    page_preview = PagePreview(queue, max_upload_bytes=max_upload_bytes, depth_models=found)

    def job_choices() -> list[tuple[str, str]]:
        return [(f"{j.id} · {j.name}", j.id) for j in sorted(queue.jobs.values(), key=lambda j: j.id, reverse=True)]

    def check(*values) -> list:
        """Live check of the settings: (command text, the error of each section)."""
        errors = {t: "" for t in titles}
        flags: list[str] = []
        try:
            flags = flags_of(specs, values)
            jobs.parse_flags(flags)
        except InputError as e:
            errors[message_group(str(e), groups) or titles[-1]] = f"⚠ {e}"
        return [shlex.join(flags) or "(all defaults)", *errors.values()]

    def submit(upload, depth_zip, demo: bool, flags: list[str], depth_model: str | None = None) -> tuple[Job | None, str]:
        try:
            job = queue.submit(flags, upload=upload, depth_zip=depth_zip, demo=bool(demo), depth_model=depth_model,
                               max_upload_bytes=max_upload_bytes)  # fmt: skip
        except InputError as e:
            return None, f"⚠ {e}"
        return job, f"submitted job `{job.id}`: its state is on the right"

    def start(source: str, upload, depth_choice: str, depth_zip, *values):
        try:
            flags = flags_of(specs, values)
            zip_file, model = page_preview.depth_source(depth_choice, source, depth_zip)
        except InputError as e:
            return gr.skip(), f"⚠ {e}"
        job, message = submit(upload if source == "upload" else None, zip_file, source == "demo", flags, model)
        if job is None:
            return gr.skip(), message
        return gr.update(choices=job_choices(), value=job.id), message

    def input_changed(source: str, upload):
        """A new input: the preview's frame slider spans its frames."""
        try:
            n = page_preview.frame_count(source, upload)
        except InputError:
            return gr.update(maximum=1, value=0)
        return gr.update(maximum=max(n - 1, 1), value=0)

    def show_preview(source: str, upload, depth_choice: str, depth_zip, index, *values):
        try:
            config = jobs.parse_flags(flags_of(specs, values))
            out = page_preview.render(source, upload, depth_choice, depth_zip, int(index or 0), config)
        except InputError as e:
            return None, None, None, None, f"⚠ {e}"
        return out["anaglyph"], out["sbs"], str(out["wiggle"]), out["depth"], out["message"]

    def job_or_none(job_id) -> Job | None:
        try:
            return queue.get(job_id)
        except InputError:
            return None

    def buttons(job: Job | None) -> list:
        """Cancel while queued or running, Resume once stopped short, Download once done (its video)."""
        done = job is not None and job.state == "done"
        video = player_video(jobs.results(job)) if done else None
        return [gr.update(interactive=job is not None and job.state in jobs.ACTIVE),
                gr.update(interactive=job is not None and job.state in RESUMABLE),
                gr.update(interactive=video is not None, value=_str(video))]  # fmt: skip

    def refresh(job_id, shown: dict):
        """Poll: status and progress always; the results and buttons once per change of the job shown."""
        nothing = [gr.skip()] * 11
        job = job_or_none(job_id)
        if job is None:
            return ["", "", *nothing[:7], *buttons(None), shown]
        st = status(queue, job)
        key = {"job": job.id, "state": job.state, "runs": len(job.runs)}
        results_out = nothing
        if key != shown:
            if job.state == "done":
                exports = jobs.results(job)
                anaglyph, depth = previews(job, exports)
                views = view_folders(exports)
                v = len(views)
                t = len(list(views[0].glob("*.png"))) if views else 1
                results_out = [
                    _str(player_video(exports)), _str(anaglyph), _str(depth),
                    # the sliders stay visible: Gradio 6.17's page hangs when two sliders are shown and given a new
                    # maximum in one update
                    gr.update(maximum=max(v - 1, 1), value=0), gr.update(maximum=max(t - 1, 1), value=0),
                    _str(view_frame(job, 0, 0)), _str(exports.get("report")), [str(p) for p in downloads(job, exports)], *buttons(job),
                ]  # fmt: skip
            else:  # a stopped job offers its log: why it failed, how far it got
                stopped = job.state not in jobs.ACTIVE and job.log_file.is_file()
                results_out = [None, None, None, gr.skip(), gr.skip(), None, None, [str(job.log_file)] if stopped else None, *buttons(job)]
        return [status_markdown(st), progress_html(st), *results_out, key]

    def show_view(job_id, view, frame):
        job = job_or_none(job_id)
        return None if job is None else _str(view_frame(job, view or 0, frame or 0))

    def cancel(job_id) -> str:
        job = job_or_none(job_id)
        return "" if job is None else f"cancel: {queue.cancel(job.id).state}"

    def resume(job_id) -> str:
        job = job_or_none(job_id)
        return "" if job is None else f"resume: {queue.resume(job.id).state}"

    # -- the API's functions (gradio_client), each on hidden components

    def api_submit(upload, depth_zip, demo, flags: str):
        try:
            flag_list = shlex.split(flags or "")
        except ValueError as e:
            return "", f"⚠ flags: {e}"
        job, message = submit(upload, depth_zip, demo, flag_list)
        return (job.id if job else ""), message

    def api_status(job_id):
        job = job_or_none(job_id)
        return {"error": f"{job_id!r}: no such job"} if job is None else status(queue, job)

    def api_wait(job_id):
        job = job_or_none(job_id)
        if job is None:
            return {"error": f"{job_id!r}: no such job"}, None
        queue.wait(job.id)
        files = [str(p) for p in downloads(job, jobs.results(job))] if job.state == "done" else None
        return status(queue, job), files

    def api_cancel(job_id):
        job = job_or_none(job_id)
        return {"error": f"{job_id!r}: no such job"} if job is None else status(queue, queue.cancel(job.id))

    def api_resume(job_id):
        job = job_or_none(job_id)
        return {"error": f"{job_id!r}: no such job"} if job is None else status(queue, queue.resume(job.id))

    with gr.Blocks(title="svg3d: 2D video to 3D") as app:
        gr.Markdown("## svg3d: a video to stereoscopic 3D\nChoose a video, set the 3D effect while the preview follows, "
                    "then convert. Each setting names its `python -m svg3d convert` flag.")  # fmt: skip
        with gr.Row():
            with gr.Column(scale=2):
                source = gr.Radio([("A video or a zip of frames", "upload"), ("The demo clip", "demo")], value="upload",
                                  label="Input", elem_id="svg3d-source")  # fmt: skip
                upload = gr.File(label="Video or zip of frames", file_types=UPLOAD_TYPES, elem_id="svg3d-upload")
                depth_dd = gr.Dropdown(depth_source_choices(found), value=default_depth, label="Depth from",
                                       info="a depth model this server has, or your own depth maps (relative inverse depth: "
                                            "larger = nearer), as --depth-model / --depth-from", elem_id="svg3d-depth-source")  # fmt: skip
                depth_note = gr.Markdown(depth_note_text(found, default_depth), elem_classes=["svg3d-error"], elem_id="svg3d-depth-note")
                depth_zip = gr.File(label="Depth maps: a zip of .npy/.png/.pfm, one per frame", file_types=[".zip"],
                                    elem_id="svg3d-depth", visible=default_depth == DEPTH_ZIP)  # fmt: skip
                inputs, group_errors = [], []
                parser_groups = {g.title: g for g in jobs.convert_parser()._action_groups}
                descriptions = {SECTIONS.get(t, t): g.description for t, g in parser_groups.items()}
                for title in titles:
                    slug = re.sub(r"\W", "", title)
                    with gr.Accordion(title, open=title == MAIN_TITLE, elem_id=f"svg3d-group-{slug}"):
                        if title != MAIN_TITLE and descriptions.get(title):
                            gr.Markdown(descriptions[title])
                        for c in (c for c in specs if c.section == title):
                            inputs.append(_component(gr, c))
                        group_errors.append(gr.Markdown("", elem_classes=["svg3d-error"], elem_id=f"svg3d-error-{slug}"))
                command = gr.Textbox(label="The same on the command line (convert flags)", value="(all defaults)",
                                     interactive=False, elem_id="svg3d-command")  # fmt: skip
                start_btn = gr.Button("Convert", variant="primary", elem_id="svg3d-start")
                message = gr.Markdown("", elem_id="svg3d-message")
            with gr.Column(scale=3):
                with gr.Group(elem_id="svg3d-preview"):
                    frame_pick = gr.Slider(0, 1, step=1, value=0, label="Frame to preview (of the input)", elem_id="svg3d-preview-frame")
                    with gr.Tabs():
                        with gr.Tab("Anaglyph", elem_id="svg3d-tab-anaglyph"):
                            pv_anaglyph = gr.Image(label="Preview: anaglyph (red/cyan glasses)", interactive=False, elem_id="svg3d-preview-anaglyph")
                        with gr.Tab("Side by side", elem_id="svg3d-tab-sbs"):
                            pv_sbs = gr.Image(label="Preview: side by side (left eye left)", interactive=False, elem_id="svg3d-preview-sbs")
                        with gr.Tab("Wiggle", elem_id="svg3d-tab-wiggle"):
                            pv_wiggle = gr.Image(label="Preview: wiggle (the two eyes in turn)", interactive=False, type="filepath",
                                                 elem_id="svg3d-preview-wiggle")  # fmt: skip
                        with gr.Tab("Depth", elem_id="svg3d-tab-depth"):
                            pv_depth = gr.Image(label="Preview: depth (bright = near)", interactive=False, elem_id="svg3d-preview-depth")
                    pv_message = gr.Markdown("", elem_id="svg3d-preview-message")
                with gr.Row(equal_height=True):
                    job_dd = gr.Dropdown(choices=job_choices(), value=None, label="Job", allow_custom_value=True, elem_id="svg3d-job", scale=5)
                    list_btn = gr.Button("List jobs", elem_id="svg3d-list-jobs", scale=1)
                status_md = gr.Markdown("", elem_id="svg3d-status")
                progress = gr.HTML("", elem_id="svg3d-progress")
                with gr.Row():
                    cancel_btn = gr.Button("Cancel", variant="stop", interactive=False, elem_id="svg3d-cancel")
                    resume_btn = gr.Button("Resume", interactive=False, elem_id="svg3d-resume")
                    download_btn = gr.DownloadButton("Download the video", interactive=False, elem_id="svg3d-download")
                action = gr.Markdown("", elem_id="svg3d-action")
                video = gr.Video(label="Side by side", interactive=False, elem_id="svg3d-video")
                with gr.Row():
                    anaglyph = gr.Image(label="Anaglyph (first frame)", interactive=False, elem_id="svg3d-anaglyph")
                    depth_img = gr.Image(label="Depth (first frame)", interactive=False, elem_id="svg3d-depth-preview")
                with gr.Accordion("Views of the frame matrix (with the views_png export)", open=True, elem_id="svg3d-views"):
                    with gr.Row():
                        view_slider = gr.Slider(0, 1, step=1, value=0, label="View (0 = leftmost camera)", elem_id="svg3d-view")
                        frame_slider = gr.Slider(0, 1, step=1, value=0, label="Frame", elem_id="svg3d-frame")
                    view_img = gr.Image(label="View", interactive=False, elem_id="svg3d-view-image")
                report_img = gr.Image(label="3D report: the depth against the screen's budget (svg3d.report)", interactive=False, elem_id="svg3d-report")
                files = gr.File(label="Downloads: every export and the log", file_count="multiple", interactive=False, elem_id="svg3d-downloads")
        shown = gr.State({})
        with gr.Row(visible=False):  # the API's inputs and outputs
            api_upload, api_depth = gr.File(), gr.File()
            api_demo, api_flags, api_job = gr.Checkbox(False), gr.Textbox(), gr.Textbox()
            api_message, api_state, api_files = gr.Textbox(), gr.JSON(), gr.File(file_count="multiple")
            api_go = gr.Button()

        private = dict(api_visibility="private", show_progress="hidden")
        gr.on([c.change for c in inputs], check, inputs, [command, *group_errors], **private)
        start_btn.click(start, [source, upload, depth_dd, depth_zip, *inputs], [job_dd, message], api_visibility="private")
        # the demo brings its exact depth; the depth zip shows when it is the depth source
        source.change(lambda s, d: DEPTH_DEMO if s == "demo" else (default_depth if d == DEPTH_DEMO else d), [source, depth_dd], depth_dd, **private)
        depth_dd.change(lambda d: (gr.update(visible=d == DEPTH_ZIP), depth_note_text(found, d)), depth_dd, [depth_zip, depth_note], **private)
        preview_in = [source, upload, depth_dd, depth_zip, frame_pick, *inputs]
        preview_out = [pv_anaglyph, pv_sbs, pv_wiggle, pv_depth, pv_message]
        gr.on([source.change, upload.change], input_changed, [source, upload], frame_pick, **private).then(
            show_preview, preview_in, preview_out, concurrency_limit=1, concurrency_id="preview", **private)  # fmt: skip
        gr.on([frame_pick.change, depth_dd.change, depth_zip.change, *[c.change for c in inputs]], show_preview, preview_in,
              preview_out, trigger_mode="always_last", concurrency_limit=1, concurrency_id="preview", **private)  # fmt: skip
        results = [video, anaglyph, depth_img, view_slider, frame_slider, view_img, report_img, files, cancel_btn, resume_btn, download_btn]
        poll = [status_md, progress, *results, shown]
        timer = gr.Timer(POLL_SECONDS)
        timer.tick(refresh, [job_dd, shown], poll, concurrency_limit=None, **private)
        job_dd.change(refresh, [job_dd, gr.State({})], poll, **private)
        # the list of jobs (other pages' too, with their states) is read on demand, not polled: an update racing a
        # selection would undo it
        list_btn.click(lambda job_id: gr.update(choices=job_choices(), value=job_id), job_dd, job_dd, api_visibility="private")
        gr.on([view_slider.change, frame_slider.change], show_view, [job_dd, view_slider, frame_slider], view_img, **private)
        cancel_btn.click(cancel, job_dd, action, api_visibility="private", concurrency_limit=None)
        resume_btn.click(resume, job_dd, action, api_visibility="private", concurrency_limit=None)
        api_go.click(api_submit, [api_upload, api_depth, api_demo, api_flags], [api_job, api_message], api_name="submit")
        api_go.click(api_status, api_job, api_state, api_name="status", concurrency_limit=None)
        api_go.click(api_wait, api_job, [api_state, api_files], api_name="wait", concurrency_limit=None)
        api_go.click(api_cancel, api_job, api_state, api_name="cancel", concurrency_limit=None)
        api_go.click(api_resume, api_job, api_state, api_name="resume", concurrency_limit=None)
    return app


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _component(gr, c: Control):
    label, info, elem_id = c.label, f"{c.help} · {c.option}" if c.help else c.option, f"svg3d-flag-{c.dest}"
    if c.kind == "exports":
        return gr.CheckboxGroup(list(c.choices), value=list(c.default), label=label, info=info, elem_id=elem_id)
    if c.kind == "slider":
        lo, hi, step, _ = SLIDERS[c.dest]
        return gr.Slider(lo, hi, step=step, value=c.default, label=label, info=info, elem_id=elem_id)
    if c.kind in ("toggle", "bool"):
        return gr.Checkbox(value=bool(c.default), label=label, info=info, elem_id=elem_id)
    if c.kind == "choice":
        named = [(LAYOUT_LABELS.get(x, x) if c.dest == "layout" else x, x) for x in c.choices]
        choices = named if c.default is not None else [("default", ""), *named]
        return gr.Dropdown(choices, value=c.default if c.default is not None else "", label=label, info=info, elem_id=elem_id)
    if c.kind in ("int", "float") and c.default is not None:
        return gr.Number(value=c.default, label=label, info=info, precision=0 if c.kind == "int" else None, elem_id=elem_id)
    if c.kind in ("int", "float"):  # unset by default: an empty text box, so that "no value" stays possible
        return gr.Textbox(value="", label=label, info=info, placeholder="default", elem_id=elem_id)
    return gr.Textbox(value="" if c.default is None else str(c.default), label=label, info=info, elem_id=elem_id)


# --------------------------------------------------------------------------------------------------
# serving


class _UploadLimit:
    """ASGI middleware: refuse (413) an upload whose request says it is larger than the limit, before reading it."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].rstrip("/").endswith("/upload"):
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_bytes + MULTIPART_SLACK:
                body = f"File size exceeded maximum allowed size of {self.max_bytes} bytes.".encode()
                await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def serve(jobs_dir: str | os.PathLike = DEFAULT_JOBS_DIR, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, models_dirs: Sequence[str | os.PathLike] = (), block: bool = True):  # fmt: skip
    """Start the page on ``host:port`` over the jobs of ``jobs_dir``; returns (app, queue, url).

    ``max_upload_mb``: checked first (``config.UISettings``); ``models_dirs``: folders of depth models the page
    offers (``jobs.depth_models``).

    Gradio reads its cache folder when it is imported, so ``serve`` must run before anything imports gradio
    in this process (``InputError`` otherwise). ``block``: serve until interrupted, then stop the running job.
    """
    max_upload_mb = UISettings(max_upload_mb=max_upload_mb).max_upload_mb  # checked before anything is made
    for folder in models_dirs:
        if not Path(folder).is_dir():
            raise InputError(f"models_dir {folder}: no such folder", params=("models_dir",))
    root = Path(jobs_dir).resolve()
    cache = root / CACHE_DIR
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(cache)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home
    # Gradio streams an upload into a temporary file before it checks its size and moves it into its cache, and
    # copies only files of the working or temporary folder into its cache when a handler returns them: both in
    # the jobs folder, then.
    tempfile.tempdir = str(root)
    import warnings

    from gradio import utils as gr_utils
    from starlette.middleware import Middleware

    # deprecations inside Gradio's own code (a log line per request otherwise): nothing a user can act on
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"(gradio|starlette|fastapi)(\.|$)")
    warnings.filterwarnings("ignore", message=r".* is deprecated\. Use .* instead", module=r"gradio(\.|$)")

    if not jobs.inside(gr_utils.get_upload_folder(), root):
        raise InputError(f"gradio was imported before its cache was set ({gr_utils.get_upload_folder()}); start the UI in a fresh process")
    max_bytes = int(max_upload_mb * 2**20)
    queue = JobQueue(root)
    app = build_app(queue, max_upload_bytes=max_bytes, models_dirs=models_dirs)
    app.queue(default_concurrency_limit=4)
    _, url, _ = app.launch(
        server_name=host, server_port=port, share=False, allowed_paths=[], max_file_size=max_bytes, quiet=True,
        ssr_mode=False, prevent_thread_lock=True, show_error=False, css=CSS, footer_links=[],
        app_kwargs={"middleware": [Middleware(_UploadLimit, max_bytes=max_bytes)]},
    )  # fmt: skip
    log.info("svg3d UI at %s (jobs in %s, uploads up to %s MB)", url, root, f"{max_upload_mb:g}")
    if block:
        import signal
        import threading
        import time

        if threading.current_thread() is threading.main_thread():  # `kill` stops it as Ctrl-C does
            signal.signal(signal.SIGTERM, _interrupt)
        try:
            while app.is_running:
                time.sleep(0.2)
        except KeyboardInterrupt:
            if queue.running() is not None:
                log.info("stopping: job %s is interrupted (resume it after a restart)", queue.running())
        finally:
            queue.close()
            app.close()
    return app, queue, url


def _interrupt(signum, frame):
    raise KeyboardInterrupt

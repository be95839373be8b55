"""``python -m svg3d ui``: a Gradio page over ``convert``, its jobs run by ``svg3d.jobs``.

The settings are the convert CLI's flags, generated from its parser (``jobs.convert_parser``), grouped as its
``--help`` groups them, with its defaults and choices: one source. Every change is checked with the CLI's own
parser and ``config_from_args`` and the CLI's one-line message shown in the group of the flag it names. Start
queues a job (``jobs.JobQueue``): a ``convert`` subprocess in the jobs folder; the page polls its progress log
(a bar and ETA per stage, the queue position) and shows its results: the side-by-side video in a player, the
anaglyph and depth previews, a slider over the views of a ``views_png`` export, the 3D report, a download of every export
(folders as zips) and of the log. Cancel kills the job within about a second, keeping its finished chunks;
Resume continues it.

Serving: bound to 127.0.0.1 unless ``host`` says otherwise; uploads larger than ``max_upload_mb`` are refused
while they stream in (Gradio's ``max_file_size``: the request is cut at the limit and its partial file deleted)
and, when their request says its length, before any byte is read (``_UploadLimit``). Gradio's cache (uploads and
the copies of the files it shows) is ``<jobs>/.gradio`` and Python's temporary folder the jobs folder, so
nothing the server stores is outside it; ``allowed_paths`` is empty, so Gradio serves its cache and its own
assets only: not the jobs' work folders, not the working directory.

API (``gradio_client``): ``/submit(upload, depth_zip, demo, flags) -> (job_id, message)`` with convert flags as
one string (``jobs.parse_flags`` checks them), ``/wait(job_id) -> (status, files)`` blocking until the job
stops, ``/status``, ``/cancel``, ``/resume`` ``(job_id) -> status``; ``status`` is a dict (state, message,
queue position, stages, exports).
"""

from __future__ import annotations

import argparse
import html
import logging
import os
import re
import shlex
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import jobs
from .checks import InputError
from .jobs import Job, JobQueue

log = logging.getLogger(__name__)

DEFAULT_JOBS_DIR = Path("results/ui-jobs")
DEFAULT_PORT = 7860
DEFAULT_MAX_UPLOAD_MB = 2048  # about 10 minutes of 1080p H.264 at a camera's bitrate
CACHE_DIR = ".gradio"  # Gradio's cache, inside the jobs folder
POLL_SECONDS = 1.0  # the page asks for progress this often
UI_DESTS = ("work_dir", "progress_log", "depth_from", "quiet")  # set by the jobs (jobs.UI_FLAGS), no control
OPEN_GROUPS = ("clip", "3D effect")  # groups shown open; the others start folded
PLAYABLE = (".mp4", ".webm")  # containers a browser plays (mkv is not)
PLAYER_ORDER = ("sbs", "hsbs", "cross", "tb", "htb", "anaglyph", "left")  # the first present goes in the player
UPLOAD_TYPES = [*jobs.VIDEO_SUFFIXES, ".zip"]
MULTIPART_SLACK = 64 * 1024  # bytes of an upload request that are not the file: boundaries, headers, names


# --------------------------------------------------------------------------------------------------
# the controls: one per convert flag, from its parser


@dataclass(frozen=True)
class Control:
    """A convert flag as a control: ``kind`` is toggle (--x/--no-x), bool (store_true), choice, int, float, text or
    exports (a set of export names)."""

    dest: str
    option: str
    kind: str
    default: object
    choices: tuple[str, ...]
    help: str
    group: str


def controls() -> list[Control]:
    """The convert flags but those the jobs set (``UI_DESTS``), in ``--help`` order, from the CLI's parser."""
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
            out.append(Control(a.dest, option, kind, default, choices, text, group.title))
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
        elif c.kind in ("int", "float"):
            x = _number(c, v)
            if c.default is None or x != c.default:
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
    if c.kind == "int":
        if x != int(x):
            raise InputError(f"{c.option} {v!r}: not a whole number")
        return int(x)
    return x


FLAG_IN_MESSAGE = re.compile(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*|-o)(?![\w-])")


def message_group(message: str, groups: dict[str, str]) -> str | None:
    """The group of the first flag an error message names (``jobs.flag_groups``), None when it names none."""
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
    stages = [{"stage": s.stage, "done": s.done, "total": s.total, "eta": s.eta} for s in jobs.read_progress(job.progress_log, since)]
    exports = {name: p.name for name, p in jobs.results(job).items()} if job.state == "done" else {}
    return {"job": job.id, "name": job.name, "state": job.state, "message": job.message, "position": queue.position(job.id),
            "queued": queue.queue_length(), "flags": job.flags, "stages": stages, "exports": exports}  # fmt: skip


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
    rows = []
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
# the page


CSS = """
.svg3d-stage { display: flex; gap: .75em; align-items: center; margin: .2em 0; font-variant-numeric: tabular-nums; }
.svg3d-stage-name { width: 6em; font-weight: 600; }
.svg3d-stage progress { flex: 1; height: 1em; }
.svg3d-error p { color: #c0392b; font-weight: 600; }
"""


def build_app(queue: JobQueue, *, max_upload_bytes: int):
    """The Gradio page (``gr.Blocks``) over ``queue``; ``max_upload_bytes`` bounds what a zip may unpack to."""
    import gradio as gr

    specs = controls()
    groups = jobs.flag_groups()
    titles = list(dict.fromkeys(c.group for c in specs))

    def job_choices() -> list[tuple[str, str]]:
        return [(f"{j.id} · {j.name}", j.id) for j in sorted(queue.jobs.values(), key=lambda j: j.id, reverse=True)]

    def check(*values) -> list:
        """Live check of the settings: (command text, the error of each group)."""
        errors = {t: "" for t in titles}
        flags: list[str] = []
        try:
            flags = flags_of(specs, values)
            jobs.parse_flags(flags)
        except InputError as e:
            errors[message_group(str(e), groups) or titles[-1]] = f"⚠ {e}"
        return [shlex.join(flags) or "(all defaults)", *errors.values()]

    def submit(upload, depth_zip, demo: bool, flags: list[str]) -> tuple[Job | None, str]:
        try:
            job = queue.submit(flags, upload=upload, depth_zip=depth_zip, demo=bool(demo), max_upload_bytes=max_upload_bytes)
        except InputError as e:
            return None, f"⚠ {e}"
        return job, f"submitted job `{job.id}`: its state is on the right"

    def start(source: str, upload, depth_zip, *values):
        try:
            flags = flags_of(specs, values)
        except InputError as e:
            return gr.skip(), f"⚠ {e}"
        job, message = submit(upload if source == "upload" else None, depth_zip, source == "demo", flags)
        if job is None:
            return gr.skip(), message
        return gr.update(choices=job_choices(), value=job.id), message

    def job_or_none(job_id) -> Job | None:
        try:
            return queue.get(job_id)
        except InputError:
            return None

    def refresh(job_id, shown: dict):
        """Poll: status and progress always; the results once, when the job shown reaches 'done'."""
        nothing = [gr.skip()] * 8
        job = job_or_none(job_id)
        if job is None:
            return ["", "", *nothing, shown]
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
                    _str(view_frame(job, 0, 0)), _str(exports.get("report")), [str(p) for p in downloads(job, exports)],
                ]  # fmt: skip
            else:  # a stopped job offers its log: why it failed, how far it got
                stopped = job.state not in jobs.ACTIVE and job.log_file.is_file()
                results_out = [None, None, None, gr.skip(), gr.skip(), None, None, [str(job.log_file)] if stopped else None]
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
        gr.Markdown("## svg3d: a monocular video to stereoscopic 3D\nThe settings are `python -m svg3d convert`'s flags, "
                    "with its defaults; the page runs the command it shows.")  # fmt: skip
        with gr.Row():
            with gr.Column(scale=2):
                source = gr.Radio(["upload", "demo"], value="upload", label="Input", info="upload a video or a zip of frames, or use the bundled demo clip")  # fmt: skip
                upload = gr.File(label="Video or zip of frames", file_types=UPLOAD_TYPES, elem_id="svg3d-upload")
                depth_zip = gr.File(label="Depth maps (zip of .npy/.png/.pfm, one per frame; optional: else the depth model)",
                                    file_types=[".zip"], elem_id="svg3d-depth")  # fmt: skip
                command = gr.Textbox(label="convert flags", value="(all defaults)", interactive=False, elem_id="svg3d-command")
                start_btn = gr.Button("Start", variant="primary", elem_id="svg3d-start")
                message = gr.Markdown("", elem_id="svg3d-message")
                inputs, group_errors = [], []
                parser_groups = {g.title: g for g in jobs.convert_parser()._action_groups}
                for title in titles:
                    slug = re.sub(r"\W", "", title)
                    with gr.Accordion(title, open=title in OPEN_GROUPS, elem_id=f"svg3d-group-{slug}"):
                        description = parser_groups[title].description
                        if description:
                            gr.Markdown(description)
                        for c in (c for c in specs if c.group == title):
                            inputs.append(_component(gr, c))
                        group_errors.append(gr.Markdown("", elem_classes=["svg3d-error"], elem_id=f"svg3d-error-{slug}"))
            with gr.Column(scale=3):
                with gr.Row(equal_height=True):
                    job_dd = gr.Dropdown(choices=job_choices(), value=None, label="Job", allow_custom_value=True, elem_id="svg3d-job", scale=5)
                    list_btn = gr.Button("List jobs", elem_id="svg3d-list-jobs", scale=1)
                status_md = gr.Markdown("", elem_id="svg3d-status")
                progress = gr.HTML("", elem_id="svg3d-progress")
                with gr.Row():
                    cancel_btn = gr.Button("Cancel", variant="stop", elem_id="svg3d-cancel")
                    resume_btn = gr.Button("Resume", elem_id="svg3d-resume")
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

        gr.on([c.change for c in inputs], check, inputs, [command, *group_errors], api_visibility="private", show_progress="hidden")
        start_btn.click(start, [source, upload, depth_zip, *inputs], [job_dd, message], api_visibility="private")
        results = [video, anaglyph, depth_img, view_slider, frame_slider, view_img, report_img, files]
        poll = [status_md, progress, *results, shown]
        timer = gr.Timer(POLL_SECONDS)
        timer.tick(refresh, [job_dd, shown], poll, api_visibility="private", show_progress="hidden", concurrency_limit=None)
        job_dd.change(refresh, [job_dd, gr.State({})], poll, api_visibility="private", show_progress="hidden")
        # the list of jobs (other pages' too, with their states) is read on demand, not polled: an update racing a
        # selection would undo it
        list_btn.click(lambda job_id: gr.update(choices=job_choices(), value=job_id), job_dd, job_dd, api_visibility="private")
        gr.on([view_slider.change, frame_slider.change], show_view, [job_dd, view_slider, frame_slider], view_img,
              api_visibility="private", show_progress="hidden")  # fmt: skip
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
    label, info, elem_id = c.option, c.help, f"svg3d-flag-{c.dest}"
    if c.kind == "exports":
        return gr.CheckboxGroup(list(c.choices), value=list(c.default), label=label, info=info, elem_id=elem_id)
    if c.kind in ("toggle", "bool"):
        return gr.Checkbox(value=bool(c.default), label=label, info=info, elem_id=elem_id)
    if c.kind == "choice":
        choices = list(c.choices) if c.default is not None else [("default", ""), *[(x, x) for x in c.choices]]
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
          max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, block: bool = True):  # fmt: skip
    """Start the page on ``host:port`` over the jobs of ``jobs_dir``; returns (app, queue, url).

    Gradio reads its cache folder when it is imported, so ``serve`` must run before anything imports gradio
    in this process (``InputError`` otherwise). ``block``: serve until interrupted, then stop the running job.
    """
    if max_upload_mb <= 0:
        raise InputError(f"max_upload_mb {max_upload_mb}: must be > 0", params=("max_upload_mb",))
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
    app = build_app(queue, max_upload_bytes=max_bytes)
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

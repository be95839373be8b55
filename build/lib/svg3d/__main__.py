"""``python -m svg3d``: the end-to-end commands.

    python -m svg3d convert INPUT -o OUT [options]    a video file or a frames folder -> 3D videos in OUT
    python -m svg3d convert --prompt TEXT -o OUT      text -> video (zeroscope) -> 3D, the prompt driving the fill
    python -m svg3d demo [--out results/demo]         render scenes, convert them, score them against the truth
    python -m svg3d batch INPUT_DIR -o OUT [options]  every video of a folder, in-process or on Ray (docs/batch.md)
    python -m svg3d ui [--jobs-dir DIR] [--port N]    the web UI (Gradio) on http://127.0.0.1:7860 (docs/ui.md)

``convert`` runs every stage in ``OUT/work``, chunk by chunk (resumable: run the same command again after a
crash or Ctrl-C). Defaults come from ``svg3d.config``; see ``svg3d.convert``.
"""

from __future__ import annotations

import argparse

from svg3d import cli
from svg3d.config import BatchSettings, UISettings


def main(argv: list[str] | None = None) -> int:
    import sys

    argv = sys.argv[1:] if argv is None else argv
    args = cli.create_parser(full="--help-all" in argv).parse_args(argv)
    cli.setup_logging(quiet=args.quiet)
    if args.command == "batch":
        status = [0]
        code = cli.run_cli(lambda: status.__setitem__(0, _batch(args)), flags=cli.FLAGS)
        return code or status[0]
    commands = {"convert": _convert, "demo": _demo, "ui": _ui}
    return cli.run_cli(lambda: commands[args.command](args), flags=cli.FLAGS)


def _convert(args: argparse.Namespace) -> None:
    from svg3d import convert, work
    from svg3d.checks import InputError

    config = cli.config_from_args(args)  # flags first: a bad flag fails before anything is read
    if args.input is None and not args.prompt:
        raise InputError("give an INPUT video or frames folder, or --prompt TEXT to generate the video")
    device = cli.resolve_device(args.device)
    work_dir = args.work_dir if args.work_dir is not None else work.default_work_dir(args.output)
    log_file = cli.setup_logging(quiet=args.quiet, log_file=work_dir / work.LOG_FILE, held=True)  # written once stages start
    progress = cli.StageBars(disable=args.quiet)
    if args.progress_log is not None:
        progress = cli.both(progress, cli.ProgressLog(args.progress_log))
    result = convert.convert(args.input, args.output, config, work_dir=work_dir, device=device, progress=progress, on_start=log_file.unhold)
    for name, path in result.exports.items():
        print(f"{name:9s} {path}")


def _batch(args: argparse.Namespace) -> int:
    """The batch, its summary table on stdout; 1 when any input failed (or was not run after a failure)."""
    from svg3d import batch, work

    config = cli.config_from_args(args)
    settings = BatchSettings(
        recursive=args.recursive, skip_error=args.skip_error, segment_frames=args.segment_frames, ray=args.ray,
        unit_cpus=args.unit_cpus, unit_gpus=args.unit_gpus, retries=args.retries, work_root=args.work_dir,
    )  # fmt: skip
    device = args.device if args.ray else str(cli.resolve_device(args.device))  # in-process: a bad --device fails now
    work.check_paths(None, args.output, args.work_dir or args.output)
    work.make_dirs(args.output)
    cli.setup_logging(quiet=args.quiet, log_file=args.output / "batch.log")
    progress = lambda desc, total, initial=0: cli.progress_bar(total, desc, initial=initial, disable=args.quiet)  # noqa: E731
    if args.progress_log is not None:
        progress = cli.both(progress, cli.ProgressLog(args.progress_log))
    report = batch.run_batch(args.input, args.output, config, settings=settings, device=device, progress=progress)
    print(report.table(cli.FLAGS))
    return 0 if report.ok else 1


def _demo(args: argparse.Namespace) -> None:
    from svg3d import demo

    report = demo.run_demo(args.out, seed=args.seed, progress=lambda desc, total, initial=0: cli.progress_bar(total, desc, initial=initial, disable=args.quiet))
    print(f"report    {report}")


def _ui(args: argparse.Namespace) -> None:
    settings = UISettings(jobs_dir=args.jobs_dir, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb)  # checked first
    from svg3d import ui

    ui.serve(settings.jobs_dir, host=settings.host, port=settings.port, max_upload_mb=settings.max_upload_mb, models_dirs=args.models_dir, block=True)


if __name__ == "__main__":
    raise SystemExit(main())

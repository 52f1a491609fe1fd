"""The ``hwnas`` command line: one entry point, one module per verb group.

Adding a verb is adding a module here and naming it in :data:`VERB_MODULES`. Every verb module
imports only light things at the top (typer, rich, the core values); torch, the runtimes and the
pipeline's heavy modules are imported inside the command that needs them, so ``hwnas --help``
and a mistake in the user's input are answered before any of them loads.
"""

from __future__ import annotations

import importlib
import sys

import typer

from hwnas.cli.common import app
from hwnas.errors import UserError

VERB_MODULES = (
    "space",
    "arch",
    "devices",
    "profile",
    "lut",
    "predictor",
    "train",
    "run",
    "export",
    "latency",
    "report",
    "prune",
    "search",
)


def _register_verbs() -> None:
    for name in VERB_MODULES:
        importlib.import_module(f"hwnas.cli.{name}")


def main() -> None:
    """Console-script entry point: user mistakes become one line and exit code 2."""
    _register_verbs()
    try:
        code = app(standalone_mode=False)
    except UserError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
    except typer.TyperException as error:  # typer's (vendored click's) usage errors: one line, not a box
        if type(error).__name__ == "NoArgsIsHelpError":
            error.show()  # a bare group (`hwnas`, `hwnas lut`): its help, as click would
            sys.exit(2)
        context = getattr(error, "ctx", None)
        hint = f" (see '{context.command_path} --help')" if context is not None else ""
        typer.echo(f"error: {error.format_message()}{hint}", err=True)
        sys.exit(error.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _interrupted()
    if code == INTERRUPTED:  # typer turns Ctrl-C into Exit(130), returned as the code: nothing was printed
        _interrupted()
    sys.exit(code if isinstance(code, int) else 0)


INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def _interrupted() -> None:
    typer.echo(
        "interrupted: everything finished so far is kept; run the same command again to continue where it stopped",
        err=True,
    )
    sys.exit(INTERRUPTED)


__all__ = ["app", "main"]

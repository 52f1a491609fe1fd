"""The ``hwnas`` command line: one entry point, one module per verb group.

Adding a verb is adding a module here and naming it in :data:`VERB_MODULES`. Every verb module
imports only light things at the top (typer, rich, the core values); torch, the runtimes and the
pipeline's heavy modules are imported inside the command that needs them, so ``hwnas --help``
and a mistake in the user's input are answered before any of them loads.
"""

from __future__ import annotations

import importlib
import signal
import sys
import warnings

import typer

from hwnas.cli.common import app
from hwnas.errors import OutOfResources, UserError
from hwnas.fileio import NOTHING_LOST, describe_out_of_space, is_out_of_space

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
    "supernet",
    "specialize",
    "scale",
)


def _register_verbs() -> None:
    for name in VERB_MODULES:
        importlib.import_module(f"hwnas.cli.{name}")


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into what Ctrl-C raises: every verb then stops, keeps what it finished and says how to resume."""


_signals: list[int] = []  # SIGTERM, once received (click turns the exception into Abort on its way)


def _on_sigterm(signum: int, frame: object) -> None:
    _signals.append(signum)
    raise Terminated()


def _one_line_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
    """A warning as the user reads it: ``warning: message``, without Python's file, line and source."""
    typer.echo(f"warning: {message}", err=True)


def main() -> None:
    """Console-script entry point: user mistakes become one line and exit code 2; Ctrl-C and SIGTERM stop cleanly."""
    _register_verbs()
    warnings.showwarning = _one_line_warning
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # an inherited "ignore" is respected, as for SIGINT
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = app(standalone_mode=False)
    except UserError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(OUT_OF_RESOURCES if isinstance(error, OutOfResources) else 2)
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
    except Exception as error:  # the machine's limits inside SQLite, Optuna, torch or a library's import: one line
        _out_of_resources(error)
    if code == INTERRUPTED:  # typer turns Ctrl-C into Exit(130), returned as the code: nothing was printed
        _interrupted()
    sys.exit(code if isinstance(code, int) else 0)


def _out_of_resources(error: Exception) -> None:
    """A full disk, a file-size limit or too little memory: one line saying so (exit 1); anything else is a bug, raised."""
    if is_out_of_space(error):
        typer.echo(f"error: {describe_out_of_space(error)}: {NOTHING_LOST}", err=True)
    elif isinstance(error, MemoryError) or (isinstance(error, ImportError) and _MAP_FAILED in str(error)):
        # a memory limit (ulimit -v) stops torch's import with "failed to map segment from shared object"
        typer.echo(f"error: out of memory: {NOTHING_LOST.replace('free some space', 'free some memory')}", err=True)
    else:
        raise error
    sys.exit(OUT_OF_RESOURCES)


_MAP_FAILED = "failed to map segment from shared object"
INTERRUPTED = 130  # 128 + SIGINT, as shells report it
OUT_OF_RESOURCES = 1  # not the user's mistake (2): the machine's
TERMINATED = 143  # 128 + SIGTERM


def _interrupted() -> None:
    code = TERMINATED if _signals else INTERRUPTED
    what = "terminated" if _signals else "interrupted"
    typer.echo(
        f"{what}: everything finished so far is kept; run the same command again to continue where it stopped",
        err=True,
    )
    sys.exit(code)


__all__ = ["app", "main"]

"""The command line's application, its shared options, error reporting and option parsing."""

from __future__ import annotations

import functools
import logging
import re
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from csrdmri.core.errors import InputError

app = typer.Typer(
    help="Continuous super-resolution of diffusion MRI guided by T1w anatomy (CSR-dMRI).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

InputArg = Annotated[
    Path,
    typer.Argument(
        help="DWI NIfTI file, or a dataset folder (HCP subject, BIDS subject, or a folder "
        "with dwi.nii.gz + dwi.bval + dwi.bvec [+ t1w.nii.gz])."
    ),
]
BvalOpt = Annotated[
    Path | None, typer.Option("--bval", help="FSL b-value file (default: found beside the DWI).")
]
BvecOpt = Annotated[
    Path | None, typer.Option("--bvec", help="FSL b-vector file (default: found beside the DWI).")
]


def _terminated(signum: int, frame: object) -> None:
    # SIGTERM (kill, a batch system's time limit) unwinds like Ctrl-C, so temporary files
    # and partial outputs are removed on the way out; exit status 128 + 15 as the shell does.
    raise SystemExit(143)


def user_errors(command):
    """Turn :class:`InputError` into one line on stderr and exit status 2 (no traceback), naming
    the flag of the library parameter it is about; print the package's warnings on stderr while
    the command runs; let SIGTERM clean up like Ctrl-C."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        handler = logging.StreamHandler()  # the stderr of this call (a test runner swaps it)
        handler.setFormatter(logging.Formatter("csrdmri: warning: %(message)s"))
        handler.setLevel(logging.WARNING)  # what a task logs at INFO goes to its log file only
        logger = logging.getLogger("csrdmri")
        logger.addHandler(handler)
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _terminated) if main else None
        try:
            return command(*args, **kwargs)
        except InputError as exc:
            flag = f"--{exc.option.replace('_', '-')}" if exc.option else None
            hint = f"; see {flag}" if flag and flag not in str(exc) else ""
            typer.echo(f"csrdmri: error: {exc}{hint}", err=True)
            raise typer.Exit(2) from None
        finally:
            logger.removeHandler(handler)
            if main:
                signal.signal(signal.SIGTERM, previous)

    return wrapper


def parse_list(text: str, name: str) -> list[float]:
    """``"2"``, ``"2,2,1"``, ``"2x2x1"`` or ``"2 3 4"`` → a list of numbers."""
    try:
        values = [float(p) for p in re.split(r"[,x×\s]+", text.strip()) if p]
    except ValueError:
        raise InputError(f"{name} must be a number or numbers like 2,2,1; got {text!r}") from None
    if not values:
        raise InputError(f"{name} needs at least one number")
    return values


def parse_triplet(text: str | None, name: str) -> list[float] | None:
    """One number or three (per axis), as :func:`parse_list`; ``None`` stays ``None``."""
    if text is None:
        return None
    values = parse_list(text, name)
    if len(values) not in (1, 3):
        raise InputError(f"{name} needs 1 or 3 numbers, got {len(values)} in {text!r}")
    return values

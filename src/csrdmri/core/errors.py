"""Errors that the command line reports as one clear sentence instead of a traceback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


class InputError(Exception):
    """A problem with what the user gave (a file, a value, an option).

    The message is a complete sentence naming the problem and, where there is one, the file.
    ``option``: the parameter of the library function the problem is about (e.g. ``"scale"``),
    which a command line can name by its own flag.
    """

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


@contextlib.contextmanager
def about(path: str | Path | None) -> Iterator[None]:
    """Name ``path`` in the :class:`InputError` s raised in the block that name no file: for
    checks on data already loaded (no b0 volume, a zero mean b0, ...), which do not know the
    file the data came from."""
    try:
        yield
    except InputError as exc:
        if path is None or str(path) in str(exc):
            raise
        raise InputError(f"{path}: {exc}", exc.option) from None

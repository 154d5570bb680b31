"""The ``csrdmri`` command line: typer commands that parse options, call one workflow and print.

Commands on one dataset are in :mod:`csrdmri.cli.dataset`, on cohorts and runs in
:mod:`csrdmri.cli.runs`; the application, error reporting and option parsing in
:mod:`csrdmri.cli.app`.
"""

from csrdmri.cli import cohort, dataset, runs  # noqa: F401  (importing them registers their commands)
from csrdmri.cli.app import app

__all__ = ["app"]

"""``python -m csrdmri``: the command line (also a script path for ``torchrun``)."""

from csrdmri.cli import app

app(prog_name="csrdmri")

"""csrdmri: continuous super-resolution of diffusion MRI guided by T1w anatomy (CSR-dMRI)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("csrdmri")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

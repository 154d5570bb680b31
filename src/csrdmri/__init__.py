"""csrdmri: continuous super-resolution of diffusion MRI guided by T1w anatomy (CSR-dMRI)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("csrdmri")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"


def __getattr__(name: str):
    """``csrdmri.upsample`` and ``csrdmri.load_model`` (:mod:`csrdmri.api`), imported on first use
    so that ``import csrdmri`` stays light."""
    if name in ("upsample", "load_model"):
        from csrdmri import api

        return getattr(api, name)
    raise AttributeError(f"module 'csrdmri' has no attribute {name!r}")

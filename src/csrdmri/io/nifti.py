"""Load and save dMRI data: NIfTI through nibabel, b-tables through DIPY, atomic writes.

Every failure a user can cause (missing or corrupt file, wrong dimensionality, b-table that
does not match the image, non-finite voxels) raises :class:`csrdmri.core.errors.InputError` with
one sentence naming the problem and the file.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import logging
import os
import re
import secrets
import socket
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from dipy.core.gradients import GradientTable, gradient_table
from dipy.io import read_bvals_bvecs

from csrdmri.core.errors import InputError
from csrdmri.io.layout import DatasetPaths, nifti_stem

log = logging.getLogger(__name__)

#: b-values at or below this (s/mm²) count as b0, as DIPY's default.
B0_THRESHOLD = 50.0
#: Voxels per write when saving a NIfTI (4 MiB of float32): memory spent writing an image is set
#: by this, not by the size of a volume (nibabel copies a whole volume per write).
WRITE_CHUNK = 1 << 20


@dataclass
class DWISeries:
    """A 4D diffusion-weighted series with its geometry and gradient table.

    Attributes
    ----------
    data : ndarray, shape (X, Y, Z, V), float32
        Intensities in the scanner's units (NIfTI scaling applied).
    affine : ndarray, shape (4, 4)
        Voxel-to-world (RAS+ mm) affine, the sform when set, else the qform.
    gtab : dipy.core.gradients.GradientTable
        b-values (s/mm²) and unit b-vectors, one per volume.
    header : nibabel.Nifti1Header
        The input header, kept so outputs can inherit units and codes.
    paths : DatasetPaths
        Where it was read from.
    """

    data: np.ndarray
    affine: np.ndarray
    gtab: GradientTable
    header: nib.Nifti1Header
    paths: DatasetPaths

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.data.shape[:3]  # type: ignore[return-value]

    @property
    def zooms(self) -> tuple[float, float, float]:
        """Voxel size in mm, from the affine."""
        return tuple(float(z) for z in nib.affines.voxel_sizes(self.affine))  # type: ignore[return-value]


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex): how a training subject is recognised wherever it lies."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: An image given by its file or in memory (the Python API's).
Source = str | Path | nib.Nifti1Image | nib.Nifti2Image


def describe(source: Source | None, what: str = "image") -> str:
    """How messages and sidecars name ``source``: its file, else "an in-memory <what>"."""
    if isinstance(source, nib.Nifti1Image | nib.Nifti2Image):
        name = source.get_filename()
        return str(name) if name else f"an in-memory {what}"
    return str(source)


def load_image(path: Source, what: str, ndim: tuple[int, ...] = (3,)) -> nib.Nifti1Image:
    """Open a NIfTI image (or take one already in memory) and check its dimensionality; the
    voxels are not read yet.

    ``what`` names the image in messages ("DWI", "T1w", "mask"); trailing singleton
    dimensions beyond 3 are squeezed.
    """
    if isinstance(path, nib.Nifti1Image | nib.Nifti2Image):
        img, path = path, describe(path, what)
    else:
        path = Path(path)
        if not path.exists():
            raise InputError(f"{what} file not found: {path}")
        try:
            img = nib.load(path)
        except Exception as exc:  # nibabel raises several types for unreadable files
            raise InputError(f"{what} file {path} is not a readable NIfTI image ({exc})") from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(f"{what} file {path} is not a NIfTI image ({type(img).__name__})")
    shape = img.shape
    while len(shape) > max(ndim) and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) not in ndim:
        need = " or ".join(f"{n}D" for n in ndim)
        raise InputError(f"{what} file {path} is {len(shape)}D {shape}; a {need} image is needed")
    if shape != img.shape:
        img = img.slicer[(...,) + (0,) * (len(img.shape) - len(shape))]
    qform, sform = img.get_qform(coded=True)[0], img.get_sform(coded=True)[0]
    if qform is not None and sform is not None and not np.allclose(qform, sform, atol=1e-3):
        # nibabel's (and FSL's, ANTs') rule: the sform wins; say so, since tools disagree.
        gap = np.abs(qform - sform).max()
        log.warning("%s file %s: qform and sform differ (by up to %.3g); using the sform", what, path, gap)
    return img


def read_voxels(img: nib.Nifti1Image, path: str | Path, what: str) -> np.ndarray:
    """Voxel data as float32, with a clear error for truncated files and non-finite voxels."""
    try:
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # truncated gzip, short file, ...
        raise InputError(f"{what} file {path} is corrupt or truncated ({exc})") from None
    bad = ~np.isfinite(data)
    if bad.any():
        raise InputError(f"{what} file {path} has {int(bad.sum())} NaN or infinite voxels")
    return data


def load_gradients(bval: Path, bvec: Path, n_volumes: int) -> GradientTable:
    """Read FSL b-values/b-vectors with DIPY and check them against the number of volumes."""
    for path, what, option in ((bval, "b-value", "bval"), (bvec, "b-vector", "bvec")):
        if not Path(path).exists():
            raise InputError(f"{what} file not found: {path}", option)
    try:
        bvals, _ = read_bvals_bvecs(str(bval), None)
    except Exception as exc:
        raise InputError(f"cannot read b-values from {bval}: {exc}") from None
    try:
        _, bvecs = read_bvals_bvecs(None, str(bvec))
    except Exception as exc:
        raise InputError(f"cannot read b-vectors from {bvec}: {exc}") from None
    return checked_gradients(bvals, bvecs, n_volumes, str(bval), str(bvec))


def checked_gradients(
    bvals, bvecs, n_volumes: int, bval_name: str = "bvals", bvec_name: str = "bvecs"
) -> GradientTable:
    """A gradient table of ``bvals`` (N,) s/mm² and ``bvecs`` (N, 3) checked against the number
    of volumes (the names say where they came from in messages)."""
    bvals = np.asarray(bvals, dtype=np.float64).ravel()
    bvecs = np.asarray(bvecs, dtype=np.float64)
    if bvecs.ndim == 2 and bvecs.shape[0] == 3 and bvecs.shape[1] != 3:
        bvecs = bvecs.T  # FSL's three rows
    if len(bvals) != n_volumes:
        raise InputError(f"{bval_name} lists {len(bvals)} b-values but the DWI has {n_volumes} volumes")
    if bvecs.ndim != 2 or bvecs.shape[1] != 3:
        raise InputError(f"{bvec_name} must list 3 numbers for each of the DWI's {n_volumes} volumes")
    if len(bvecs) != n_volumes:
        raise InputError(f"{bvec_name} lists {len(bvecs)} b-vectors but the DWI has {n_volumes} volumes")
    if not (np.isfinite(bvals).all() and np.isfinite(bvecs).all()) or (bvals < 0).any():
        raise InputError(f"{bval_name} / {bvec_name} hold negative or non-finite values")
    bvecs = unit_bvecs(bvecs, bvals > B0_THRESHOLD, bvec_name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return gradient_table(bvals, bvecs=bvecs, b0_threshold=B0_THRESHOLD)
    except ValueError as exc:
        raise InputError(f"b-vectors in {bvec_name} are not usable: {exc}") from None


def unit_bvecs(bvecs: np.ndarray, weighted: np.ndarray, path: str | Path) -> np.ndarray:
    """b-vectors (N, 3) of the diffusion-weighted volumes (``weighted``) scaled to unit length.

    A zero vector for a weighted volume is refused (no direction); other lengths more than 1 %
    off are normalised with a warning, the b-values being kept as given (some converters store
    b-value scaling in the vector length; csrdmri does not guess it). b0 vectors are left alone.
    """
    norms = np.linalg.norm(bvecs, axis=1)
    zero = np.flatnonzero(weighted & (norms < 1e-6))
    if zero.size:
        raise InputError(f"b-vector of diffusion-weighted volume {zero[0]} in {path} is zero (no direction)")
    off = weighted & (np.abs(norms - 1.0) > 1e-2)
    if off.any():
        log.warning(
            "%d b-vectors in %s are not unit length (%.3g to %.3g); normalised, b-values kept as given",
            off.sum(),
            path,
            norms[off].min(),
            norms[off].max(),
        )
    bvecs = bvecs.copy()
    bvecs[weighted] /= norms[weighted, None]
    return bvecs


def load_dwi(paths: DatasetPaths, img: nib.Nifti1Image | None = None) -> DWISeries:
    """Load a 4D DWI series and its gradient table; ``img``: the DWI already opened by
    :func:`load_image` (e.g. to check its grid before any voxel is read).

    Refused: an all-zero volume (a dropped acquisition: remove it and its b-value/b-vector).
    """
    img = img if img is not None else load_image(paths.dwi, "DWI", ndim=(4,))
    gtab = load_gradients(paths.bval, paths.bvec, img.shape[3])
    return DWISeries(dwi_voxels(img, paths.dwi), img.affine.copy(), gtab, img.header, paths)


def dwi_voxels(img: nib.Nifti1Image, name: str | Path) -> np.ndarray:
    """The DWI's voxels (:func:`read_voxels`); an all-zero volume (a dropped acquisition) is
    refused."""
    data = read_voxels(img, name, "DWI")
    empty = np.flatnonzero(~data.any(axis=(0, 1, 2)))
    if empty.size:
        raise InputError(
            f"volume {empty[0]} of {name} is all zero (a dropped volume?); remove it and its "
            "b-value and b-vector first"
        )
    return data


def current_umask() -> int:
    """The process umask, read without changing it where the system tells it (Linux's
    ``/proc/self/status``); elsewhere set and restored at once."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: This machine in the temporary files' names, so that only its own dead writers' are removed.
HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def remove_stale_temporaries(dest: Path, suffix: str) -> None:
    """Remove the temporary files :func:`atomic_path` left beside ``dest`` in writes whose process
    is gone (killed by SIGKILL); those of live processes and of other machines are left (POSIX
    only: elsewhere nothing is removed)."""
    if os.name != "posix":
        return
    pattern = re.compile(rf"\.{re.escape(dest.name)}\.{HOST}-(\d+)-[0-9a-f]{{12}}\.tmp{re.escape(suffix)}")
    for path in dest.parent.glob(f".{glob.escape(dest.name)}.*.tmp*"):
        match = pattern.fullmatch(path.name)
        if match is None:
            continue
        try:
            os.kill(int(match.group(1)), 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except PermissionError:  # alive, another user's
            pass


@contextlib.contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` only on success.

    The temporary name keeps ``dest``'s suffixes (so nibabel picks the same format), and is
    removed if the block raises or is interrupted, so ``dest`` is never half-written. A process
    killed outright (SIGKILL) cannot remove it: the next write of ``dest`` does
    (:func:`remove_stale_temporaries`). An ``OSError`` in the block (disk full, ...) becomes an
    :class:`InputError` naming ``dest``.
    """
    dest = Path(dest)
    if not dest.parent.is_dir():
        raise InputError(f"output folder does not exist: {dest.parent}")
    if not os.access(dest.parent, os.W_OK):
        raise InputError(f"cannot write to {dest.parent}: permission denied")
    suffix = ".nii.gz" if dest.name.endswith(".nii.gz") else dest.suffix
    remove_stale_temporaries(dest, suffix)
    # A fresh unique name rather than mkstemp, so the file gets the usual (umask) permissions.
    tmp = dest.parent / f".{dest.name}.{HOST}-{os.getpid()}-{secrets.token_hex(6)}.tmp{suffix}"
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, dest)
    except OSError as exc:  # disk full, quota, a folder that takes no files (e.g. /proc)
        raise InputError(f"cannot write {dest}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def output_image(
    data: np.ndarray, affine: np.ndarray, template: nib.Nifti1Header | None = None
) -> nib.Nifti1Image:
    """An image of ``data`` with ``affine`` as both qform and sform (code: scanner or the
    template's), float32 data, mm/s units, no scaling; pixdim follows from the affine."""
    header = template.copy() if template is not None else nib.Nifti1Header()
    header.set_data_dtype(np.float32)
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine, header)
    code = int(template["sform_code"]) if template is not None else 0
    img.set_sform(affine, code=code or 1)
    img.set_qform(affine, code=code or 1)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_slope_inter(1.0, 0.0)
    img.update_header()
    return img


def save_nifti(
    path: str | Path,
    data: np.ndarray,
    affine: np.ndarray,
    template: nib.Nifti1Header | None = None,
) -> None:
    """Write :func:`output_image` atomically, in bounded memory."""
    img = output_image(data, affine, template)
    with atomic_path(path) as tmp, nib.openers.ImageOpener(tmp, "wb") as f:
        img.header.write_to(f)  # header and extensions; sets the data offset after them
        f.write(b"\0" * (int(img.header.get_data_offset()) - f.tell()))
        for chunk in _fortran_chunks(img.dataobj, WRITE_CHUNK):
            f.write(chunk)


def _fortran_chunks(data: np.ndarray, voxels: int) -> Iterator[bytes]:
    """The bytes of ``data`` in Fortran (NIfTI) order, as consecutive pieces of about
    ``voxels`` values each: runs of whole planes ``data[:, :, k0:k1, ...]`` of one volume, or
    runs of rows ``data[:, j0:j1, k, ...]`` when one plane is larger than that."""
    grid = data.reshape((*data.shape[:3], -1))  # volumes last, a 3D image as one volume
    nx, ny, nz, nv = grid.shape
    rows = max(1, voxels // nx)
    for v in range(nv):
        if rows >= ny:
            step = max(1, rows // ny)
            for k in range(0, nz, step):
                yield grid[:, :, k : k + step, v].tobytes(order="F")
        else:
            for k in range(nz):
                for j in range(0, ny, rows):
                    yield grid[:, j : j + rows, k, v].tobytes(order="F")


def gradient_paths(nifti: str | Path) -> tuple[Path, Path]:
    """``<stem>.bval`` and ``<stem>.bvec`` beside a NIfTI path."""
    nifti = Path(nifti)
    stem = nifti_stem(nifti)
    return nifti.with_name(f"{stem}.bval"), nifti.with_name(f"{stem}.bvec")


def save_gradients(nifti: str | Path, gtab: GradientTable) -> tuple[Path, Path]:
    """Write FSL ``.bval``/``.bvec`` beside a NIfTI path, atomically; returns their paths."""
    bval, bvec = gradient_paths(nifti)
    with atomic_path(bval) as tmp:
        np.savetxt(tmp, gtab.bvals[None], fmt="%g")
    with atomic_path(bvec) as tmp:
        np.savetxt(tmp, gtab.bvecs.T, fmt="%.6f")
    return bval, bvec

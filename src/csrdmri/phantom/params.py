"""Parameters of the phantom cohort, recorded verbatim in ``cohort.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from csrdmri.core.errors import InputError


@dataclass(frozen=True)
class PhantomParams:
    """Everything that shapes a phantom subject (units in brackets).

    The defaults mimic the HCP data the paper uses: 1.25 mm isotropic, 145×174×145 voxels,
    b = 1000 s/mm² with 90 directions plus 18 b0s.
    """

    voxel_size: float = 1.25  # [mm] isotropic output voxel
    fov_mm: tuple[float, float, float] = (181.25, 217.5, 181.25)  # [mm] field of view
    n_dirs: int = 90  # diffusion-weighted directions on the sphere
    n_b0: int = 18  # b0 volumes, interleaved
    bvalue: float | tuple[float, ...] = 1000.0  # [s/mm²]; several: one shell of n_dirs each
    snr: float = 19.0  # mean WM b0 / Rician sigma
    t1_snr: float = 40.0  # mean WM T1w / Rician sigma
    crossing: bool = True  # second fibre population where the WM orientation is ambiguous
    deform_mm: float = 3.0  # [mm] s.d. of the smooth random displacement
    scale_sd: float = 0.04  # s.d. of the log global scaling (about ±4 %)
    bias_sd: float = 0.15  # s.d. of the log bias field
    sharpness: float = 1.5  # logistic sharpening of the template tissue maps (1 = as is)
    texture_sd: float = 0.5  # s.d. of fine WM/GM diffusivity heterogeneity (log scale)
    texture_mm: float = 5.0  # [mm] correlation length (Gaussian sigma) of that heterogeneity
    t1_coupling: float = 0.5  # T1w intensity × heterogeneity^-coupling (more myelin: brighter T1w, lower MD)
    orientation_sd: float = 0.0  # [°] r.m.s. angle of a smooth random rotation of the fibres (0: none)
    orientation_mm: float = 2.5  # [mm] correlation length (Gaussian sigma) of that rotation
    gm_anisotropy: float = 1.0  # GM tensor λ∥/λ⊥ along the cortical normal (1: isotropic)
    # Compartments: diffusivities [mm²/s] and b0 signal relative to WM (T2 weighting).
    wm_axial: float = 1.7e-3
    wm_radial: float = 0.3e-3
    gm_md: float = 0.8e-3
    csf_md: float = 3.0e-3
    s0_wm: float = 1000.0  # [a.u.] WM b0 before the bias field
    s0_gm_ratio: float = 1.3
    s0_csf_ratio: float = 2.6

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            numbers = value if isinstance(value, tuple) else (value,)
            if f.name == "crossing":
                continue
            if any(not isinstance(v, int | float) or v != v or v < 0 for v in numbers):
                raise InputError(f"phantom parameter {f.name} must be a non-negative number, got {value!r}")
        if self.voxel_size <= 0 or self.snr <= 0 or self.t1_snr <= 0 or min(self.bvalues) <= 0:
            raise InputError("phantom voxel size, SNRs and b-value must be positive")
        if self.gm_anisotropy < 1:
            raise InputError(
                f"phantom gm_anisotropy must be at least 1 (isotropic), got {self.gm_anisotropy}"
            )
        if self.n_dirs < 6 or self.n_b0 < 1:
            raise InputError("a phantom needs at least 6 directions and 1 b0 (for a tensor fit)")

    @property
    def bvalues(self) -> tuple[float, ...]:
        """The shells' b-values (s/mm²)."""
        return tuple(self.bvalue) if isinstance(self.bvalue, tuple) else (float(self.bvalue),)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape: the field of view in voxels (rounded)."""
        return tuple(max(1, round(f / self.voxel_size)) for f in self.fov_mm)  # type: ignore[return-value]

    def to_dict(self) -> dict:
        return asdict(self)

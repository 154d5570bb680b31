"""Data consistency (beyond the paper): make the output agree with the acquired data.

After the volumes are upsampled (and corrected by a model), each output volume ``j`` is replaced
by the volume nearest to it, in least squares, whose degradation by an assumed acquisition
operator (:mod:`csrdmri.core.degrade`) onto the input grid is the input's volume ``j`` (for a
new gradient direction, the shell's SH fit at that direction on the input grid,
:class:`~csrdmri.inference.plan.OutputPlan`):

``kspace``
    the output's central k-space block is the input's (what a scanner acquiring the input's
    matrix measures, to first order), the rest of its spectrum kept;
``image``
    the output, degraded by the tricubic operator (cubic B-spline sampling at the input's voxel
    centres, as the evaluation protocols' default degradation), equals the input.

What it guarantees: the output, degraded by the chosen operator, equals the input to float32
rounding — except where the final clip at 0 (magnitude data) acts. When the assumed operator is
the one that made the input from a truth, the result is never farther from that truth than the
output before (an orthogonal projection onto a set holding the truth); with another operator
there is no such guarantee, which is why it is a choice and measured (docs/results.md).
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from csrdmri.core.degrade import consistent
from csrdmri.inference.plan import OutputPlan
from csrdmri.io.nifti import DWISeries

#: ``--consistency`` choices -> the degradation operator assumed (None: off).
CONSISTENCY = {"off": None, "kspace": "kspace", "image": "tricubic"}


def impose_consistency(out: np.ndarray, series: DWISeries, plan: OutputPlan, consistency: str) -> None:
    """Make every output volume of ``out`` (X, Y, Z, V_out) consistent with its input volume on
    the grid of ``series`` (module docstring), in place, then clip it at 0; nothing for ``"off"``."""
    operator = CONSISTENCY[consistency]
    if operator is None:
        return
    for j in tqdm(range(out.shape[3]), desc=f"data consistency ({consistency})", unit="vol", disable=None):
        lr = plan.volume(series.data, j)
        out[..., j] = np.maximum(consistent(np.asarray(out[..., j]), lr, operator), 0.0)

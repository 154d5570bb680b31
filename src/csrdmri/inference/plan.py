"""Which volumes the output holds and how each is made from the input's: the acquired ones, or
new gradient directions of the acquired shells (angular super-resolution, beyond the paper).

Every output volume ``j`` is, on the LR grid, a weighted sum of input volumes
(``weights[j]``, one 1 for an acquired volume), upsampled tricubically; the joint q-space
model then adds its correction to the volumes of each modelled shell
(:mod:`csrdmri.inference.joint`), fitted from the shell's acquired volumes and synthesised at
the output's directions. For a new direction ``g'`` of a shell with acquired directions ``D``,
the weights are ``Y(g')·F_D`` — the SH fit of the shell (:mod:`csrdmri.dmri.sh`) evaluated at
``g'`` — except that a requested direction that was acquired (±, within ``SAME_DIRECTION``)
takes the acquired volume itself: measured data are never replaced by a fit of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from dipy.core.gradients import GradientTable, gradient_table

from csrdmri.core.errors import InputError
from csrdmri.dmri.preprocess import shells as find_shells
from csrdmri.dmri.sh import MIN_DIRECTIONS, order_for, sh_matrices, unit_directions

#: |cos| above which a requested direction is the acquired one.
SAME_DIRECTION = 1 - 1e-6


@dataclass(frozen=True)
class OutputPlan:
    """The output's volumes.

    Attributes
    ----------
    gtab : GradientTable
        The output's b-table.
    weights : ndarray, shape (V_out, V_in), float64
        Output volume ``j`` on the LR grid is ``Σ_v weights[j, v] · input volume v``.
    shells : dict
        b-value → (indices of the input volumes fitted, indices of the output volumes made from
        them), for every shell with at least ``MIN_DIRECTIONS`` directions.
    skipped : dict
        b-value → number of directions of the shells too small to fit (they stay as acquired).
    """

    gtab: GradientTable
    weights: np.ndarray
    shells: dict[float, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    skipped: dict[float, int] = field(default_factory=dict)

    @property
    def angular(self) -> bool:
        """Whether the output has other directions than the input."""
        return self.weights.shape[0] != self.weights.shape[1] or not np.array_equal(
            self.weights, np.eye(len(self.weights))
        )

    @classmethod
    def build(cls, gtab: GradientTable, out_directions: np.ndarray | None = None) -> OutputPlan:
        """The acquired volumes (``out_directions`` None), or the b0s, the shells too small to
        fit as acquired, then ``out_directions`` (K', 3) for each shell, in the input's order of b."""
        directions = out_directions
        groups = find_shells(gtab)
        shells = {b: idx for b, idx in groups.items() if len(idx) >= MIN_DIRECTIONS}
        skipped = {b: len(idx) for b, idx in groups.items() if b not in shells}
        n_in = len(gtab.bvals)
        if directions is None:
            return cls(gtab, np.eye(n_in), {b: (idx, idx) for b, idx in shells.items()}, skipped)
        if not shells:
            raise InputError(
                f"no shell has the {MIN_DIRECTIONS} directions an SH fit needs: new directions "
                "cannot be made",
                "out_directions",
            )
        directions = unit_directions(np.asarray(directions, dtype=np.float64))
        kept = np.setdiff1d(np.arange(n_in), np.concatenate(list(shells.values())))
        rows = [np.eye(n_in)[kept]]
        bvals, bvecs, plan_shells = [gtab.bvals[kept]], [gtab.bvecs[kept]], {}
        start = len(kept)
        for b, idx in shells.items():
            rows.append(shell_weights(gtab.bvecs[idx], directions, idx, n_in))
            bvals.append(np.full(len(directions), gtab.bvals[idx].mean()))
            bvecs.append(directions)
            plan_shells[b] = (idx, np.arange(start, start + len(directions)))
            start += len(directions)
        out = gradient_table(
            np.concatenate(bvals), bvecs=np.concatenate(bvecs), b0_threshold=gtab.b0_threshold
        )
        return cls(out, np.concatenate(rows), plan_shells, skipped)

    def volume(self, data: np.ndarray, j: int) -> np.ndarray:
        """Output volume ``j`` on the LR grid from the input ``data`` (X, Y, Z, V_in), float32."""
        used = np.flatnonzero(self.weights[j])
        if len(used) == 1 and self.weights[j, used[0]] == 1.0:
            return data[..., used[0]]
        out = np.zeros(data.shape[:3], np.float32)
        for v in used:
            out += np.float32(self.weights[j, v]) * np.asarray(data[..., v], dtype=np.float32)
        return out


def shell_weights(acquired: np.ndarray, directions: np.ndarray, volumes: np.ndarray, n_in: int) -> np.ndarray:
    """Rows (K', V_in) making ``directions`` from a shell's ``acquired`` b-vectors (K, 3), the
    input volumes ``volumes``: its SH fit evaluated there, or the acquired volume itself."""
    acquired = unit_directions(acquired)
    order = order_for(len(acquired))
    fit, _ = sh_matrices(acquired, order)
    _, basis = sh_matrices(directions, order)
    local = basis @ fit.T  # (K', K)
    same = np.abs(directions @ acquired.T) > SAME_DIRECTION
    for row in np.flatnonzero(same.any(axis=1)):
        local[row] = np.eye(len(acquired))[np.argmax(same[row])]
    rows = np.zeros((len(directions), n_in))
    rows[:, volumes] = local
    return rows

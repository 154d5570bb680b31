"""Published numbers of the CSR-dMRI paper (HCP test set), for side-by-side reporting only.

These are the paper's figures on HCP data; numbers that csrdmri measures on its phantom cohort or
on other data are never these and are always labelled with the data they come from.
"""

from __future__ import annotations

#: Scales of Tables 1 and 2, in column order.
SCALES = (2.0, 3.0, 4.0, 2.4)

#: Table 1: method -> scale -> (PSNR dB, SSIM).
TABLE1: dict[str, dict[float, tuple[float, float]]] = {
    "bicubic": {
        2.0: (25.8880, 0.9075),
        3.0: (23.6657, 0.8360),
        4.0: (22.6657, 0.7774),
        2.4: (24.6268, 0.8778),
    },
    "dcsrn": {2.0: (26.4039, 0.8901), 3.0: (24.3236, 0.8479), 4.0: (23.1425, 0.7974), 2.4: (25.1044, 0.8797)},
    "rescnn3d": {
        2.0: (26.7900, 0.9291),
        3.0: (24.7841, 0.8667),
        4.0: (23.3626, 0.8135),
        2.4: (25.4493, 0.8927),
    },
    "arssr": {2.0: (26.6123, 0.9343), 3.0: (25.3040, 0.9059), 4.0: (23.8770, 0.8554), 2.4: (26.2907, 0.9266)},
    "csr-dmri": {
        2.0: (27.3611, 0.9458),
        3.0: (26.0762, 0.9235),
        4.0: (24.5061, 0.8752),
        2.4: (27.1196, 0.9410),
    },
}

#: Table 2 (ablations): setting -> ((INR, T1w, FFT loss), scale -> (PSNR dB, SSIM)).
TABLE2: dict[str, tuple[tuple[bool, bool, bool], dict[float, tuple[float, float]]]] = {
    "baseline": (
        (False, False, False),
        {2.0: (26.9584, 0.9352), 3.0: (24.8094, 0.8789), 4.0: (23.3321, 0.8240), 2.4: (25.4377, 0.9015)},
    ),
    "m1": (
        (True, False, False),
        {2.0: (26.6123, 0.9343), 3.0: (25.3040, 0.9059), 4.0: (23.8770, 0.8554), 2.4: (26.2907, 0.9266)},
    ),
    "m2": (
        (False, True, False),
        {2.0: (27.0454, 0.9444), 3.0: (25.8534, 0.9222), 4.0: (24.2769, 0.8734), 2.4: (26.9627, 0.9408)},
    ),
    "m3": (
        (False, False, True),
        {2.0: (26.8047, 0.9354), 3.0: (25.5623, 0.9089), 4.0: (24.0327, 0.8575), 2.4: (26.5996, 0.9294)},
    ),
    "csr-dmri": (
        (True, True, True),
        {2.0: (27.3611, 0.9458), 3.0: (26.0762, 0.9235), 4.0: (24.5061, 0.8752), 2.4: (27.1196, 0.9410)},
    ),
}

r"""Diagnostics of plasticity: empirical NTK, layer Jacobians, dormant/dead units, ranks.

This module is the public facade of three modules split by subject, and re-exports their public
names (``from isoplast_lite.diagnostics import ...`` keeps working):

- :mod:`isoplast_lite.units`: hidden features, dormant / dead / firing / revived / cloned units,
  and the rank measures;
- :mod:`isoplast_lite.jacobians`: layer Jacobians and the isometry measures;
- :mod:`isoplast_lite.entk`: the empirical NTK, its resolution and its summary.

Model-level diagnostics (:func:`layer_jacobian_svdvals`, :func:`active_jacobian_svdvals`,
:func:`layer_isometry`, :func:`weight_singular_values`, :func:`dormant_fraction`,
:func:`dead_fraction`, :func:`firing_share`, :func:`hidden_features`) rely on the block structure of
:func:`~isoplast_lite.nn.relu_mlp` and :func:`~isoplast_lite.nn.aei_mlp`: an ``nn.Sequential``
of hidden blocks followed by a head. The *features* of a model on ``x`` are the outputs of its
hidden blocks (post-activation).

Non-finite input is an error: every function here raises a ``ValueError`` naming the argument
when a tensor (or a model's parameter) holds NaN or inf, since no diagnostic of such a network
is meaningful (a diverged run is recorded as such by the runner), and a ``TypeError`` for
float16 / bfloat16 tensors or models (torch's linear algebra has no half-precision kernels).
The scale-invariant measures (:func:`effective_rank`, :func:`srank`, :func:`stable_rank`, the
condition number and progress of :func:`ntk_summary`) give the same value for ``c * x`` as for
``x`` at any scale ``c`` that float arithmetic can hold.

Each module's docstring says what it measures and cites its sources; each function's, its formula.
"""

from .entk import NTK_METHODS, empirical_ntk, ntk_resolution, ntk_summary
from .jacobians import active_jacobian_svdvals, layer_isometry, layer_jacobian_svdvals, matrix_isometry, weight_singular_values
from .units import (
    CLONE_TOLERANCE,
    REVIVAL_THRESHOLD,
    clone_counts,
    clone_pairs,
    clones,
    dead_fraction,
    dead_units,
    dormant_fraction,
    dormant_units,
    effective_rank,
    firing_share,
    hidden_features,
    revived,
    srank,
    stable_rank,
)

__all__ = [
    "empirical_ntk",
    "ntk_summary",
    "ntk_resolution",
    "layer_jacobian_svdvals",
    "active_jacobian_svdvals",
    "layer_isometry",
    "weight_singular_values",
    "hidden_features",
    "clone_pairs",
    "clones",
    "clone_counts",
    "CLONE_TOLERANCE",
    "firing_share",
    "revived",
    "REVIVAL_THRESHOLD",
    "dormant_fraction",
    "dead_fraction",
    "dormant_units",
    "dead_units",
    "matrix_isometry",
    "effective_rank",
    "srank",
    "stable_rank",
    "NTK_METHODS",
]

"""isoplast_lite: the small library behind the isoplast companion book.

Companion to Rosseau, Müller & Nowé, "Preserving Plasticity in Continual Learning via Dynamical
Isometry" (ICML 2026). The public core (layers, the isometry regularizer, AdamO and the
diagnostics) is re-exported here; the submodules ``tasks``, ``methods``, ``run``, ``plots``,
``exercises`` and ``widgets`` are imported by name (``from isoplast_lite.run import ...``).
"""

from .diagnostics import (
    dead_fraction,
    dormant_fraction,
    effective_rank,
    empirical_ntk,
    layer_jacobian_svdvals,
    ntk_summary,
    srank,
    stable_rank,
)
from .isometry import isometry_grad, isometry_penalty
from .nn import GroupSort, OrthogonalLinear, aei_mlp, relu_mlp
from .monitor import PlasticityMonitor
from .optim import AdamO

# the method registry, built-in methods included (methods.py registers interventions.py's at its
# end; importing it here, before any submodule can import interventions first, keeps them built in)
from . import methods as _methods  # noqa: E402,F401  isort: skip

__version__ = "0.1.0"

__all__ = [
    "GroupSort",
    "OrthogonalLinear",
    "relu_mlp",
    "aei_mlp",
    "isometry_penalty",
    "isometry_grad",
    "AdamO",
    "empirical_ntk",
    "ntk_summary",
    "layer_jacobian_svdvals",
    "dormant_fraction",
    "dead_fraction",
    "effective_rank",
    "srank",
    "stable_rank",
    "PlasticityMonitor",
    "__version__",
]

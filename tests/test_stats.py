"""isoplast_lite.stats.holm (issue 22; wt-23 may extend stats with TOST and more)."""

import numpy as np
import pytest



def test_holm_against_the_step_down_definition_by_enumeration():
    """Holm's adjusted p-values equal the definition computed by brute force over orderings:
    reject H_i at alpha iff every hypothesis with a p-value <= p_i is rejected by p_(j) <= alpha/(m-j+1)."""
    from isoplast_lite.stats import holm

    rng = np.random.default_rng(0)
    for _ in range(50):
        p = rng.uniform(0, 0.2, size=rng.integers(1, 7))
        adjusted = holm(p)
        order = np.argsort(p, kind="stable")
        m = len(p)
        for alpha in (0.01, 0.05, 0.1):
            rejected = np.zeros(m, bool)
            for j, i in enumerate(order):  # step down: stop at the first failure
                if p[i] > alpha / (m - j):
                    break
                rejected[i] = True
            assert ((np.array(adjusted) <= alpha) == rejected).all(), (p, alpha)
    assert np.isnan(holm([0.01, float("nan")])[1]) and holm([0.01, float("nan")])[0] == 0.01
    with pytest.raises(ValueError, match="p_values"):
        holm([1.5])

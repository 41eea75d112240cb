"""The vectorised trial simulator: one module per component (docs/scenario.md).

Use :func:`trialsim.simulate.trial.simulate_trials`.
"""

from trialsim.simulate.trial import simulate_trials

__all__ = ["simulate_trials"]

"""Plan the next round from real data: estimate a scenario from one trial's data file.

:func:`calibrate_trial` estimates (outcome means and SDs, correlations, group ICC with its
posterior, attendance, dropout, the ITT effect with its posterior); :func:`write_scenario`
writes them as a commented scenario TOML with ``[design_priors]``. See
:mod:`trialsim.calibrate.estimate` for where each value comes from.
"""

from trialsim.calibrate.estimate import Calibration, calibrate_trial
from trialsim.calibrate.write import scenario_toml, write_scenario

__all__ = ["Calibration", "calibrate_trial", "scenario_toml", "write_scenario"]

"""Real trial data in: readers for the files evaluators have, column roles, wide-to-long
conversion, the checks of ``trialsim validate`` and the trial structure found.

Entry points: :func:`read_trial_data` (a :class:`~trialsim.data.TrialData` with its
:class:`~trialsim.structure.TrialStructure`), :func:`check_trial_file` (the same without
raising on problems) and :func:`load_trial_frame` (the checked long table). What the user
declares (``--scenario``, ``--covariate``, ``--reference``, ...) is a
:class:`~trialsim.io.declare.Declarations`.
"""

from trialsim.io.declare import Declarations
from trialsim.io.load import (
    DataProblems,
    LoadedTable,
    check_trial_file,
    load_trial_frame,
    read_sidecar,
    read_trial_data,
    sidecar_path,
)
from trialsim.io.mapping import ColumnMap, parse_mapping

__all__ = [
    "ColumnMap",
    "DataProblems",
    "Declarations",
    "LoadedTable",
    "check_trial_file",
    "load_trial_frame",
    "parse_mapping",
    "read_sidecar",
    "read_trial_data",
    "sidecar_path",
]

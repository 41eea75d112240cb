"""Real trial data in: readers for the files evaluators have, column mapping, wide-to-long
conversion and the schema and design checks of ``trialsim validate`` (DESIGN.md §6).

The one entry point is :func:`load_trial_frame`; :func:`trialsim.data.read_trial_data` builds
:class:`~trialsim.data.TrialData` from its result.
"""

from trialsim.io.load import DataProblems, LoadedTable, check_trial_file, load_trial_frame
from trialsim.io.mapping import ColumnMap, parse_mapping

__all__ = [
    "ColumnMap",
    "DataProblems",
    "LoadedTable",
    "check_trial_file",
    "load_trial_frame",
    "parse_mapping",
]

"""The ``trialsim`` command line: parse, call the library, write outputs.

Each command lives in its own module of this package and is registered below. Exit codes:
0 success, 2 bad input or usage (one line: what, where, how to fix), 1 internal error.
"""

from __future__ import annotations

import importlib

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="trialsim")
def main() -> None:
    """Plan and analyse clustered group trials (e.g. group social skills training).

    A scenario file (scenarios/*.toml) describes the trial: municipalities, randomisation unit,
    groups and trainers, attendance, outcomes, dropout and blinding. Start with

      trialsim validate scenarios/sft-19m.toml

    then simulate trials, compute power, or analyse data.
    """


# Command modules, each defining one or more click commands named in the tuple.
COMMANDS = {
    "validate": ("validate",),
    "calibrate": ("calibrate",),
    "simulate": ("simulate",),
    "power": ("power",),
    "analyse": ("analyse", "list_analyses"),
    "recruit": ("recruit",),
    "compare": ("compare", "budget"),
    "sweep": ("sweep",),
    "report": ("report",),
    "reanalyse": ("reanalyse",),
    "bayes": ("bayes",),
    "assurance": ("assurance",),
    "app": ("app",),
}

for _module, _names in COMMANDS.items():
    _mod = importlib.import_module(f"trialsim.cli.{_module}")
    for _name in _names:
        main.add_command(getattr(_mod, _name))

"""The ``trialsim`` command line: parse, call the library, write outputs.

Each command lives in its own module of this package and is registered below. Exit codes:
0 success, 2 bad input or usage (one line: what, where, how to fix), 1 internal error (one
line; the traceback is written to a log file whose path is printed), 130 interrupted.
"""

from __future__ import annotations

import importlib
import sys

import click


class TrialsimGroup(click.Group):
    """The top-level group: usage errors in one line (exit 2), internal errors in one line
    with the traceback in a log file (exit 1)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx is not None else "trialsim"
            message = " ".join(exc.format_message().split())
            click.echo(f"error: {message} (see '{command} --help')", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except (click.exceptions.Abort, KeyboardInterrupt):
            click.echo("interrupted", err=True)
            sys.exit(130)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except OSError as exc:
            from trialsim.errors import os_error_message

            message = os_error_message(exc)
            if message is None:
                _internal(exc)
            if getattr(exc, "errno", None) == 32:  # EPIPE: output piped into `head`
                sys.exit(0)
            click.echo(f"error: {message}", err=True)
            sys.exit(2)
        except Exception as exc:
            _internal(exc)
        sys.exit(result if isinstance(result, int) else 0)


def _internal(exc: BaseException) -> None:
    from trialsim.errors import internal_summary, log_internal_error

    log = log_internal_error(exc)
    click.echo(f"error: {internal_summary(exc, log)}", err=True)
    sys.exit(1)


@click.group(
    cls=TrialsimGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
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

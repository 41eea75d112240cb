"""`trialsim app`: the interactive trial planner in the browser."""

from __future__ import annotations

import socket
from pathlib import Path

import click

from trialsim.cli.common import InputError, friendly, reps_option, seed_option


def _free_port(host: str, port: int) -> int:
    """``port`` if it can be bound on ``host`` (0: any free port), else an input error."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            raise InputError(
                f"--port {port}: already in use on {host}; choose another, e.g. --port 0 "
                "for any free port"
            ) from None
        return sock.getsockname()[1]


@click.command()
@click.argument(
    "scenario",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("scenarios/sft-19m.toml"),
    required=False,
)
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port on 127.0.0.1 (0: any free port).",
)
@reps_option(2000)
@seed_option
@friendly
def app(scenario: Path, port: int, reps: int, seed: int) -> None:
    """Plan a trial in the browser, starting from SCENARIO (default scenarios/sft-19m.toml).

    Starts a local web app on 127.0.0.1 and prints its address; open it in a browser. Forms
    edit the design and nature of the trial (each change is a --set override); the page
    shows analytic power at once, simulated power, type-I error, bias and coverage of the
    default analysis (in the background, with progress; a change restarts it), the power
    curve over the number of groups, the design comparison, the recruitment timeline, and
    an evaluator's analysis of an uploaded trial-data file (default analysis and exact
    Bayesian posterior). It downloads the scenario, results and figures, and shows the
    command line that reproduces the answer. Every browser tab is its own session. Ctrl+C
    stops it.

    \b
    Examples:
      trialsim app
      trialsim app scenarios/sft-19m-municipality.toml --port 8050 --reps 500
    """
    from trialsim.scenario import load_scenario

    load_scenario(scenario)  # a bad scenario stops here with the one-line message
    host = "127.0.0.1"
    port = _free_port(host, port)
    import uvicorn

    from trialsim.app import create_app

    application = create_app(str(scenario), reps=reps, seed=seed)
    click.echo(f"trialsim app: http://{host}:{port} (planning {scenario}; Ctrl+C stops)")
    uvicorn.run(application, host=host, port=port, log_level="warning")

"""``trialsim app``: the interactive trial planner in the browser (Shiny for Python).

The app adds no statistics of its own: every figure comes from the library functions the
command line calls (scenario overrides, analytic power and solve, simulated operating
characteristics, the design comparison, recruitment, the default analysis and the exact
Bayesian posterior). Modules: :mod:`.toml_write` (scenario files out), :mod:`.fields` (the
form fields and their ``--set`` overrides), :mod:`.compute` (the library calls),
:mod:`.ui` (the page), :mod:`.server` (one session: scenario and form), :mod:`.planner`
(the answers), :mod:`.tabs` (designs, recruitment, evaluator), :mod:`.jobs` (background runs),
:mod:`.figures` (power curve, posterior).
"""

from __future__ import annotations


def create_app(scenario: str, *, reps: int = 2000, seed: int = 20161):
    """The Shiny app planning ``scenario`` (a TOML path); every browser tab is a session,
    starting with ``reps`` replicate trials and ``seed``."""
    from shiny import App

    from trialsim.app.server import make_server
    from trialsim.app.ui import make_ui

    return App(make_ui(scenario, reps=reps, seed=seed), make_server(scenario))

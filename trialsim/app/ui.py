"""The planner's page: the scenario's design and nature as forms, the answers beside them,
and tabs for the design comparison, the recruitment timeline and an evaluator's analysis."""

from __future__ import annotations

from pathlib import Path

from shiny import ui

from trialsim.app.fields import FIELDS, base_values, display

_CSS = """
.field-error { color: #b02a37; font-size: 0.85em; margin-top: -0.6em; margin-bottom: 0.6em; }
.sim-stale { opacity: 0.5; }
pre.cli { white-space: pre-wrap; }
table.oc td, table.oc th { padding: 2px 10px; text-align: right; }
table.oc td:first-child, table.oc th:first-child { text-align: left; }
"""

_COPY_JS = """
function trialsimCopy() {
  const t = document.getElementById('cli_command_text');
  if (!t) return;
  t.select();
  if (navigator.clipboard) { navigator.clipboard.writeText(t.value); }
  else { document.execCommand('copy'); }
  const b = document.getElementById('copy_cli');
  if (b) { b.textContent = 'Copied'; setTimeout(() => b.textContent = 'Copy', 1500); }
}
"""


def _input(f, value):
    if f.kind == "choice":
        return ui.input_select(f.id, f.label, list(f.choices), selected=value)
    if f.kind == "toml":
        return ui.input_text(f.id, f.label, value=display(f, value))
    step = 1 if f.kind == "int" else f.step
    return ui.input_numeric(f.id, f.label, value=value, step=step)


def _panel(name: str, values: dict):
    items = []
    for f in FIELDS:
        if f.panel != name:
            continue
        if values.get(f.id) is None:  # e.g. no SD for a count outcome: kept hidden
            items.append(ui.div(_input(f, None), style="display:none"))
        else:
            items.append(_input(f, values[f.id]))
        items.append(ui.output_ui(f"err_{f.id}"))
    return items


def make_ui(scenario: str, *, reps: int = 2000, seed: int = 20161):
    from trialsim.app.compute import build
    from trialsim.scenario import read_scenario_raw

    raw = read_scenario_raw(Path(scenario))
    s = build(raw, [], str(scenario))
    values = base_values(raw, s.model_dump(), s.primary)
    sidebar = ui.sidebar(
        ui.input_file("scenario_file", "Load a scenario (.toml)", accept=[".toml"]),
        ui.output_ui("err_upload"),
        ui.output_ui("scenario_name"),
        ui.download_button("download_scenario", "Download scenario (.toml)"),
        ui.output_ui("err_general"),
        ui.accordion(
            ui.accordion_panel("Design", ui.output_ui("arms"), *_panel("design", values)),
            ui.accordion_panel("Nature", *_panel("nature", values)),
            ui.accordion_panel(
                "Simulation",
                ui.input_numeric("reps", "Replicate trials", value=reps, min=1, step=100),
                ui.output_ui("err_reps"),
                ui.input_numeric("seed", "Seed", value=seed, step=1),
                ui.input_numeric("target_power", "Target power", value=0.8, step=0.05),
                ui.input_checkbox("auto", "Simulate on every change", value=True),
            ),
            open=["Design", "Nature", "Simulation"],
            multiple=True,
        ),
        width=360,
    )
    planner = ui.layout_columns(
        ui.card(
            ui.card_header("Analytic power (instant)"),
            ui.output_ui("analytic"),
        ),
        ui.card(
            ui.card_header("Simulated operating characteristics"),
            ui.output_ui("analysis_line"),
            ui.output_ui("sim_progress"),
            ui.div(
                ui.input_action_button("run", "Simulate", class_="btn-primary btn-sm"),
                ui.input_action_button("cancel", "Cancel", class_="btn-outline-danger btn-sm"),
            ),
            ui.output_ui("sim_result"),
        ),
        ui.card(
            ui.card_header("Power over the number of groups (analytic)"),
            ui.output_plot("curve", height="300px"),
            ui.div(
                ui.download_button("curve_png", "PNG", class_="btn-sm"),
                ui.download_button("curve_svg", "SVG", class_="btn-sm"),
            ),
        ),
        ui.card(
            ui.card_header("The same answer on the command line"),
            ui.output_ui("cli_command"),
            ui.div(
                ui.download_button("results_csv", "Results CSV", class_="btn-sm"),
                ui.download_button("results_json", "Results JSON", class_="btn-sm"),
            ),
        ),
        col_widths=[6, 6, 6, 6],
        fill=False,
    )
    designs = ui.card(
        ui.card_header("Randomisation designs on common random numbers (trialsim compare)"),
        ui.layout_columns(
            ui.input_numeric("compare_reps", "Replicates per design", value=200, min=1),
            ui.input_task_button("compare_run", "Compare designs"),
            ui.input_action_button("compare_cancel", "Cancel", class_="btn-outline-danger"),
            col_widths=[4, 4, 4],
        ),
        ui.output_ui("compare_progress"),
        ui.output_ui("compare_result"),
        ui.output_image("compare_figure", height="auto"),
    )
    recruitment = ui.card(
        ui.card_header("Recruitment and the trial timeline (trialsim recruit)"),
        ui.input_numeric("recruit_reps", "Replicates", value=500, min=1),
        ui.output_ui("recruit_result"),
        ui.output_image("recruit_figure", height="auto"),
        ui.div(
            ui.download_button("recruit_png", "PNG", class_="btn-sm"),
            ui.download_button("recruit_svg", "SVG", class_="btn-sm"),
        ),
    )
    evaluator = ui.layout_sidebar(
        ui.sidebar(
            ui.input_file("data_file", "Trial data (.csv, .xlsx, .parquet, .dta, .sav)"),
            ui.input_text("data_map", "Columns (--map)", placeholder="arm=gruppe,group=hold"),
            ui.input_text("data_outcome", "Outcome (default: the primary or only one)"),
            ui.input_select("data_better", "Better", ["", "higher", "lower"]),
            ui.input_numeric("data_mcid", "MCID (outcome units, optional)", value=None),
            ui.input_checkbox("data_use_scenario", "Outcome specs from the planner's scenario"),
            ui.input_task_button("evaluate", "Analyse"),
            width=340,
        ),
        ui.output_ui("evaluation"),
        ui.output_plot("posterior", height="300px"),
    )
    return ui.page_navbar(
        ui.nav_panel("Planner", ui.layout_sidebar(sidebar, planner, fillable=False)),
        ui.nav_panel("Designs", designs),
        ui.nav_panel("Recruitment", recruitment),
        ui.nav_panel("Evaluate a trial", evaluator),
        title="trialsim",
        id="tabs",
        header=ui.tags.head(ui.tags.style(_CSS), ui.tags.script(_COPY_JS)),
    )

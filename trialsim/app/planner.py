"""The planner's answers: analytic power and its curve at once, the simulated operating
characteristics in a background thread (restarted when an input changes, cancellable), the
command line reproducing them and the results files."""

from __future__ import annotations

import asyncio
import json
import time

from shiny import reactive, render, ui

from trialsim.app import compute
from trialsim.app.jobs import Job, error_line, progress_bar

_OC_ROWS = (
    ("power", "power_mcse", "power", 3),
    ("type1", "type1_mcse", "type-I error", 3),
    ("bias", "bias_mcse", "bias (outcome units)", 2),
    ("coverage", "coverage_mcse", "95% CI coverage", 3),
    ("empirical_se", "empirical_se_mcse", "empirical SE", 2),
)


def _pm(r: dict, k: str, e: str, d: int) -> str:
    v, se = r.get(k), r.get(e)
    if v is None or v != v:
        return "n/a"
    return f"{v:.{d}f} ± {se:.{d}f}" if se is not None and se == se else f"{v:.{d}f}"


def planner_outputs(input, session, form, sim_settings, source) -> None:
    """Register the planner's outputs in the current session."""

    # ---- analytic answers ----------------------------------------------------------------
    @reactive.calc
    def analytic_answer() -> dict | None:
        s = form()["scenario"]
        target = input.target_power()
        if s is None or not isinstance(target, int | float) or not 0 < target < 1:
            return None
        return compute.analytic(s, s.primary, float(target))

    @render.ui
    def analytic():
        a = analytic_answer()
        if a is None:
            return ui.p("(fix the input marked in red)", class_="text-muted")
        if "error" in a:
            return ui.p(a["error"], class_="field-error", id="analytic-error")
        rows = [
            ("power", f"{a['power']:.3f}"),
            ("formula", a["formula"]),
            ("ITT effect (outcome units)", f"{a['effect']:.3g}"),
            ("ICC (formula's)", f"{a['icc']:.3g}"),
            ("dropout", f"{a['dropout']:.2f}"),
        ]
        solve = a.get("solve", {})
        if "error" in solve:
            rows.append(("for the target", solve["error"]))
        elif solve:
            needed = f"{solve['value']:g} {solve['meaning']}"
            rows.append((f"for {solve['target_power']:.0%} power", needed))
        notes = [solve.get("held"), a.get("residual_note"), *solve.get("warnings", [])]
        return ui.div(
            ui.tags.table(
                *[ui.tags.tr(ui.tags.th(k), ui.tags.td(v)) for k, v in rows],
                class_="oc",
                id="analytic-table",
                **{"data-power": repr(a["power"])},
            ),
            *[ui.p(n, class_="small text-muted") for n in notes if n],
        )

    @reactive.calc
    def curve_data() -> dict | None:
        s, a = form()["scenario"], analytic_answer()
        if s is None or a is None or "error" in a:
            return None
        return compute.power_curve(s, s.primary, float(input.target_power()), answer=a)

    def curve_figure():
        from trialsim.app.figures import power_curve_figure

        c = curve_data()
        if c is None:
            return None
        solved = analytic_answer().get("solve", {}).get("value")
        return power_curve_figure(c, solved)

    @render.plot(alt="analytic power against the number of groups")
    def curve():
        return curve_figure()

    def _figure_download(make, fmt: str):
        from trialsim.app.figures import to_bytes

        fig = make()
        if fig is not None:
            yield to_bytes(fig, fmt)

    @render.download_button(filename="power-curve.png")
    def curve_png():
        yield from _figure_download(curve_figure, "png")

    @render.download_button(filename="power-curve.svg")
    def curve_svg():
        yield from _figure_download(curve_figure, "svg")

    # ---- simulation in the background ------------------------------------------------------
    jobs: dict[str, Job | None] = {"sim": None}
    last_sim = reactive.value(None)

    def _stop_jobs() -> None:  # a closed tab stops its runs
        for job in jobs.values():
            if job is not None:
                job.cancel.set()

    session.on_ended(_stop_jobs)

    @reactive.extended_task
    async def sim_task(s, job: Job):
        def run():
            out = compute.simulate(
                s, s.primary, reps=job.key["reps"], seed=job.key["seed"],
                progress=job.advance, cancel=job.cancel,
            )  # fmt: skip
            return {**out, **job.key, "seconds": time.perf_counter() - job.started}

        return await asyncio.to_thread(run)

    def sim_key() -> dict | None:
        f = form()
        reps, seed, err = sim_settings()
        if f["scenario"] is None or err:
            return None
        return {"overrides": f["overrides"], "reps": reps, "seed": seed, "source": source()}

    def start_simulation() -> None:
        key = sim_key()
        if key is None:
            return
        old = jobs["sim"]
        if old is not None:
            if old.key == key and not old.cancel.is_set() and sim_task.status() == "running":
                return
            old.cancel.set()
            if sim_task.status() == "running":
                sim_task.cancel()
        job = Job(key, key["reps"])
        jobs["sim"] = job
        sim_task.invoke(form()["scenario"], job)

    @reactive.effect(priority=100)  # before the analytic outputs: start the thread first
    def _auto_simulate():
        sim_key()  # depend on every input of the answer
        if input.auto():
            with reactive.isolate():
                start_simulation()

    @reactive.effect
    @reactive.event(input.run)
    def _run():
        start_simulation()

    @reactive.effect
    @reactive.event(input.cancel)
    def _cancel():
        job = jobs["sim"]
        if job is not None:
            job.cancel.set()
        if sim_task.status() == "running":
            sim_task.cancel()

    @reactive.effect
    def _keep_result():
        if sim_task.status() == "success":
            last_sim.set(sim_task.result())

    @render.ui
    def analysis_line():
        s = form()["scenario"]
        if s is None:
            return None
        return ui.p(compute.default_choice(s, s.primary).line(), class_="small",
                    id="analysis-line")  # fmt: skip

    @render.ui
    def sim_progress():
        status = sim_task.status()
        if status == "running":
            reactive.invalidate_later(0.25)
            return progress_bar(jobs["sim"], "simulating")
        if status == "error":
            try:
                sim_task.result()
            except Exception as exc:  # the library's one-line message
                return ui.div(error_line(exc), class_="field-error", id="sim-error")
        if status == "cancelled":
            return ui.p("cancelled", class_="text-muted", id="sim-cancelled")
        return None

    @render.ui
    def sim_result():
        r = last_sim()
        if r is None:
            return ui.p("(simulating...)", class_="text-muted")
        current = r.get("overrides") == (sim_key() or {}).get("overrides") and r.get("reps") == (
            sim_key() or {}
        ).get("reps")
        body = [
            ui.tags.tr(ui.tags.th(label), ui.tags.td(_pm(r, k, e, d)))
            for k, e, label, d in _OC_ROWS
        ]
        body.append(ui.tags.tr(ui.tags.th("failed fits"), ui.tags.td(str(r["failures"]))))
        done = "" if current else " (inputs changed since: updating)"
        return ui.div(
            ui.tags.table(*body, class_="oc"),
            ui.p(
                f"{r['analysis']} on {r['reps']} replicate trials (seed {r['seed']}); "
                f"truth {r['truth']:.3g}; ± one Monte Carlo SE; "
                f"{r['seconds']:.2f} s after the change{done}",
                class_="small text-muted",
            ),
            ui.tags.pre(json.dumps(r, default=str), id="sim-json", style="display:none"),
            class_="" if current else "sim-stale",
            id="sim-result",
        )

    # ---- the command line and the results files ------------------------------------------
    def command() -> str | None:
        key = sim_key()
        if key is None:
            return None
        return compute.cli_command(source(), key["overrides"], reps=key["reps"], seed=key["seed"])

    @render.ui
    def cli_command():
        c = command()
        if c is None:
            return ui.p("(fix the input marked in red)", class_="text-muted")
        return ui.div(
            ui.tags.textarea(
                c,
                id="cli_command_text",
                rows="3",
                readonly="readonly",
                class_="form-control",
                style="font-family:monospace;font-size:0.85em",
            ),  # fmt: skip
            ui.tags.button(
                "Copy",
                id="copy_cli",
                class_="btn btn-sm btn-secondary",
                onclick="trialsimCopy()",
            ),  # fmt: skip
        )

    def results() -> dict:
        s = form()["scenario"]
        a = analytic_answer() or {}
        r = last_sim()
        key = sim_key() or {}
        same = ("overrides", "reps", "seed")
        current = r is not None and all(r.get(k) == key.get(k) for k in same)
        analyses = []
        if a and "error" not in a:
            analyses.append({"name": f"analytic-{a['formula']}", "method": "analytic",
                             "outcome": s.primary, "power": a["power"]})  # fmt: skip
        if current:
            analyses.append({k: v for k, v in r.items() if k not in ("overrides", "source")})
        return {
            "scenario": s.name if s else None,
            "scenario_sha256": s.digest() if s else None,
            "command": command(),
            "overrides": key.get("overrides"),
            "seed": key.get("seed"),
            "reps": key.get("reps"),
            "analytic": a,
            "analyses": analyses,
        }

    @render.download_button(filename="results.json")
    def results_json():
        yield json.dumps(results(), indent=2, default=str)

    @render.download_button(filename="results.csv")
    def results_csv():
        import pandas as pd

        yield pd.DataFrame(results()["analyses"]).to_csv(index=False)

"""The other tabs: the designs on common random numbers, the recruitment timeline and the
evaluator's analysis of an uploaded trial-data file."""

from __future__ import annotations

import asyncio
import html
import shutil
import time
from pathlib import Path

from shiny import reactive, render, ui

from trialsim.app import compute
from trialsim.app.jobs import Job, error_line, progress_bar


def tab_outputs(input, session, form, sim_settings, source, tmp: Path) -> None:
    """Register the outputs of the Designs, Recruitment and Evaluate tabs."""
    jobs: dict[str, Job | None] = {"compare": None}
    session.on_ended(lambda: jobs["compare"] is not None and jobs["compare"].cancel.set())

    # ---- designs on common random numbers -----------------------------------------------
    @reactive.extended_task
    async def compare_task(s, job: Job):
        def run():
            c = compute.compare(
                s, s.primary, reps=job.key["reps"], seed=job.key["seed"],
                progress=job.advance, cancel=job.cancel,
            )  # fmt: skip
            from trialsim.design.figures import compare_figure

            path = tmp / f"compare-{id(job)}.png"
            compare_figure(c.rows, path, title=s.name)
            return c, path

        return await asyncio.to_thread(run)

    @reactive.effect
    @reactive.event(input.compare_run)
    def _compare():
        from trialsim.design.compare import DESIGNS

        s, reps = form()["scenario"], input.compare_reps()
        _, seed, err = sim_settings()
        if s is None or err or not isinstance(reps, int) or reps < 1:
            return
        job = Job({"reps": reps, "seed": seed}, reps * len(DESIGNS))
        jobs["compare"] = job
        compare_task.invoke(s, job)

    @reactive.effect
    @reactive.event(input.compare_cancel)
    def _compare_cancel():
        if jobs["compare"] is not None:
            jobs["compare"].cancel.set()
        if compare_task.status() == "running":
            compare_task.cancel()

    @render.ui
    def compare_progress():
        if compare_task.status() == "running":
            reactive.invalidate_later(0.25)
            return progress_bar(jobs["compare"], "comparing")
        return None

    @render.ui
    def compare_result():
        status = compare_task.status()
        if status == "initial":
            return ui.p("Press 'Compare designs'.", class_="text-muted")
        if status == "cancelled":
            return ui.p("cancelled", class_="text-muted")
        if status == "error":
            try:
                compare_task.result()
            except Exception as exc:
                return ui.div(error_line(exc), class_="field-error")
        if status != "success":
            return None
        from trialsim.design.compare import format_comparison

        c, _ = compare_task.result()
        return ui.tags.pre(format_comparison(c), id="compare-table")

    @render.image(delete_file=False)
    def compare_figure():
        if compare_task.status() != "success":
            return None
        return {"src": str(compare_task.result()[1]), "width": "100%"}

    # ---- recruitment -------------------------------------------------------------------
    @reactive.calc
    def recruitment():
        s, reps = form()["scenario"], input.recruit_reps()
        _, seed, err = sim_settings()
        if s is None or err or not isinstance(reps, int) or reps < 1:
            return None
        try:
            return compute.recruit(s, reps=reps, seed=seed), None
        except ValueError as exc:
            return None, str(exc)

    @render.ui
    def recruit_result():
        from trialsim.report.timeline import recruitment_table

        r = recruitment()
        if r is None:
            return None
        result, err = r
        if err:
            return ui.div(err, class_="field-error")
        return ui.tags.pre(recruitment_table(result.summary()), id="recruit-table")

    def recruit_file(fmt: str) -> Path | None:
        from trialsim.report.timeline import timeline_plot

        r = recruitment()
        if r is None or r[0] is None:
            return None
        path = tmp / f"timeline-{time.perf_counter_ns()}.{fmt}"
        timeline_plot(r[0], path, title=(form()["scenario"]).name)
        return path

    @render.image(delete_file=True)
    def recruit_figure():
        path = recruit_file("png")
        return None if path is None else {"src": str(path), "width": "100%"}

    @render.download_button(filename="timeline.png")
    def recruit_png():
        path = recruit_file("png")
        if path is not None:
            yield path.read_bytes()

    @render.download_button(filename="timeline.svg")
    def recruit_svg():
        path = recruit_file("svg")
        if path is not None:
            yield path.read_bytes()

    # ---- the evaluator's page -------------------------------------------------------------
    @reactive.extended_task
    async def evaluate_task(path, kwargs):
        return await asyncio.to_thread(lambda: compute.evaluate(path, **kwargs))

    @reactive.effect
    @reactive.event(input.evaluate)
    def _evaluate():
        files = input.data_file()
        if not files:
            return
        target = tmp / "data" / Path(files[0]["name"]).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(files[0]["datapath"], target)
        scen = None
        if input.data_use_scenario():
            from trialsim.app.toml_write import dumps

            f = form()
            scen = tmp / "planner.toml"
            merged = compute.merged_raw(f["raw"], f["overrides"], source())
            merged.pop("base", None)
            scen.write_text(dumps(merged), encoding="utf-8")
        mcid = input.data_mcid()
        kwargs = {
            "mapping": input.data_map() or "",
            "outcome": (input.data_outcome() or "").strip() or None,
            "better": input.data_better() or None,
            "mcid": mcid if isinstance(mcid, int | float) and mcid > 0 else None,
            "scenario": scen,
        }
        evaluate_task.invoke(target, kwargs)

    @render.ui
    def evaluation():
        status = evaluate_task.status()
        if status == "initial":
            return ui.p("Upload a trial-data file and press 'Analyse'.", class_="text-muted")
        if status == "running":
            return ui.p("analysing...", class_="text-muted")
        if status == "error":
            try:
                evaluate_task.result()
            except Exception as exc:
                return ui.div(error_line(exc), class_="field-error", id="evaluate-error")
        if status != "success":
            return None
        r = evaluate_task.result()
        freq = r["frequentist"]
        cols = ["contrast", "estimate", "se", "ci_low", "ci_high", "df", "p_value"]
        head = ui.tags.tr(*[ui.tags.th(c) for c in cols])
        rows = [ui.tags.tr(*[ui.tags.td(_fmt(row.get(c))) for c in cols]) for row in freq]
        b = r["bayes"]
        p = b["parameters"][0]
        bayes_rows = [
            ("posterior mean (SD)", f"{p['mean']:.3g} ({p['sd']:.3g})"),
            (b["interval"], f"{p['ci_low']:.3g} to {p['ci_high']:.3g}"),
            ("P(benefit)", f"{b['p_benefit']:.3f}"),
        ]
        if "p_beyond_mcid" in b:
            bayes_rows.append((f"P(beyond MCID {b['mcid']:g})", f"{b['p_beyond_mcid']:.3f}"))
        bayes_rows.append(("prior", b["prior_text"]))
        return ui.div(
            ui.h5("Structure found"),
            ui.tags.ul(*[ui.tags.li(line) for line in r["structure"]], id="structure"),
            ui.h5("Frequentist (default analysis)"),
            ui.p(r["analysis_line"], class_="small"),
            ui.tags.table(head, *rows, class_="oc", id="frequentist"),
            ui.h5("Exact Bayesian posterior"),
            ui.p(b["model_line"], class_="small"),
            ui.tags.table(
                *[ui.tags.tr(ui.tags.th(k), ui.tags.td(v)) for k, v in bayes_rows],
                class_="oc",
                id="bayes",
            ),
        )

    @render.plot(alt="exact posterior of the effect")
    def posterior():
        from trialsim.app.figures import posterior_figure

        if evaluate_task.status() != "success":
            return None
        r = evaluate_task.result()
        b = r["bayes"]
        return posterior_figure(r["posterior"], mcid=b["mcid"], better=b["better"],
                                title=f"{r['outcome']}: exact posterior")  # fmt: skip


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))

"""One browser session's logic: the form becomes ``--set`` overrides on the base scenario;
analytic answers are computed at once, simulations in a background thread (progress,
cancellable, restarted when an input changes). Every tab is its own session."""

from __future__ import annotations

import asyncio
import html
import json
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from shiny import reactive, render, ui

from trialsim.app import compute
from trialsim.app.fields import FIELDS, base_values, display, field_of_message, overrides

_OC_ROWS = (
    ("power", "power_mcse", "power", 3),
    ("type1", "type1_mcse", "type-I error", 3),
    ("bias", "bias_mcse", "bias (outcome units)", 2),
    ("coverage", "coverage_mcse", "95% CI coverage", 3),
    ("empirical_se", "empirical_se_mcse", "empirical SE", 2),
)


@dataclass
class Job:
    """One background run: what it computes, how far it is, and its stop switch."""

    key: dict
    total: int
    started: float = field(default_factory=time.perf_counter)
    done: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)

    def advance(self, n: int) -> None:
        self.done += n


def _error_line(exc: BaseException) -> str:
    message = getattr(exc, "format_message", None)
    return message() if callable(message) else str(exc)


def _pm(r: dict, k: str, e: str, d: int) -> str:
    v, se = r.get(k), r.get(e)
    if v is None or v != v:
        return "n/a"
    return f"{v:.{d}f} ± {se:.{d}f}" if se is not None and se == se else f"{v:.{d}f}"


def _progress_bar(job: Job | None, label: str):
    if job is None or job.total == 0:
        return None
    share = min(1.0, job.done / job.total)
    elapsed = time.perf_counter() - job.started
    return ui.div(
        ui.tags.progress(value=str(job.done), max=str(job.total), style="width:100%"),
        ui.span(f"{label}: {job.done} / {job.total} ({share:.0%}), {elapsed:.1f} s"),
        id=f"{label}-progress",
    )


def make_server(scenario: str):
    startup = Path(scenario)

    def server(input, output, session):
        from trialsim.scenario import ScenarioError, read_scenario_raw

        tmp = Path(tempfile.mkdtemp(prefix="trialsim-app-"))
        session.on_ended(lambda: shutil.rmtree(tmp, ignore_errors=True))
        raw_value = reactive.value(read_scenario_raw(startup))
        source = reactive.value(str(scenario))  # the file named in messages and commands
        upload_error = reactive.value("")

        @reactive.calc
        def base():
            raw = raw_value()
            s = compute.build(raw, [], source())
            return raw, s, base_values(raw, s.model_dump(), s.primary)

        @reactive.calc
        def form() -> dict:
            raw, s0, values = base()
            shown = {f.id: input[f.id]() for f in FIELDS}
            ovr, errors = overrides(values, shown, s0.primary)
            out = {"scenario": None, "overrides": ovr, "errors": errors, "raw": raw}
            if errors:
                return out
            try:
                out["scenario"] = compute.build(raw, ovr, source())
            except (ScenarioError, ValueError) as exc:
                msg = str(exc)
                errors[field_of_message(msg, s0.primary) or "_general"] = msg
            return out

        def make_error_output(fid: str) -> None:
            @output(id=f"err_{fid}")
            @render.ui
            def _():
                e = form()["errors"].get(fid)
                return ui.div(e, class_="field-error", id=f"error-{fid}") if e else None

        for f in FIELDS:
            make_error_output(f.id)

        @render.ui
        def err_general():
            e = form()["errors"].get("_general")
            return ui.div(e, class_="field-error", id="error-general") if e else None

        def sim_settings() -> tuple[int | None, int | None, str | None]:
            reps, seed = input.reps(), input.seed()
            if not isinstance(reps, int | float) or reps < 1 or reps != int(reps):
                return None, None, "--reps: give a whole number of replicate trials >= 1"
            if not isinstance(seed, int | float) or seed < 0 or seed != int(seed):
                return None, None, "--seed: give a whole number >= 0"
            return int(reps), int(seed), None

        @render.ui
        def err_reps():
            e = sim_settings()[2]
            return ui.div(e, class_="field-error", id="error-reps") if e else None

        @render.ui
        def err_upload():
            e = upload_error()
            return ui.div(e, class_="field-error", id="error-upload") if e else None

        @render.ui
        def scenario_name():
            s = base()[1]
            return ui.p(ui.strong(s.name), ": ", s.description or "", class_="small")

        @render.ui
        def arms():
            s = form()["scenario"] or base()[1]
            return ui.p(s.structure.describe()[1], class_="small text-muted")

        # ---- loading and downloading the scenario ------------------------------------------
        @reactive.effect
        @reactive.event(input.scenario_file)
        def _load():
            files = input.scenario_file()
            if not files:
                return
            name = Path(files[0]["name"]).name
            target = tmp / "upload" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(files[0]["datapath"], target)
            import tomllib

            try:  # a variant's base is looked for next to the scenario the app started with
                base_name = tomllib.loads(target.read_text(encoding="utf-8")).get("base")
                if isinstance(base_name, str) and (startup.parent / base_name).is_file():
                    shutil.copyfile(startup.parent / base_name, target.parent / base_name)
            except (tomllib.TOMLDecodeError, UnicodeDecodeError):
                pass  # read_scenario_raw says what is wrong, as the command line does
            try:
                raw = read_scenario_raw(target)
                compute.build(raw, [], name)
            except (ScenarioError, ValueError) as exc:
                message = str(exc).replace(str(target), name)
                upload_error.set(message if name in message else f"{name}: {message}")
                return
            except Exception as exc:  # tomllib's error, unreadable text
                upload_error.set(f"{name}: not a readable scenario: {exc}")
                return
            upload_error.set("")
            source.set(name)
            raw_value.set(raw)

        @reactive.effect
        def _fill_form():
            _, _, values = base()
            for f in FIELDS:
                v = values.get(f.id)
                if v is None:
                    continue
                if f.kind == "choice":
                    ui.update_select(f.id, selected=v)
                elif f.kind == "toml":
                    ui.update_text(f.id, value=display(f, v))
                else:
                    ui.update_numeric(f.id, value=v)

        @render.download_button(filename=lambda: f"{(form()['scenario'] or base()[1]).name}.toml")
        def download_scenario():
            from trialsim.app.toml_write import dumps

            f = form()
            merged = compute.merged_raw(f["raw"], f["overrides"], source())
            merged.pop("base", None)
            note = f"written by trialsim app from {source()}"
            if f["overrides"]:
                note += " with " + " ".join(f"--set {o}" for o in f["overrides"])
            yield dumps(merged, header=note)

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
        jobs: dict[str, Job | None] = {"sim": None, "compare": None}
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
                return _progress_bar(jobs["sim"], "simulating")
            if status == "error":
                try:
                    sim_task.result()
                except Exception as exc:  # the library's one-line message
                    return ui.div(_error_line(exc), class_="field-error", id="sim-error")
            if status == "cancelled":
                return ui.p("cancelled", class_="text-muted", id="sim-cancelled")
            return None

        @render.ui
        def sim_result():
            r = last_sim()
            if r is None:
                return ui.p("(simulating...)", class_="text-muted")
            current = r.get("overrides") == (sim_key() or {}).get("overrides") and r.get(
                "reps"
            ) == (sim_key() or {}).get("reps")
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
            return compute.cli_command(
                source(), key["overrides"], reps=key["reps"], seed=key["seed"]
            )

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
                return _progress_bar(jobs["compare"], "comparing")
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
                    return ui.div(_error_line(exc), class_="field-error")
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
                    return ui.div(_error_line(exc), class_="field-error", id="evaluate-error")
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

    return server


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))

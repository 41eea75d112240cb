"""One browser session: the base scenario (loaded, downloaded), the form as ``--set``
overrides on it with each error next to its field; the answers are registered by
:mod:`.planner` and :mod:`.tabs`. Every browser tab is its own session."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from shiny import reactive, render, ui

from trialsim.app import compute
from trialsim.app.fields import FIELDS, base_values, display, field_of_message, overrides
from trialsim.app.planner import planner_outputs
from trialsim.app.tabs import tab_outputs


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

        planner_outputs(input, session, form, sim_settings, source)
        tab_outputs(input, session, form, sim_settings, source, tmp)

    return server

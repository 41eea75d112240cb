"""Sweeps: simulated operating characteristics over a grid of scenario assumptions.

A sweep expands ``--vary KEY=VALUES`` axes into cells (:mod:`trialsim.design.grid`), runs
:func:`~trialsim.power.simulation.simulate_operating_characteristics` for each cell on an
executor (:mod:`trialsim.design.executors`) and writes, under ``DIR``:

* ``cells/<hash>.json`` -- one file per finished cell, written atomically as it finishes;
* ``sweep.json`` -- the settings every cell was run with (scenario hash, replicates, seed,
  analyses, outcome, alpha), checked before a ``--resume``;
* ``results.csv`` / ``results.parquet`` -- one row per cell and analysis (and contrast,
  named in a ``contrast`` column, with three or more arms), in grid order:
  the cell's parameters, every operating characteristic with its Monte Carlo SE, the
  closed-form power where a formula covers the cell (``analytic_power``, else empty), the
  cell's seed and failure counts (each cell's run time is in ``timings.csv``);
* ``power-curve*.png`` / ``heatmap*.png`` and ``provenance.json``.

Each cell's seed is derived from its parameters and the root seed, so the table (apart from
``seconds``) is the same for any number of jobs, executor, or order of execution, and a
resumed sweep equals an uninterrupted one. Replicates are simulated in chunks, so memory does
not grow with the number of replicates (only the per-replicate estimates are kept: about
100 bytes per replicate and analysis).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from trialsim.data import write_table
from trialsim.design.executors import run_tasks
from trialsim.design.grid import Axis, cell_hash, cell_key, cell_seed, expand_grid, overrides_for
from trialsim.errors import UserError
from trialsim.files import write_json
from trialsim.report.provenance import build_provenance, write_provenance
from trialsim.scenario import ScenarioError, apply_overrides, scenario_from_dict
from trialsim.seeds import BLOCK_SIZE

SETTINGS_FILE = "sweep.json"
CELLS_DIR = "cells"

#: Simulated operating characteristics of a row, in table order.
SIMULATED_COLUMNS = (
    "analysis",
    "outcome",
    "reps",
    "truth",
    "power",
    "power_mcse",
    "type1",
    "type1_mcse",
    "bias",
    "bias_mcse",
    "empirical_se",
    "empirical_se_mcse",
    "mean_se",
    "rmse",
    "coverage",
    "coverage_mcse",
    "failures",
    "null_failures",
)
#: Columns of an operating-characteristics row: simulated, the contrast (``ARM - REFERENCE``;
#: one row per contrast with three or more arms), why the analysis was used (the default
#: rule's reason, or ``--analysis``), then the closed-form power.
OC_COLUMNS = (*SIMULATED_COLUMNS, "contrast", "analysis_reason", "analytic_power")


@dataclass(frozen=True)
class SweepResult:
    """The assembled table and what happened: cells run now, reused from disk, failed."""

    table: pd.DataFrame
    out: Path
    cells_run: int
    cells_reused: int
    cells_failed: int
    plots: tuple[Path, ...]


def run_cell(task: dict, progress: Callable[[int], None] | None = None) -> dict:
    """Simulate one cell (runs in a worker process; everything it needs is in ``task``)."""
    from trialsim.analyse.registry import default_analysis
    from trialsim.power.simulation import simulate_operating_characteristics

    start = time.perf_counter()
    record = {"key": task["key"], "params": task["params"], "seed": task["seed"]}
    try:
        s = scenario_from_dict(task["raw"], source=task["source"])
        outcome = task["outcome"] or s.primary
        choice = default_analysis(s.structure, outcome)
        analyses = list(task["analyses"]) or [choice.name]
        reason = "--analysis" if task["analyses"] else choice.reason
        if task.get("formula"):
            from trialsim.analyse.formula import parse_formula
            from trialsim.analyse.registry import formula_analysis

            spec = parse_formula(task["formula"], s.structure)
            analyses, reason = [formula_analysis(spec)], f"--formula {spec.lme4()}"
        run = dict(
            reps=task["reps"],
            seed=task["seed"],
            outcome=outcome,
            alpha=task["alpha"],
            chunk_size=task["chunk_size"],
            threads=task.get("threads"),
            progress=progress,
            df=task.get("df", "satterthwaite"),
        )
        if s.n_arms > 2:
            rows = _contrast_rows(s, analyses, run)
        else:
            ocs, _ = simulate_operating_characteristics(s, analyses, **run)
            rows = [(oc, None, _analytic_power(s, task["outcome"])) for oc in ocs]
        record["rows"] = [
            {
                **{k: getattr(oc, k) for k in SIMULATED_COLUMNS},
                "contrast": contrast,
                "analysis_reason": reason,
                "analytic_power": analytic,
            }
            for oc, contrast, analytic in rows
        ]
        record["error"] = None
    except Exception as exc:  # a failing cell is recorded, the sweep goes on
        record["rows"] = []
        record["error"] = f"{type(exc).__name__}: {exc}"
    record["seconds"] = time.perf_counter() - start
    return record


def _contrast_rows(s, analyses, run: dict) -> list[tuple]:
    """Three or more arms: one row per analysis and contrast (every arm against the
    reference, :func:`trialsim.power.multi_arm.simulate_multi_arm`, the progress counting
    the replicates once), each with the contrast's closed-form power."""
    from trialsim.analyse.registry import get_analysis
    from trialsim.power.multi_arm import simulate_multi_arm

    progress = run.pop("progress")
    rows = []
    for i, name in enumerate(analyses):
        analysis = get_analysis(name) if isinstance(name, str) else name
        # the replicates are counted once per cell, as with two arms
        summary, _ = simulate_multi_arm(s, analysis, progress=progress if i == 0 else None, **run)
        rows += [
            (c.oc, c.contrast, _analytic_power(s, run["outcome"], arm=c.arm))
            for c in summary.contrasts
        ]
    return rows


def _analytic_power(s, outcome: str | None, arm: str | None = None) -> float:
    """Closed-form power of the cell (NaN where no formula covers its design or outcome);
    ``arm``: of that arm's contrast with the reference."""
    from trialsim.power.from_scenario import analytic_power

    try:
        return float(analytic_power(s, outcome, arm=arm)["power"])
    except ValueError:
        return float("nan")


def run_sweep(
    scenario_path: str | Path,
    axes: Sequence[Axis],
    *,
    reps: int,
    out: str | Path,
    seed: int = 20161,
    analyses: Sequence[str] = (),
    outcome: str | None = None,
    formula: str | None = None,
    alpha: float = 0.05,
    overrides: Sequence[str] = (),
    jobs: int = 1,
    executor: str = "local",
    scheduler: str | None = None,
    resume: bool = False,
    chunk_size: int = BLOCK_SIZE,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
    on_cell: Callable[[int, dict], None] | None = None,
    plots: bool = True,
    csv_dialect: str = "comma",
    df: str = "satterthwaite",
) -> SweepResult:
    """Run (or resume) a sweep of ``scenario_path`` over the product of ``axes`` into ``out``.

    Parameters
    ----------
    scenario_path : scenario TOML; ``overrides`` (``dotted.key=value``) apply to every cell.
    axes : the varied keys (:func:`trialsim.design.grid.parse_vary`).
    reps : replicate trials per cell (each simulated with and without the effect).
    analyses : analyses to score (default: the one rule,
        :func:`trialsim.analyse.registry.default_analysis`, on each cell's structure).
    formula : instead, this lme4-style model (random intercepts; the scenario's roles and
        covariates), fitted on every replicate of every cell (:mod:`trialsim.analyse.formula`).
    jobs, executor, scheduler : where cells run (:func:`trialsim.design.executors.run_tasks`).
    resume : reuse finished cells in ``out/cells``; without it a folder holding results of
        *other* settings is an error, and one holding this sweep's results is recomputed
        (cells are overwritten with identical numbers: their seeds are the same).
    threads : threads per cell (chunks of replicates in parallel); default: every core with
        one local worker, else 1. The results do not depend on it.
    progress : ``advance(n)`` over ``cells x reps`` replicates (e.g. a progress bar).
    on_cell : called as ``on_cell(i, record)`` after cell ``i`` is saved (tests use it to
        interrupt a sweep).
    csv_dialect : of results.csv and timings.csv (:data:`trialsim.files.CSV_DIALECTS`).
    df : the mixed models' small-sample method, ``"satterthwaite"`` or ``"kenward-roger"``
        (recorded in the folder's settings when not the default).

    Example
    -------
    >>> run_sweep("scenarios/sft-19m.toml", [parse_vary("groups.icc_group=0:0.1:3")],
    ...           reps=500, out="results/sft-19m/sweep")               # doctest: +SKIP
    """
    from trialsim.analyse.registry import get_analysis

    out = Path(out)
    scenario_path = Path(scenario_path)
    base_raw, base = _load_base(scenario_path, overrides)
    for name in analyses:
        get_analysis(name).with_df(df)
    if formula is not None:
        from trialsim.analyse.formula import parse_formula

        if analyses:
            raise UserError("--formula and --analysis: give one (the formula is the model)")
        spec = parse_formula(formula, base.structure)  # a bad formula fails before any cell
        if outcome is not None and outcome != spec.outcome:
            raise UserError(f"--formula: its outcome {spec.outcome!r} differs from --outcome")
        outcome = spec.outcome
    if outcome is not None and outcome not in base.outcomes:
        raise UserError(f"--outcome {outcome}: not in the scenario; choose {list(base.outcomes)}")
    grid = expand_grid(list(axes))
    settings = {
        "scenario": base.name,
        "scenario_sha256": base.digest(),
        "reps": int(reps),
        "seed": int(seed),
        "analyses": list(analyses),
        "outcome": outcome,
        "alpha": float(alpha),
    }
    if formula is not None:  # only then: settings of earlier sweeps stay resumable
        settings["formula"] = formula
    if df != "satterthwaite":  # folders of earlier sweeps (Satterthwaite) stay resumable
        settings["df"] = df
    tasks = [cell_task(base_raw, params, settings, chunk_size, scenario_path) for params in grid]
    if threads is None:  # one worker: its threads use every core; several: a core each
        threads = 0 if executor == "local" and jobs == 1 else 1
    for task in tasks:  # the results do not depend on it
        task["threads"] = threads or None
    _check_folder(out, settings)
    write_json(out / SETTINGS_FILE, {"settings": settings})
    cells_dir = out / CELLS_DIR
    records: dict[int, dict] = {}
    if resume:
        for i, task in enumerate(tasks):
            done = _load_cell(cells_dir / f"{task['hash']}.json", task)
            if done is not None:
                records[i] = done
    reused = len(records)
    todo = [i for i in range(len(tasks)) if i not in records]
    if progress is not None and reused:
        progress(reused * reps)
    for j, record in run_tasks(
        run_cell,
        [tasks[i] for i in todo],
        jobs=jobs,
        executor=executor,
        scheduler=scheduler,
        progress=progress,
        units_per_task=reps,
    ):
        i = todo[j]
        record = dict(record, settings=settings)
        if record["error"] is None:
            write_json(cells_dir / f"{tasks[i]['hash']}.json", record)
        records[i] = record
        if on_cell is not None:
            on_cell(i, record)
    table = sweep_table(tasks, records, list(axes))
    write_table(table, out / "results.csv", csv_dialect=csv_dialect)
    write_table(table, out / "results.parquet")
    # run times vary between runs: kept apart so the results tables are byte-identical
    write_table(timings_table(tasks, records), out / "timings.csv", csv_dialect=csv_dialect)
    figures = ()
    if plots:
        from trialsim.design.figures import sweep_figures

        figures = tuple(sweep_figures(_contrast_as_analysis(table), list(axes), out))
    write_provenance(
        out,
        build_provenance(
            command="sweep",
            scenario_path=scenario_path,
            scenario=base,
            seed=seed,
            overrides=list(overrides),
            vary={a.key: list(a.values) for a in axes},
            cells=len(tasks),
            reps=reps,
            analyses=list(analyses),
            outcome=outcome,
            alpha=alpha,
            jobs=jobs,
            executor=executor,
            cell_seeds={t["hash"]: t["seed"] for t in tasks},
        ),
    )
    failed = sum(1 for r in records.values() if r["error"] is not None)
    return SweepResult(table, out, len(todo), reused, failed, figures)


def _load_base(path: Path, overrides: Sequence[str]):
    """The scenario's mapping as :func:`trialsim.scenario.load_scenario` reads it (a variant's
    ``base =`` followed and merged), with the overrides applied, and the scenario."""
    from trialsim.scenario import read_scenario_raw

    raw = apply_overrides(read_scenario_raw(path), list(overrides), source=str(path))
    return raw, scenario_from_dict(raw, source=str(path))


def cell_task(base_raw: dict, params: dict, settings: dict, chunk_size: int, path: Path) -> dict:
    """Everything a worker needs for one cell; the cell's scenario is validated here."""
    from trialsim.power.curve import SIZE_KEYS, size_overrides

    source = f"{path} with --vary " + ", ".join(f"{k}={v}" for k, v in params.items())
    plain = {k: v for k, v in params.items() if k not in SIZE_KEYS}
    raw = apply_overrides(base_raw, overrides_for(plain), source=source)
    for key in [k for k in params if k in SIZE_KEYS]:  # sample sizes, on the varied scenario
        try:
            sizes = size_overrides(raw, key, params[key])
        except UserError as exc:
            raise ScenarioError(f"{source}: {exc}") from None
        raw = apply_overrides(raw, overrides_for(sizes), source=source)
    scenario_from_dict(raw, source=source)  # bad cells fail before any work starts
    return {
        "key": cell_key(params),
        "hash": cell_hash(params),
        "params": params,
        # cells differing only in sample size share their seed: common random numbers along
        # a power curve over N
        "seed": cell_seed(settings["seed"], plain),
        "raw": raw,
        "source": source,
        "reps": settings["reps"],
        "analyses": settings["analyses"],
        "outcome": settings["outcome"],
        "formula": settings.get("formula"),
        "alpha": settings["alpha"],
        "df": settings.get("df", "satterthwaite"),
        "chunk_size": chunk_size,
    }


def holds_sweep(out: Path) -> bool:
    """True when ``out`` holds a sweep's results (its table or finished cells)."""
    out = Path(out)
    return (out / "results.csv").is_file() or any((out / CELLS_DIR).glob("*.json"))


def remove_cells(out: Path) -> None:
    """Start a sweep in ``out`` again: remove its finished cells, settings and results.csv
    (the other tables and the figures are replaced, atomically, when the new sweep ends)."""
    out = Path(out)
    for cell in (out / CELLS_DIR).glob("*.json"):
        cell.unlink()
    (out / SETTINGS_FILE).unlink(missing_ok=True)
    (out / "results.csv").unlink(missing_ok=True)


def _check_folder(out: Path, settings: dict) -> None:
    """Refuse to mix the results of different scenarios or settings in one folder.

    Only folders with results (cells or a table) are protected: settings left by a run that
    failed before its first cell do not block a corrected run.
    """
    path = out / SETTINGS_FILE
    if not holds_sweep(out):
        return
    if not path.is_file():
        raise UserError(
            f"--out {out}: holds results without {SETTINGS_FILE} (not a sweep folder); choose "
            "another --out"
        )
    try:
        old = json.loads(path.read_text(encoding="utf-8"))["settings"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UserError(f"{path}: unreadable sweep settings; choose another --out") from None
    diff = [k for k in settings if old.get(k) != settings[k]]
    if diff:
        k = diff[0]
        raise UserError(
            f"--out {out}: holds a sweep with different settings ({k} was {old.get(k)!r}, "
            f"now {settings[k]!r}); choose another --out or delete the folder"
        )


def _load_cell(path: Path, task: dict) -> dict | None:
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None  # cannot happen with atomic writes; recompute to be safe
    if record.get("key") != task["key"] or record.get("seed") != task["seed"]:
        return None
    return record


def sweep_table(tasks: list[dict], records: dict[int, dict], axes: list[Axis]) -> pd.DataFrame:
    """One row per cell and analysis, in grid order (independent of execution order)."""
    keys = [a.key for a in axes]
    rows = []
    for i, task in enumerate(tasks):
        record = records.get(i)
        if record is None:
            continue
        base = {"cell": task["hash"], **{k: task["params"][k] for k in keys}}
        tail = {"seed": task["seed"]}
        if record["error"] is not None or not record["rows"]:
            rows.append({**base, **dict.fromkeys(OC_COLUMNS), **tail, "error": record["error"]})
        for oc in record["rows"]:
            rows.append({**base, **oc, **tail, "error": None})
    table = pd.DataFrame(rows, columns=["cell", *keys, *OC_COLUMNS, "seed", "error"])
    for column in OC_COLUMNS:
        if column not in ("analysis", "outcome", "contrast", "analysis_reason"):
            table[column] = pd.to_numeric(table[column])
    if table["contrast"].isna().all():  # two arms: the one contrast needs no column
        table = table.drop(columns="contrast")
    return table


def _contrast_as_analysis(table: pd.DataFrame) -> pd.DataFrame:
    """For the figures: each contrast a line of its own (``analysis ARM - REFERENCE``)."""
    if "contrast" not in table:
        return table
    named = table["contrast"].notna()
    if not named.any():
        return table
    out = table.copy()
    out.loc[named, "analysis"] = out.loc[named, "analysis"] + " " + out.loc[named, "contrast"]
    return out


def timings_table(tasks: list[dict], records: dict[int, dict]) -> pd.DataFrame:
    """Seconds each cell took (a separate file: timings differ between identical runs)."""
    return pd.DataFrame(
        [
            {"cell": task["hash"], "seconds": round(records[i]["seconds"], 3)}
            for i, task in enumerate(tasks)
            if i in records
        ],
        columns=["cell", "seconds"],
    )


def format_sweep(table: pd.DataFrame, keys: list[str], alpha: float = 0.05) -> str:
    """A compact terminal view: parameters, power and type-I error (± one MCSE), bias, the
    analytic power where a formula covers the cell, and a warning when cells' type-I error
    exceeds alpha by more than 3 MCSE (their simulated power then includes bias)."""

    def pm(v, e, d=3):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        return f"{v:.{d}f} ± {e:.{d}f}" if e == e else f"{v:.{d}f}"

    head = [*keys, "analysis", "power", "analytic", "type I", "bias", "fail"]
    body = [
        [
            *[str(r[k]) for k in keys],
            str(r["analysis"] or "error")
            + (f" {r['contrast']}" if isinstance(r.get("contrast"), str) else ""),
            pm(r["power"], r["power_mcse"]),
            pm(r.get("analytic_power"), float("nan")),
            pm(r["type1"], r["type1_mcse"]),
            pm(r["bias"], r["bias_mcse"], 2),
            "-" if r["failures"] != r["failures"] else str(int(r["failures"])),
        ]
        for r in table.to_dict("records")
    ]
    widths = [
        max(len(h), *(len(b[j]) for b in body)) if body else len(h) for j, h in enumerate(head)
    ]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("-" * len(lines[0]))
    lines += ["  ".join(c.rjust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    lines += analysis_lines(table)
    lines += _bias_lines(table, alpha)
    return "\n".join(lines)


def _bias_lines(table: pd.DataFrame, alpha: float) -> list[str]:
    from trialsim.power.headlines import flagged

    rows = table.to_dict("records")
    n = sum(flagged(r["type1"], r["type1_mcse"], alpha) for r in rows if r["type1"] == r["type1"])
    if not n:
        return []
    return [
        f"warning: in {n} of {len(rows)} cells the type-I error exceeds alpha {alpha:g} by more "
        "than 3 Monte Carlo SEs: the scenario biases the analysis (e.g. unblinded assessors, "
        "informative dropout), so simulated power there is a rejection rate above the power "
        "at the true effect (and above the analytic column); 'trialsim power' names the sources"
    ]


def analysis_lines(table: pd.DataFrame) -> list[str]:
    """Which analysis the cells used and why: the default rule's line
    (:meth:`~trialsim.analyse.registry.DefaultChoice.line`) or ``--analysis``, with the
    number of cells when they differ (e.g. a sweep over the randomisation unit)."""
    from trialsim.analyse.registry import DefaultChoice

    ok = table[table["analysis"].notna()]
    if "analysis_reason" not in ok or ok.empty:
        return []
    counts = ok.groupby(["analysis", "analysis_reason"], sort=False)["cell"].nunique()
    lines = []
    for (name, reason), n in counts.items():
        line = (
            f"analysis: {name} (chosen with --analysis)"
            if reason == "--analysis"
            else DefaultChoice(name, reason).line()
        )
        lines.append(line if len(counts) == 1 else f"{line} [{n} cells]")
    return lines

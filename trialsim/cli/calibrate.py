"""`trialsim calibrate`: estimate a scenario (and design priors) from a trial-data file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from trialsim.cli.common import (
    InputError,
    data_options,
    emit,
    force_option,
    format_option,
    friendly,
    out_option,
    refuse_overwrite,
)
from trialsim.scenario import SFT_SCENARIO


def _beta(text: str) -> tuple[float, float]:
    family, _, params = text.partition(":")
    try:
        a, b = (float(x) for x in params.split(","))
    except ValueError:
        a = b = -1.0
    if family.strip() != "beta" or not (a > 0 and b > 0):
        raise InputError(f"--icc-prior {text!r}: expected beta:A,B with A, B > 0, e.g. beta:1,1")
    return a, b


@click.command()
@click.argument("data_file", metavar="DATA", type=click.Path(dir_okay=False, path_type=Path))
@out_option(
    "file",
    "(.toml): the scenario to write, e.g. scenarios/sft-next.toml (its stem becomes the name).",
    suffixes=(".toml",),
    required=True,
)
@data_options
@click.option(
    "--template",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Scenario whose values the data cannot give (outcome scales, assumptions) are kept "
    "(default: the SFT scenario, scenarios/sft-19m.toml of this checkout).",
)
@click.option(
    "--icc-prior",
    default="beta:1.5,20",
    show_default=True,
    metavar="beta:A,B",
    help="Prior of the group ICC: the default is the published range for group treatments "
    "(mean 0.07); beta:1,1 is uniform (then few groups pull the posterior far up).",
)
@force_option
@format_option
@friendly
def calibrate(data_file, out, declared, template, icc_prior, force, fmt, csv_dialect):
    """Estimate from a trial-data file what a scenario needs, and write it.

    Estimated: outcome means and SDs (baseline), baseline-follow-up and between-outcome
    correlations, the group ICC with its posterior (restricted likelihood by quadrature),
    the municipality ICC, attendance (beta-binomial ML), completion per arm and visit and the
    dropout model, group sizes, and the ITT effect with its posterior. Everything else comes
    from --template and is marked in the file's header. The file has a [design_priors] table
    (effect = "normal:MEAN,SD", icc = "beta:A,B") for 'trialsim assurance --design-prior'.

    DATA is read as by 'trialsim validate' (check it first); it must hold one trial.

    \b
    Example (the Danish example export; names mapped to the schema):
      trialsim calibrate scenarios/data/sft-example.csv --out scenarios/sft-next.toml \\
        --map participant=deltager,municipality=kommune,arm=gruppe,group=hold \\
        --map trainer=træner,sessions_offered=tilbudt,sessions_attended=fremmøde --force
    """
    from trialsim.calibrate import calibrate_trial, write_scenario
    from trialsim.data import read_trial_data
    from trialsim.io import load_trial_frame
    from trialsim.scenario import load_scenario

    refuse_overwrite([out], force)
    prior = _beta(icc_prior)
    template = template or SFT_SCENARIO
    tmpl = load_scenario(template)
    frame = load_trial_frame(data_file, declared=declared)
    data = read_trial_data(data_file, declared=declared)
    months = None  # the template's, unless the data say when the visits were
    if declared.visit_months or ("month" in frame and frame["month"].notna().all()):
        months = tuple(float(m) for m in data.visit_months)
    name = out.stem
    cal = calibrate_trial(
        data,
        template=tmpl,
        name=name,
        visit_months=months,
        has_blinding="assessor_blinded" in frame,
        icc_prior=prior,
    )
    date = dt.datetime.now(dt.UTC).date().isoformat()
    write_scenario(cal, out, source=str(data_file), date=date, template_path=str(template))
    summary = cal.summary()
    record = {"data": str(data_file), "scenario": str(out), "date": date, **summary}
    lo, hi = summary["icc_group_90_interval"]
    text = [
        f"wrote {out} (n={summary['n_participants']}, primary {summary['primary_outcome']}, "
        f"{summary['randomisation']} randomisation)",
        cal.analysis.line(),
        f"effect      {summary['effect_posterior_mean']:.3g} "
        f"(posterior SD {summary['effect_posterior_sd']:.3g}), ITT at the last visit",
        f"icc_group   {summary['icc_group']:.3g} (posterior mean; SD "
        f"{summary['icc_group_posterior_sd']:.3f}, 90% {lo:.3f}-{hi:.3f}; prior {icc_prior})",
        f"design priors: effect={summary['design_priors']['effect']} "
        f"icc={summary['design_priors']['icc']}",
        f"check it:   trialsim validate {out}",
    ]
    emit(fmt, text="\n".join(text), record=record, rows=record, csv_dialect=csv_dialect)

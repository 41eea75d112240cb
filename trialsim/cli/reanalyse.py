"""`trialsim reanalyse`: Bayesian reanalysis of a published effect estimate."""

from __future__ import annotations

import click

from trialsim.bayes.priors import PRIOR_HELP
from trialsim.cli.common import (
    ConventionCommand,
    FiniteFloat,
    InputError,
    emit,
    force_option,
    format_option,
    friendly,
    out_option,
    parse_interval,
    refuse_overwrite,
)


@click.command(cls=ConventionCommand, interval_pairs=("--ci",))
@click.option("--estimate", required=True, type=FiniteFloat(), help="Published point estimate.")
@click.option(
    "--ci",
    default=None,
    metavar="LOW,HIGH",
    help="Published 95% confidence interval (on the reported scale), e.g. --ci 0.4,10.",
)
@click.option(
    "--se", type=FiniteFloat(), default=None, help="Standard error on the analysis scale."
)
@click.option(
    "--scale",
    type=click.Choice(["identity", "log"]),
    default="identity",
    show_default=True,
    help="identity for differences; log for ratios (OR, RR, HR).",
)
@click.option(
    "--mcid",
    required=True,
    type=FiniteFloat(),
    help="Minimal clinically important difference on the reported scale (e.g. 7 PSP "
    "points, or a risk ratio of 0.8).",
)
@click.option(
    "--prior",
    default="sceptical",
    show_default=True,
    metavar="PRIOR",
    help=f"Prior for the effect: {PRIOR_HELP.replace('weakly-informative | ', '')}.",
)
@click.option(
    "--tail",
    default=0.05,
    show_default=True,
    type=FiniteFloat(0, 0.5, open_low=True, open_high=True),
    help="Sceptical/enthusiastic prior: prior probability beyond the MCID (resp. below zero).",
)
@click.option(
    "--better",
    type=click.Choice(["higher", "lower"]),
    default="higher",
    show_default=True,
    help="Direction of benefit (lower for mortality ratios).",
)
@format_option
@out_option(
    "file",
    "(.png, .svg or .pdf) to draw the prior, likelihood and posterior in.",
    suffixes=(".png", ".svg", ".pdf"),
    name="--plot",
)
@force_option
@friendly
def reanalyse(estimate, ci, se, scale, mcid, prior, tail, better, fmt, csv_dialect, plot, force):
    """Bayesian (normal-normal) reanalysis of a published effect estimate.

    The estimate and its CI (or SE) are read as a normal likelihood on the analysis scale
    (log scale for ratios, SE = width of the 95% CI / 3.92) and combined with a prior: a
    sceptical prior (centred on no effect, 5% probability beyond the MCID), an enthusiastic
    one (centred on the MCID, same spread), a flat one, or normal:MEAN,SD on the analysis
    scale. The prior is always printed with the result.

    \b
    Examples:
      trialsim reanalyse --estimate 5.2 --ci 0.4,10.0 --mcid 7 --prior sceptical
      trialsim reanalyse --estimate 0.75 --ci 0.55,1.02 --scale log --mcid 0.52 \\
        --better lower --prior flat --format json
    """
    from trialsim.bayes.reanalysis import reanalyse as run

    refuse_overwrite([plot], force, "--plot")
    ci = parse_interval(ci, "--ci", "0.4,10")
    if (ci is None) == (se is None):
        raise InputError("give exactly one of --ci LOW,HIGH or --se S")
    result = run(
        estimate, se=se, ci=ci, scale=scale, mcid=mcid, prior=prior, better=better, tail=tail
    )
    if plot is not None:
        from trialsim.bayes.plots import plot_reanalysis

        plot_reanalysis(result, plot)
    record = result.to_dict()
    ratio = scale == "log"
    lines = [
        f"prior        {result.prior.describe()}" + ("  (log scale)" if ratio else ""),
        f"likelihood   estimate {estimate:g}, SE {result.se:.4g}"
        + (" (log scale)" if ratio else ""),
        f"posterior    mean {result.posterior_mean:.4g}, SD {result.posterior_sd:.4g}, "
        f"95% CrI {result.ci_low:.4g} to {result.ci_high:.4g}" + (" (log scale)" if ratio else ""),
    ]
    if ratio:
        lines.append(
            f"             ratio: median {record['posterior_median_original']:.3f}, 95% CrI "
            f"{record['ci_low_original']:.3f} to {record['ci_high_original']:.3f}"
        )
    sign = ">" if better == "higher" else "<"
    null = 1 if ratio else 0
    lines += [
        f"P(benefit)   P(effect {sign} {null}) = {result.p_benefit:.3f}",
        f"P(beyond MCID) P(effect {sign} {mcid:g}) = {result.p_beyond_mcid:.3f}",
    ]
    emit(fmt, text="\n".join(lines), record=record, rows=record, csv_dialect=csv_dialect)

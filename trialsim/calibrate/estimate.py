"""Estimate from one trial's data what a scenario needs (``trialsim calibrate``).

Every estimate is a named value of the scenario schema with a note saying how it was obtained;
what the data cannot identify is taken from a template scenario and marked so. The effect and
the group ICC also get posterior distributions, written as design priors for assurance.

Estimates and where they come from
----------------------------------
* outcome ``mean`` / ``sd``: baseline (before randomisation, both arms, every participant);
* ``effect`` (bounded outcomes): the partially nested mixed model at the last visit
  (``trialsim analyse --analysis mixed``), an intention-to-treat effect; hence
  ``dose_response = "none"`` in the written scenario, so the scenario's effect *is* that ITT
  effect; counts / binary: crude rate / odds ratios at the last visit;
* ``correlation.*``: within-municipality ML correlations in the control arm (no group
  effects there), see :mod:`trialsim.calibrate.correlation`;
* ``groups.icc_group``: posterior mean by quadrature of the restricted likelihood with a
  literature Beta prior (:mod:`trialsim.calibrate.icc` says why); the posterior, matched by a
  Beta, is also the ``icc`` design prior; ``icc_municipality``: REML of the baseline on a
  municipality random intercept; ``icc_trainer`` = 0 (trainer variance is in the group ICC);
* ``attendance``: ML beta-binomial, :mod:`trialsim.calibrate.attendance`;
* ``dropout``: discrete-time hazard logistic regression, :mod:`trialsim.calibrate.dropout`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from trialsim.analyse.prepare import ancova_arrays
from trialsim.analyse.registry import DefaultChoice, default_analysis, get_analysis
from trialsim.analyse.reml import cluster_stats, fit_reml
from trialsim.calibrate.attendance import PRECISION_MAX, BetaBinomialFit, fit_beta_binomial
from trialsim.calibrate.correlation import fisher_mean, mar_correlation
from trialsim.calibrate.dropout import DropoutFit, fit_dropout
from trialsim.calibrate.icc import LITERATURE_PRIOR, IccPosterior, icc_posterior
from trialsim.data import TrialData
from trialsim.errors import UserError
from trialsim.scenario import (
    BinaryOutcome,
    BoundedOutcome,
    CountOutcome,
    Scenario,
    groups_in_cell,
    scenario_from_dict,
    treated_cell_sizes,
)
from trialsim.structure import TrialStructure


@dataclass(frozen=True)
class Calibration:
    """A scenario mapping estimated from data, with a note per key and the fits behind it."""

    raw: dict  # scenario mapping (validated), ready for TOML
    notes: dict[str, str]  # dotted key -> how it was obtained
    icc: IccPosterior
    attendance: BetaBinomialFit | None
    dropout: DropoutFit
    correlations: dict[str, float] = field(default_factory=dict)
    n_participants: int = 0
    analysis: DefaultChoice | None = None  # the default analysis of the primary outcome

    def scenario(self) -> Scenario:
        return scenario_from_dict(self.raw, source="calibration")

    def summary(self) -> dict:
        """The key estimates with their uncertainty (JSON-ready)."""
        g, o = self.raw["groups"], self.raw["outcomes"][self.raw["primary_outcome"]]
        lo, hi = self.icc.quantile(0.05), self.icc.quantile(0.95)
        out = {
            "n_participants": self.n_participants,
            "primary_outcome": self.raw["primary_outcome"],
            "effect_posterior_mean": self.icc.effect_mean,
            "effect_posterior_sd": self.icc.effect_sd,
            "icc_group": g["icc_group"],
            "icc_group_posterior_mean": self.icc.mean,
            "icc_group_posterior_sd": self.icc.sd,
            "icc_group_90_interval": [lo, hi],
            "icc_municipality": g["icc_municipality"],
            "sd": o.get("sd"),
            "baseline_followup": self.raw["correlation"]["baseline_followup"],
            "completion": self.dropout.completion,
            "design_priors": self.raw["design_priors"],
            "randomisation": self.raw["design"]["randomisation"],
        }
        if self.analysis is not None:
            out["analysis"] = {"name": self.analysis.name, "reason": self.analysis.reason}
        if self.attendance is not None:
            out["attendance_mean"] = self.attendance.mean
            out["attendance_precision"] = self.attendance.precision
        return out


def _sig(x: float, digits: int = 4) -> float:
    """Round to significant digits (tidy numbers in the TOML file)."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    return float(f"{x:.{digits}g}")


def calibrate_trial(
    data: TrialData,
    *,
    template: Scenario,
    name: str,
    visit_months: tuple[float, ...] | None = None,
    has_blinding: bool = False,
    icc_prior: tuple[float, float] = LITERATURE_PRIOR,
) -> Calibration:
    """Estimate a scenario from one trial (see the module docstring for each estimate).

    Parameters
    ----------
    data : one trial (``n_reps == 1``), e.g. from :func:`trialsim.data.read_trial_data`.
    template : the scenario whose non-estimable values are kept (e.g. sft-19m).
    name : the new scenario's name.
    visit_months : months of the visits; None uses the template's (same number of visits).
    has_blinding : the data carry an ``assessor_blinded`` column.
    icc_prior : Beta(a, b) prior of the group ICC (default: the published range, see
        :mod:`trialsim.calibrate.icc`; (1, 1) is uniform).
    """
    if data.n_reps != 1:
        raise UserError(
            f"calibrate needs one trial, the data hold {data.n_reps} replicates (a 'rep' "
            "column); keep the rows of one replicate"
        )
    st = data.structure
    if st.n_arms != 2:
        raise UserError(
            f"calibrate estimates a two-arm scenario; the data have {st.n_arms} arms "
            f"({', '.join(st.arms)}): keep the rows of the reference arm and one other"
        )
    notes: dict[str, str] = {}
    primary = _primary(data, template)
    choice = default_analysis(st, primary)
    randomisation = randomisation_of(st)
    treated = data.treated[0]
    muni = data.site[0]
    n = data.n_participants
    v = data.n_visits
    if visit_months is None:
        if template.n_visits != v:
            raise UserError(
                f"the data have {v} visits but the template scenario {template.n_visits}; give "
                "the months with --visit-months, e.g. --visit-months 0,9,15"
            )
        visit_months = template.design.visit_months
        notes["design.visit_months"] = "from the template (the data have no month column)"
    elif len(visit_months) != v:
        raise UserError(f"--visit-months has {len(visit_months)} values for {v} visits")

    # --- correlations (controls: no group effects) -------------------------------------
    y = {k: val[0] for k, val in data.outcomes.items()}
    ctrl = ~treated
    yp = y[primary]
    base_follow = [mar_correlation(yp[ctrl, 0], yp[ctrl, t], muni[ctrl]) for t in range(1, v)]
    r_bf = fisher_mean([r for r, _ in base_follow], [m for _, m in base_follow])
    pairs = [
        mar_correlation(yp[ctrl, s], yp[ctrl, t], muni[ctrl])
        for s in range(1, v)
        for t in range(s + 1, v)
    ]
    r_ff = fisher_mean([r for r, _ in pairs], [m for _, m in pairs]) if pairs else r_bf
    bounded = [k for k in y if isinstance(template.outcomes.get(k), BoundedOutcome)]
    out_pairs = [
        mar_correlation(y[a][:, 0], y[b][:, 0], muni)
        for i, a in enumerate(bounded)
        for b in bounded[i + 1 :]
    ]
    r_oo = (
        fisher_mean([r for r, _ in out_pairs], [m for _, m in out_pairs])
        if out_pairs
        else template.correlation.between_outcomes
    )
    if not np.isfinite(r_bf):
        raise UserError(
            f"too few controls measured at baseline and follow-up on {primary} to estimate "
            "the baseline-follow-up correlation (need >= 10)"
        )
    r_ff = r_ff if np.isfinite(r_ff) else r_bf
    r_ff = max(r_ff, 2 * r_bf**2 - 1 + 0.02)  # a valid (positive definite) visit correlation
    notes["correlation.baseline_followup"] = (
        f"within-municipality ML (MAR) correlation of {primary} in controls, "
        f"{', '.join(f'visit {t + 1}: {r:.3f} (n={m})' for t, (r, m) in enumerate(base_follow))}"
    )
    notes["correlation.between_followups"] = f"as above, between follow-ups of {primary}"
    notes["correlation.between_outcomes"] = (
        f"mean within-municipality correlation of {', '.join(bounded)} at baseline"
        if out_pairs
        else "from the template (fewer than two continuous outcomes)"
    )

    # --- ICC and effect posterior; municipality ICC ------------------------------------
    if not (data.group[0][treated] >= 0).any():
        raise UserError(
            "calibrate needs the treatment group of treated participants (column 'group') "
            "to estimate the group ICC; the data have none"
        )
    arrays = ancova_arrays(data, primary)
    stats = cluster_stats(arrays.y, arrays.X, arrays.group, arrays.mask)
    post = icc_posterior(stats, variance_factor=1.0 - r_bf**2, prior=icc_prior)
    base = yp[:, 0][None]
    muni_fit = fit_reml(base, np.ones((n, 1)), muni, coef=0)
    lam_m = float(muni_fit.ratio[0])
    icc_m = lam_m / (1.0 + lam_m) if np.isfinite(lam_m) else 0.0
    reml_icc = post.mode if icc_prior == (1.0, 1.0) else _reml_icc(stats, 1.0 - r_bf**2)
    notes["groups.icc_group"] = (
        f"posterior mean (SD {post.sd:.3f}, 90% interval {post.quantile(0.05):.3f}-"
        f"{post.quantile(0.95):.3f}; REML {reml_icc:.3f}) of the partially nested model of "
        f"{primary}, prior Beta({icc_prior[0]:g}, {icc_prior[1]:g}); trainer variance included"
    )
    notes["groups.icc_municipality"] = (
        f"REML, baseline {primary} on a municipality intercept ({len(np.unique(muni))} "
        "municipalities: imprecise)"
    )

    # --- groups ------------------------------------------------------------------------
    group = data.group[0]
    in_group = group >= 0
    sizes = np.bincount(group[in_group]) if in_group.any() else np.array([])
    sizes = sizes[sizes > 0]
    trainer = data.trainer[0]
    groups_raw = dict(template.groups.model_dump())
    if sizes.size:
        groups_raw.update(
            mean_size=_sig(max(float(sizes.mean()), 1.01), 3),
            cv_size=_sig(min(float(sizes.std() / sizes.mean()), 2.0), 3),
            min_size=int(sizes.min()),
            max_size=int(sizes.max()),
        )
        notes["groups.mean_size"] = (
            f"{sizes.size} groups of {sizes.min()}-{sizes.max()} randomised participants"
        )
    if (trainer >= 0).any():
        n_trainers = len(np.unique(trainer[trainer >= 0]))
        groups_raw["groups_per_trainer"] = int(
            np.clip(round(sizes.size / max(n_trainers, 1)), 1, 20)
        )
        notes["groups.groups_per_trainer"] = f"{sizes.size} groups, {n_trainers} trainers"
    groups_raw.update(
        icc_group=_sig(post.mean, 3), icc_trainer=0.0, icc_municipality=_sig(min(icc_m, 0.9), 3)
    )

    # --- attendance --------------------------------------------------------------------
    offered, attended = data.sessions_offered[0], data.sessions_attended[0]
    has_sessions = bool((offered[treated] > 0).any())
    att_fit = None
    attendance_raw = dict(template.attendance.model_dump())
    attendance_raw["dose_response"] = "none"
    notes["attendance.dose_response"] = (
        "none: the effect below is the intention-to-treat effect (attendance-specific "
        "effects are confounded by self-selection); change the shape and the effect together"
    )
    notes["attendance.prognosis_log_odds"] = "from the template (assumption, not estimable)"
    if has_sessions:
        use = treated & (offered > 0)
        att_fit = fit_beta_binomial(attended[use], offered[use])
        attendance_raw["mean_fraction"] = _sig(att_fit.mean, 4)
        attendance_raw["precision"] = _sig(min(att_fit.precision, PRECISION_MAX), 4)
        notes["attendance.mean_fraction"] = (
            f"ML beta-binomial, {att_fit.n} treated (SE {att_fit.se_mean:.3f})"
        )
        notes["attendance.precision"] = (
            f"ML beta-binomial (SE of log precision {att_fit.se_log_precision:.2f})"
        )

    # --- dropout -----------------------------------------------------------------------
    o_primary = template.outcomes[primary]
    sign = 1.0 if o_primary.better == "higher" else -1.0
    base_mean, base_sd = np.nanmean(yp[:, 0]), np.nanstd(yp[:, 0], ddof=1)
    baseline_z = sign * (yp[:, 0] - base_mean) / base_sd
    missed = np.where(treated, 1.0 - attended / np.maximum(offered, 1), 0.0)
    if not has_sessions:
        missed = np.zeros(n)
    drop = fit_dropout(np.isfinite(yp), treated, baseline_z, missed)
    dropout_raw = dict(template.dropout.model_dump())
    dropout_raw.update(
        mechanism="MAR",
        completion_target=_sig(min(max(drop.completion_final, 0.01), 1.0), 3),
        treated_log_odds=_sig(float(np.clip(drop.treated_log_odds, -5, 5)), 3),
        baseline_log_odds=_sig(float(np.clip(drop.baseline_log_odds, -5, 5)), 3),
        attendance_log_odds=_sig(float(np.clip(drop.attendance_log_odds, -10, 10)), 3),
    )
    table = "; ".join(
        f"{arm} " + ", ".join(f"{c:.0%}" for c in shares) for arm, shares in drop.completion.items()
    )
    notes["dropout.completion_target"] = f"measured on {primary} by visit: {table}"
    notes["dropout.treated_log_odds"] = (
        f"discrete-time hazard logistic regression, {drop.n_at_risk} person-visits at risk "
        f"(SE {drop.se['treated']:.2f})"
    )
    notes["dropout.baseline_log_odds"] = f"same model (SE {drop.se['baseline']:.2f})"
    notes["dropout.attendance_log_odds"] = (
        f"same model (SE {drop.se['attendance']:.2f})" if has_sessions else "no sessions data"
    )

    # --- outcomes ----------------------------------------------------------------------
    last = v - 1
    outcomes_raw = {}
    for key, values in y.items():
        o = template.outcomes.get(key)
        if o is None:
            continue
        raw = o.model_dump(exclude_none=True)
        raw = {"type": raw.pop("type"), **raw}
        base_vals = values[:, 0]
        t_last, c_last = values[treated, last], values[ctrl, last]
        if isinstance(o, BoundedOutcome):
            mean, sd, share_at_bounds = censored_normal_fit(base_vals, o)
            raw["mean"] = _sig(float(np.clip(mean, o.lower, o.upper)), 4)
            raw["sd"] = _sig(sd, 4)
            notes[f"outcomes.{key}.sd"] = "baseline SD, both arms" + (
                f"; censored-normal ML ({share_at_bounds:.0%} at the scale's floor/ceiling)"
                if share_at_bounds
                else ""
            )
            if key == primary:
                effect = post.effect_mean
                how = (
                    f"{choice.line()}; the posterior mean of the partially nested model, with "
                    "the group ICC"
                )
            else:
                effect, how = _default_effect(data, key)
            raw["effect"] = _sig(effect, 3) if np.isfinite(effect) else 0.0
            raw["expectancy_bias"] = 0.0
            notes[f"outcomes.{key}.effect"] = (
                f"ITT at visit {last} ({how}; bias of unblinded raters and expectancy included)"
            )
        elif isinstance(o, CountOutcome):
            m = float(np.nanmean(base_vals))
            var = float(np.nanvar(base_vals, ddof=1))
            raw["mean"] = _sig(max(m, 1e-3), 4)
            raw["sd_log"] = _sig(math.sqrt(math.log1p(max(var - m, 0.0) / m**2)) if m > 0 else 0, 3)
            raw["sd_log"] = min(raw["sd_log"], 5.0)
            log_ratio, how = _default_effect(data, key)
            ratio = np.exp(log_ratio)
            if not np.isfinite(ratio):
                ratio = np.nanmean(t_last) / np.nanmean(c_last)
                how = "crude ratio of arm means (the default analysis failed)"
            raw["rate_ratio"] = (
                _sig(float(np.clip(ratio, 0.01, 100)), 3) if np.isfinite(ratio) else 1.0
            )
            notes[f"outcomes.{key}.rate_ratio"] = f"ITT at visit {last} ({how})"
        elif isinstance(o, BinaryOutcome):
            raw["prevalence"] = _sig(float(np.clip(np.nanmean(base_vals), 0.005, 0.995)), 3)
            log_odds, how = _default_effect(data, key)
            odds = np.exp(log_odds)
            if not np.isfinite(odds):
                pt, pc = np.nanmean(t_last), np.nanmean(c_last)
                with np.errstate(divide="ignore", invalid="ignore"):
                    odds = (pt / (1 - pt)) / (pc / (1 - pc))
                how = "crude odds ratio (the default analysis failed)"
            raw["odds_ratio"] = (
                _sig(float(np.clip(odds, 0.01, 100)), 3) if np.isfinite(odds) else 1.0
            )
            notes[f"outcomes.{key}.odds_ratio"] = f"ITT at visit {last} ({how})"
        raw.pop("effect_by_visit", None)
        outcomes_raw[key] = raw

    # --- design, sites, blinding -------------------------------------------------------
    design_raw = dict(template.design.model_dump())
    design_raw.update(
        randomisation=randomisation,
        arms=list(st.arms),
        allocation=None,
        allocation_treated=_sig(float(np.clip(treated.mean(), 0.01, 0.99)), 3),
        contamination=0.0,
        visit_months=[float(m) for m in visit_months],
    )
    if has_sessions:
        design_raw["sessions_offered"] = int(np.clip(np.median(offered[treated]), 1, 500))
    if st.n_periods > 1:
        design_raw["n_steps"] = int(max(data.period[0].max(), 1))
    notes["design.randomisation"] = f"{randomisation}: from the data's structure ({_unit(st)})"
    counts = np.bincount(muni, minlength=len(data.site_names))
    blinding_raw = dict(template.blinding.model_dump())
    if has_blinding:
        follow = data.observed[0][:, 1:]
        unblinded = float(np.mean(~data.assessor_blinded[0][:, 1:][follow])) if follow.any() else 0
        blinding_raw["assessor_unblinded_prob"] = _sig(unblinded, 3)
        notes["blinding.assessor_unblinded_prob"] = "share of follow-up assessments unblinded"
    blinding_raw["assessor_bias"] = 0.0
    notes["blinding.assessor_bias"] = "0: any rater bias in the data is part of the ITT effect"

    a_icc, b_icc = post.beta_params()
    raw = {
        "name": name,
        "description": f"calibrated from data ({n} participants); template {template.name}",
        "primary_outcome": primary,
        "design": design_raw,
        "sites": {
            "participants": [int(c) for c in counts],
            "names": list(data.site_names),
        },
        "groups": groups_raw,
        "attendance": attendance_raw,
        "correlation": {
            "baseline_followup": _sig(r_bf, 3),
            "between_followups": _sig(min(r_ff, 0.99), 3),
            "between_outcomes": _sig(r_oo, 3),
        },
        "dropout": dropout_raw,
        "blinding": blinding_raw,
        "outcomes": outcomes_raw,
        "design_priors": {
            "effect": f"normal:{_sig(post.effect_mean, 3):g},{_sig(post.effect_sd, 3):g}",
            "icc": f"beta:{_sig(a_icc, 3):g},{_sig(b_icc, 3):g}",
        },
    }
    _fit_group_bounds(raw)
    scenario_from_dict(raw, source="calibration")  # the written file must load
    return Calibration(
        raw=raw,
        notes=notes,
        analysis=choice,
        icc=post,
        attendance=att_fit,
        dropout=drop,
        correlations={
            "baseline_followup": r_bf,
            "between_followups": r_ff,
            "between_outcomes": r_oo,
        },
        n_participants=n,
    )


def randomisation_of(structure: TrialStructure) -> str:
    """The scenario's ``design.randomisation`` for a trial of this structure (the one place
    calibrate maps a structure to a design): clusters randomised that are the sites are
    ``"municipality"`` (``"stepped-wedge"`` with periods), other randomised clusters
    ``"cohort"``, people ``"individual"``."""
    if structure.cluster_randomised:
        if structure.cluster_is_site:
            return "stepped-wedge" if structure.n_periods > 1 else "municipality"
        return "cohort"
    return "individual"


def _unit(structure: TrialStructure) -> str:
    if not structure.cluster_randomised:
        return "people randomised"
    periods = f" in {structure.n_periods} periods" if structure.n_periods > 1 else ""
    return f"{structure.cluster} randomised{periods}"


def _default_effect(data: TrialData, outcome: str) -> tuple[float, str]:
    """The ITT effect of ``outcome`` by its default analysis (the one rule,
    :func:`trialsim.analyse.registry.default_analysis`) on the analysis' scale (a mean
    difference; the log rate or odds ratio for counts and binary outcomes) and how it was
    obtained; NaN when the fit fails."""
    choice = default_analysis(data.structure, outcome)
    try:
        est = get_analysis(choice.name).estimate(data, outcome)
    except ValueError as exc:
        return float("nan"), f"{choice.line()}; failed: {exc}"
    value = float(est.estimate[0]) if not est.failed[0] else float("nan")
    return value, choice.line()


def _reml_icc(stats, variance_factor: float) -> float:
    """The REML ICC on the scenario scale: the uniform-prior posterior mode."""
    return icc_posterior(stats, variance_factor=variance_factor).mode


def censored_normal_fit(values: np.ndarray, o: BoundedOutcome) -> tuple[float, float, float]:
    """(mean, sd, share at a bound) of a bounded score on its latent normal scale.

    The simulator rounds ``mean + sd z`` to ``step`` and clips it to [lower, upper], so a value
    at a bound is a normal value censored at ``bound -/+ step / 2``. With more than 1 % at a
    bound the censored-normal ML fit (scipy.stats.norm.fit on CensoredData) is used; the plain
    mean and SD would understate the SD (e.g. EQ-5D's ceiling at 1).
    """
    x = values[np.isfinite(values)]
    at_low, at_high = x <= o.lower, x >= o.upper
    share = float(np.mean(at_low | at_high))
    if share <= 0.01 or share >= 0.9:
        return float(np.mean(x)), float(np.std(x, ddof=1)), 0.0
    from scipy import stats

    half = o.step / 2.0
    data = stats.CensoredData(
        uncensored=x[~(at_low | at_high)],
        left=np.full(int(at_low.sum()), o.lower + half),
        right=np.full(int(at_high.sum()), o.upper - half),
    )
    mean, sd = stats.norm.fit(data)
    return float(mean), float(sd), share


def _primary(data: TrialData, template: Scenario) -> str:
    """The template's primary outcome if measured, else the first continuous one."""
    if template.primary in data.outcomes:
        return template.primary
    for k in data.outcomes:
        if isinstance(template.outcomes.get(k), BoundedOutcome):
            return k
    raise UserError(
        "calibrate needs a continuous outcome (psp, mhrm, who5 or eq5d) for the ICC; the data "
        f"have {list(data.outcomes) or 'none'}"
    )


def _fit_group_bounds(raw: dict) -> None:
    """Widen min_size / max_size so every municipality's treated can form groups."""
    g = raw["groups"]
    loose = {**raw, "groups": {**g, "min_size": 1, "max_size": 100}}
    cells = np.asarray(treated_cell_sizes(scenario_from_dict(loose, source="calibration")))
    n_groups = groups_in_cell(cells, g["mean_size"])
    g["min_size"] = int(max(1, min(g["min_size"], np.min(cells // n_groups))))
    g["max_size"] = int(min(100, max(g["max_size"], np.max(-(-cells // n_groups)))))

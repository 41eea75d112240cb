"""Analytic power for a scenario: map its nature and design onto the closed-form formulas.

Every randomisation unit of ``scenario.design.randomisation`` has a formula:

========================  =================  ===============================================
randomisation             formula            function (trialsim.power.analytic)
========================  =================  ===============================================
individual, waitlist      ``irgt``           :func:`~trialsim.power.analytic.power_irgt`
cohort                    ``irgt``           :func:`~trialsim.power.analytic.power_irgt`
municipality              ``crt``            :func:`~trialsim.power.analytic.power_crt`
stepped-wedge             ``stepped_wedge``  :func:`~.power_stepped_wedge`
========================  =================  ===============================================

The mapping, on the outcome's scale (``sd`` the outcome SD, rho the baseline/follow-up
correlation, ``icc_m`` the municipality ICC, ``s_g``/``s_r`` the group/trainer SDs of
:func:`trialsim.simulate.outcomes.cluster_scales`):

* individual variance after ANCOVA on the baseline: ``sd^2 (1 - icc_m) (1 - rho^2)``;
  group and trainer effects arise after baseline and are not predicted by it;
* individual / waitlist / cohort designs: municipalities are fixed strata; the group (or
  cohort) variance is ``sd^2 (s_g^2 + s_r^2)``. A treated cohort is one treatment group and a
  control cohort shares nothing beyond its municipality, so the cohort design is partially
  nested too: ``round(n_cohorts * allocation)`` treated cohorts per municipality are the
  groups, the other cohorts' members the controls;
* municipality and stepped-wedge designs: the municipality is the randomised cluster. Its
  effect is in baseline and follow-up alike, so ANCOVA (with the within-municipality slope
  rho) leaves ``sd^2 icc_m (1 - rho)^2`` of it. Treated participants are also in groups:
  the group and trainer effects add ``sd^2 (s_g^2 + s_r^2) (1 + cv_g^2) / n_groups`` to the
  variance of a treated cluster's (or cluster-period's) mean, ``n_groups`` the groups it
  holds. For the municipality design this extra variance is averaged over the arms with
  weights ``1 / k_arm`` and carried as a between-cluster variance (an effective ICC); for
  the stepped wedge it is averaged over the treated share of cluster-periods and carried in
  the cluster-period variance (Hussey & Hughes assume one variance for all cells);
* municipality design: clusters per arm ``k_1 = round(M * allocation)`` and ``k_0 = M -
  k_1`` (``cluster_ratio = k_0 / k_1``), mean size and CV of the municipalities' sizes,
  t on ``k_1 + k_0 - 2`` df (few clusters);
* stepped wedge: municipalities spread evenly over ``n_steps`` steps after one control
  period (the simulator's layout), ``n_per_period`` the mean participants per municipality
  and period, normal reference (as Hussey & Hughes): the effect is identified mostly within
  municipalities, and the cluster mixed model's Satterthwaite df are large (about 115 for
  9 municipalities in 3 steps), unlike the I - 2 of ``dist="t"``;
* completers per treated group: Binomial(group size, completion target), sizes varying with
  ``groups.cv_size`` (``completers="binomial"`` of
  :func:`~trialsim.power.analytic.power_irgt`): heavy attrition leaves few completers per
  group and some groups none; the spread of the ITT effect over attendance (dose-response)
  adds ``Var(effect x share x dose factor)`` to the treated arm's individual variance;
* attrition: the completion target; the effect: the ITT effect at the final visit
  (effect x mean dose factor), see :func:`trialsim.power.simulation.true_effect`.

Groups in the control arm (``[groups.control]``, attention control; individual and waitlist
designs): each arm carries its own design effect, the variance of the difference is
``sum_a sigma_a^2 (1 + ((cv^2 + 1) m_a - 1) rho_a) / n_a`` with each arm's group size and
ICC (control groups: ``sd^2 s_c^2`` between groups, :func:`~trialsim.simulate.outcomes.
control_group_scale`, no trainer variance); see ``n_control_groups`` and ``control_icc`` of
:func:`~trialsim.power.analytic.power_irgt`.

Three or more arms (individual, waitlist): the power of one contrast, ``arm`` against the
reference arm, from the two arms' counts and that arm's effect; ``arm`` must be given.

Approximations (each checked against simulation in tests/test_power_from_scenario.py):
dropout treated as MCAR, trainers running several groups treated as independent groups,
scale rounding ignored.
"""

from __future__ import annotations

import math

import numpy as np

from trialsim.errors import UserError
from trialsim.power.analytic import power_crt, power_irgt, power_stepped_wedge
from trialsim.power.solve import (
    _FUNCTIONS as _ALL_FUNCTIONS,
)
from trialsim.power.solve import (
    SOLVABLE,
    _lowest_count,
    base_design,
    solve_count,
    solve_power,
)
from trialsim.scenario import (
    GAUSSIAN_OUTCOMES,
    BoundedOutcome,
    Scenario,
    arm_counts,
    group_mean_size,
    groups_in_cell,
)
from trialsim.simulate.outcomes import cluster_scales, control_group_scale

_FUNCTIONS = {
    "irgt": power_irgt,
    "crt": power_crt,
    "stepped_wedge": power_stepped_wedge,
    **_ALL_FUNCTIONS,
}


def _arm_index(s: Scenario, arm: str | None) -> int:
    """The code of the arm compared with the reference (1 with two arms)."""
    labels = s.arm_labels
    if arm is None:
        if len(labels) > 2:
            raise UserError(
                f"analytic power for {len(labels)} arms compares one arm with the reference "
                f"{labels[0]!r}: choose the arm ({', '.join(labels[1:])}) or use "
                "--method simulation"
            )
        return 1
    if arm not in labels[1:]:
        raise UserError(f"arm {arm!r}: choose one of {', '.join(labels[1:])}")
    return labels.index(arm)


def _itt_effect(s: Scenario, outcome: str, code: int) -> float:
    """ITT effect of arm ``code`` at the final visit: its effect x the visit's share x (mean
    dose factor - contamination of controls), as
    :func:`trialsim.power.simulation.true_effect` for two arms."""
    from trialsim.power.simulation import mean_dose_factor
    from trialsim.simulate.outcomes import effect_shares

    o = s.outcomes[outcome]
    share = effect_shares(o, s.n_visits)[-1]
    contaminated = s.design.randomisation in ("individual", "waitlist", "cohort")
    control_dose = s.design.contamination if contaminated else 0.0
    return float(s.arm_effects(outcome)[code - 1] * share * (mean_dose_factor(s) - control_dose))


def analytic_parameters(
    s: Scenario, outcome: str | None = None, arm: str | None = None
) -> tuple[str, dict]:
    """The formula (``"irgt"``, ``"crt"`` or ``"stepped_wedge"``) and its keyword arguments
    for ``outcome`` (default the primary) of scenario ``s``; see the module docstring.
    ``arm``: the arm compared with the reference (needed with three or more arms)."""
    from trialsim.power.simulation import true_effect

    outcome = outcome or s.primary
    o = s.outcomes[outcome]
    code = _arm_index(s, arm)
    if not isinstance(o, GAUSSIAN_OUTCOMES):  # binary and count outcomes
        from trialsim.power.from_scenario_glm import glm_parameters

        return glm_parameters(s, outcome, code)
    g, d = s.groups, s.design
    s_group, s_trainer = cluster_scales(g)
    rho = s.correlation.baseline_followup
    var_individual = o.sd**2 * (1 - g.icc_municipality) * (1 - rho**2)
    var_group = o.sd**2 * (s_group**2 + s_trainer**2)
    completion = s.dropout.completion_target
    two_plain_arms = s.n_arms == 2 and isinstance(o, BoundedOutcome)
    common = dict(
        effect=true_effect(s, outcome, "itt") if two_plain_arms else _itt_effect(s, outcome, code),
        sd=float(np.sqrt(var_individual)),
        dropout=1.0 - completion,
    )
    sizes = np.asarray(s.sites.participants, dtype=float)
    if d.randomisation in ("individual", "waitlist", "cohort"):
        if d.randomisation == "cohort":  # whole cohorts of about mean_size are randomised
            n_cohorts = groups_in_cell(sizes, g.mean_size)
            treated_cohorts = np.floor(n_cohorts * d.allocation_treated + 0.5)
            n_treated = sizes * treated_cohorts / n_cohorts
            n_groups = int(treated_cohorts.sum())
        else:
            counts = arm_counts(sizes.astype(int), s.arm_allocation)
            n_treated = counts[:, code].astype(float)
            n_groups = int(groups_in_cell(n_treated, g.mean_size).sum())
        params = dict(
            common,
            n_groups=n_groups,
            group_size=float(n_treated.sum() / n_groups),
            n_control=int((sizes - n_treated).sum()),
            icc=float(var_group / (var_group + var_individual)),
            cv_group_size=g.cv_size,
            completers="binomial",
            treated_var=_effect_spread(s, outcome, code),
        )
        if g.control is None and not s.structure.groups_are_clusters:
            params["n_strata"] = len(sizes)
            realised = design_realisations(
                n_treated,
                sizes - n_treated if s.n_arms == 2 else counts[:, 0],
                g.mean_size,
                g.cv_size,
                params,
            )
            params["efficiency"] = realised["efficiency"]
            if s.n_arms == 2:
                # the small-sample REML model (checked against simulation over the two-arm
                # grid of scripts/power_grid.py); with more arms the decisions over the
                # contrasts need the t statistics' moments, which that model has not, so
                # every contrast keeps the design-variance formula
                params.update(
                    variance_estimation="reml",
                    n_fixed=_fixed_effects(s),
                    n_covariates=(1 if s.structure.has_baseline else 0)
                    + sum(v.kind != "categorical" for v in s.structure.covariates.values()),
                    info_cv=realised["info_cv"],
                    informative_share=realised["informative_share"],
                )
        if s.n_arms > 2:
            params["n_control"] = int(counts[:, 0].sum())
        if g.control is not None:  # attention-control groups: the control arm's own DE
            n_control = counts[:, 0]
            var_control = o.sd**2 * control_group_scale(g) ** 2
            params["n_control"] = int(n_control.sum())
            params["n_control_groups"] = int(groups_in_cell(n_control, group_mean_size(s, 0)).sum())
            params["control_icc"] = float(var_control / (var_control + var_individual))
        return "irgt", params
    var_municipality = o.sd**2 * g.icc_municipality * (1 - rho) ** 2
    if d.randomisation == "municipality":
        return "crt", _municipality(s, common, var_individual, var_group, var_municipality)
    if d.randomisation == "stepped-wedge":
        return "stepped_wedge", _stepped_wedge(
            s, common, var_individual, var_group, var_municipality
        )
    raise UserError(f"no analytic formula for {d.randomisation!r} randomisation")


def _fixed_effects(s: Scenario) -> int:
    """Fixed effects of the default mixed model on ``s``: intercept, the arms, the baseline,
    one per stratum beyond the first and the covariates' columns."""
    st = s.structure
    n = s.n_arms + (1 if st.has_baseline else 0)
    if st.stratified and st.site is not None:
        n += len(s.sites.participants) - 1
    for spec in st.covariates.values():
        n += len(spec.levels) - 1 if spec.kind == "categorical" else 1
    return n


def strata_efficiency(n_treated, n_control, mean_size, cv, p: dict, draws: int = 4000) -> float:
    """Information of the within-municipality comparison relative to the unstratified
    partially nested design with the same completers (``"efficiency"`` of
    :func:`design_realisations`)."""
    return design_realisations(n_treated, n_control, mean_size, cv, p, draws)["efficiency"]


def design_realisations(n_treated, n_control, mean_size, cv, p: dict, draws: int = 4000) -> dict:
    """How the realised design (who completes, in which group and municipality) varies
    between trials, from ``draws`` fixed-seed realisations; returns a dict with

    * ``"efficiency"``: the information of the within-municipality comparison relative to
      the unstratified partially nested design with the same completers (below);
    * ``"info_cv"``: the coefficient of variation of the realised information between
      trials (power is averaged over it: E[power(I)] < power(E[I]), Jensen);
    * ``"informative_share"``: the expected share of groups that contribute -- with
      completers, in a municipality with control completers -- (their count less one are
      the df of the estimated group variance).

    Municipalities are fixed strata: the effect is estimated within each (its treated group
    means against its own controls) and the strata are combined by inverse variance. With
    the variance components known, municipality h's contrast has variance
    ``1 / sum_j w_j + s_e^2 / K_C``, ``w_j = 1 / (s_g^2 + s_t^2 / K_j)``, over its groups'
    completers ``K_j ~ Binomial(M_j, c)`` (sizes ``M_j`` around the mean size with CV ``cv``)
    and its control completers ``K_C ~ Binomial(n_C, c)``; a stratum without treated or
    control completers gives nothing. The expected information over a fixed-seed sample of
    ``draws`` trials, divided by the unstratified (binomial) information, is returned (<= 1,
    near 1 with many completers per municipality; it stays at the scenario's value when a
    solve varies the number of groups, which is conservative as strata fill up).
    """
    from trialsim.power.analytic import _binomial_group_moments, _size_distribution

    rng = np.random.default_rng(2016)
    c = 1.0 - p["dropout"]
    var_e = p["sd"] ** 2
    var_t = var_e + p["treated_var"]
    var_g = p["icc"] / (1.0 - p["icc"]) * var_e
    size_values, size_prob = _size_distribution(float(mean_size), float(cv))
    info = np.zeros(draws)
    informative = np.zeros(draws)
    n_groups = 0
    for n_t, n_c in zip(np.asarray(n_treated), np.asarray(n_control), strict=True):
        k = int(groups_in_cell(n_t, mean_size))
        n_groups += k
        sizes = rng.choice(size_values, size=(draws, k), p=size_prob)
        sizes = np.maximum(1, np.round(sizes * n_t / sizes.sum(axis=1, keepdims=True)))
        kt = rng.binomial(sizes.astype(int), c)
        with np.errstate(divide="ignore"):
            w = np.where(kt > 0, 1.0 / (var_g + var_t / np.maximum(kt, 1)), 0.0).sum(axis=1)
        kc = rng.binomial(int(round(n_c)), c, size=draws)
        ok = (w > 0) & (kc > 0)
        var_h = np.where(ok, 1.0 / np.where(ok, w, 1.0) + var_e / np.maximum(kc, 1), np.inf)
        info += 1.0 / var_h
        informative += np.where(ok, (kt > 0).sum(axis=1), 0)
    g_info, _ = _binomial_group_moments(p["group_size"], cv, c, var_g, var_t)
    pooled = 1.0 / (1.0 / (n_groups * g_info) + var_e / (np.sum(n_control) * c))
    mean = info.mean()
    return {
        "efficiency": float(min(1.0, mean / pooled)),
        "info_cv": float(info.std() / mean) if mean > 0 else 0.0,
        "informative_share": float(max(informative.mean(), 1.0) / max(n_groups, 1)),
    }


def _effect_spread(s: Scenario, outcome: str, code: int) -> float:
    """Variance over treated participants of their ITT effect at the final visit: the effect
    times the visit's share times each one's dose factor (0 without a dose-response)."""
    from trialsim.power.simulation import _prognosis_and_dose
    from trialsim.simulate.outcomes import effect_shares

    if s.attendance.dose_response == "none":
        return 0.0
    o = s.outcomes[outcome]
    full = s.arm_effects(outcome)[code - 1] * effect_shares(o, s.n_visits)[-1]
    prognosis, dose = _prognosis_and_dose(s)
    spread = np.var(full * dose)
    # self-selected attendance: the dose follows the prognosis (the primary outcome's
    # final-visit person latent, favourable direction), so the effect co-varies with the
    # person's own residual after ANCOVA, (1 - rho^2) of that latent's covariance
    rho = s.correlation.baseline_followup
    r = 1.0 if outcome == s.primary else s.correlation.between_outcomes
    sign = 1.0 if s.outcomes[s.primary].better == "higher" else -1.0
    scale = o.sd * np.sqrt(1.0 - s.groups.icc_municipality) * r * sign * (1.0 - rho**2)
    cov = np.cov(prognosis, full * dose)[0, 1] * scale
    return float(max(spread + 2.0 * cov, 0.0))


def _municipality(s: Scenario, common, var_individual, var_group, var_municipality) -> dict:
    g = s.groups
    sizes = np.asarray(s.sites.participants, dtype=float)
    n_munis = len(sizes)
    k1 = round(n_munis * s.design.allocation_treated)
    k0 = n_munis - k1
    mean_size = float(sizes.mean())
    # a treated municipality's mean carries the average of its groups' effects
    groups_per_muni = float(groups_in_cell(sizes, g.mean_size).mean())
    tau2_treated = var_municipality + var_group * (1 + g.cv_size**2) / groups_per_muni
    tau2 = (tau2_treated / k1 + var_municipality / k0) / (1 / k1 + 1 / k0)
    return dict(
        common,
        n_clusters=int(k1),
        cluster_ratio=k0 / k1,
        cluster_size=mean_size,
        icc=float(tau2 / (tau2 + var_individual)),
        cv_cluster_size=float(sizes.std() / mean_size),
    )


def _stepped_wedge(s: Scenario, common, var_individual, var_group, var_municipality) -> dict:
    g, d = s.groups, s.design
    sizes = np.asarray(s.sites.participants, dtype=float)
    n_munis, n_steps = len(sizes), d.n_steps
    n_periods = n_steps + 1
    # the simulator's allocation: the j-th municipality in random order crosses at step
    # 1 + (j * n_steps) // M
    per_step = np.bincount((np.arange(n_munis) * n_steps) // n_munis, minlength=n_steps)
    n_per_period = float(sizes.sum() / (n_munis * n_periods))
    n_done = n_per_period * s.dropout.completion_target
    groups_per_cell = float(groups_in_cell(n_per_period, g.mean_size))
    treated_share = float((per_step * np.arange(n_steps, 0, -1)).sum() / (n_munis * n_periods))
    # group variance of a treated cell's mean, averaged over cells, as individual variance
    extra = treated_share * var_group * (1 + g.cv_size**2) / groups_per_cell * n_done
    var_cell = var_individual + extra
    params = dict(
        common,
        sd=float(np.sqrt(var_cell)),
        n_per_period=n_per_period,
        icc=float(var_municipality / (var_municipality + var_cell)),
        dist="normal",
    )
    if (per_step == per_step[0]).all():
        return dict(params, clusters_per_step=int(per_step[0]), n_steps=int(n_steps))
    x = np.arange(n_periods)[None, :] > np.repeat(np.arange(n_steps), per_step)[:, None]
    return dict(params, treatment_matrix=x.astype(int))


def analytic_power(
    s: Scenario, outcome: str | None = None, arm: str | None = None, alpha: float = 0.05
) -> dict:
    """Analytic power for the scenario's primary or named outcome, for any design.

    Returns a dict with ``"formula"`` (``"irgt"``, ``"crt"`` or ``"stepped_wedge"``),
    ``"power"`` (float) and the formula's inputs from :func:`analytic_parameters` (``effect``
    the ITT effect in outcome units; ``sd`` and ``icc`` the residual SD and ICC after
    adjustment for the baseline, see ``"residual_note"``; ``dropout`` and the design's counts).
    Raises ValueError for outcomes that are not continuous, and with three or more arms when
    ``arm`` (the arm compared with the reference) is not given.
    """
    formula, params = analytic_parameters(s, outcome, arm)
    params["alpha"] = alpha
    power = _FUNCTIONS[formula](**params)
    out = {"formula": formula, "power": float(power), **params}
    if formula in ("irgt", "crt", "stepped_wedge"):
        out["residual_note"] = residual_note(s, outcome or s.primary, params)
    else:
        from trialsim.power.effect_scale import effect_line

        out["effect_scale"] = effect_line(formula, params)
    return out


def residual_note(s: Scenario, outcome: str, params: dict) -> str:
    """Says that the printed SD and ICC are after baseline adjustment, next to the
    scenario's own values."""
    o = s.outcomes[outcome]
    rho = s.correlation.baseline_followup
    return (
        f"SD {params['sd']:.3g} and ICC {params['icc']:.3g} are the residual SD/ICC after "
        f"baseline adjustment (ANCOVA, baseline correlation {rho:g}) of the scenario's "
        f"outcome SD {o.sd:g}, group ICC {s.groups.icc_group:g}, trainer ICC "
        f"{s.groups.icc_trainer:g} and municipality ICC {s.groups.icc_municipality:g}"
    )


#: What ``hold`` may keep fixed while a count is solved for.
HOLDS = ("allocation", "n_control")


def analytic_solve(
    s: Scenario,
    unknown: str,
    target_power: float,
    outcome: str | None = None,
    *,
    hold: str = "allocation",
    arm: str | None = None,
    alpha: float = 0.05,
) -> dict:
    """Solve the scenario's formula for ``unknown`` at ``target_power`` (others as set).

    ``unknown`` is ``"effect"`` (minimum detectable ITT effect, outcome units), ``"icc"``
    (largest residual group ICC reaching the target), ``"sd"`` (largest residual SD),
    ``"alpha"`` (smallest significance level), ``"dropout"`` (largest share lost to
    follow-up), or a count: ``n_groups``, ``group_size``, ``n_control``, ``n_participants``
    (irgt); ``n_clusters`` and ``cluster_size`` (crt); ``clusters_per_step`` and
    ``n_per_period`` (stepped_wedge, when every step holds the same number of municipalities).

    ``hold="allocation"`` (default): solving for groups, group size or participants keeps the
    allocation ratio -- the controls grow with the treated arm (and with groups in the control
    arm, its groups too); ``n_clusters`` always keeps the ratio of control to treated clusters.
    ``hold="n_control"`` keeps the scenario's controls fixed while groups or group size grow.

    Returns a dict with ``"formula"``, ``"solve"``, ``"value"``, ``"target_power"``,
    ``"power"`` (reached at the value), ``"meaning"``, ``"held"`` (one line: what was held
    fixed and the resulting totals per arm), ``"arms"`` (participants and groups or clusters
    per arm at the answer) and ``"warnings"`` (the answer exceeds what the scenario has, or sits
    at an edge of the allowed range).
    """
    if hold not in HOLDS:
        raise UserError(f"--hold {hold}: choose one of {', '.join(HOLDS)}")
    formula, params = analytic_parameters(s, outcome, arm)
    params["alpha"] = alpha
    design = base_design(formula)
    ratio = next((k for k in ("odds_ratio", "rate_ratio") if k in params), None)
    if unknown == "effect" and ratio is not None:
        unknown = ratio  # the binary and count formulas' effect is a ratio
    solvable = [k for k in SOLVABLE[formula] if k != "power"]
    if design == "irgt":
        solvable.append("n_participants")
    if design == "stepped_wedge" and "treatment_matrix" in params:
        solvable = [k for k in solvable if k != "clusters_per_step"]
    if unknown not in solvable:
        raise UserError(f"--solve {unknown}: the {formula} formula solves for one of {solvable}")
    if hold == "n_control" and not (design == "irgt" and unknown in ("n_groups", "group_size")):
        raise UserError(
            "--hold n_control applies when solving an individually randomised design for "
            "n_groups or group_size"
        )
    func = _FUNCTIONS[formula]
    scale = _scaling(formula, params, unknown, hold)
    warnings: list[str] = []
    if unknown == ratio:
        from trialsim.power.solve import solve_ratio

        value = solve_ratio(
            lambda r: float(func(**dict(params, **{ratio: r}))),
            target_power,
            name=ratio,
            below_one=params[ratio] < 1,
        )
        solved = dict(params, **{ratio: value})
    elif scale is None:
        value = solve_power(formula, **dict(params, power=target_power, **{unknown: None}))
        solved = dict(params, **{unknown: value})
        if isinstance(value, int) and value == _lowest_count(formula, unknown, params):
            warnings.append(
                f"{unknown} = {value} is the smallest allowed value: the target is met at the "
                "lower edge of the range, so fewer may do"
            )
    else:
        lowest = 2 if unknown in ("n_groups", "n_participants") else 1
        if unknown == "n_participants":
            lowest = max(4, math.ceil(2 * params["group_size"] / scale["treated_share"]))
        value = solve_count(
            lambda x: float(func(**scale["params"](x))), unknown, target_power, lowest=lowest
        )
        if value == lowest:
            warnings.append(
                f"{unknown} = {value} is the smallest allowed value: the target is met at the "
                "lower edge of the range, so fewer may do"
            )
        solved = scale["params"](value)
    power = float(func(**solved))
    arms = _arm_totals(formula, solved)
    warnings += _range_warnings(s, formula, unknown, value, solved, arms)
    return {
        "formula": formula,
        "solve": unknown,
        "value": value,
        "target_power": target_power,
        "power": power,
        "meaning": _SOLVED_MEANING[unknown],
        "hold": hold,
        "held": _held_line(formula, unknown, hold, solved, arms),
        "arms": arms,
        "warnings": warnings,
    }


def _scaling(formula: str, params: dict, unknown: str, hold: str) -> dict | None:
    """For irgt counts solved with the allocation held: the power inputs as a function of
    the unknown (controls scaled with the treated arm). None: solve_power's own solve."""
    formula = base_design(formula)
    if formula != "irgt" or unknown not in ("n_groups", "group_size", "n_participants"):
        return None
    if hold == "n_control" and unknown != "n_participants":
        return None
    g0, m0, n_c0 = params["n_groups"], params["group_size"], params["n_control"]
    ratio = n_c0 / (g0 * m0)  # controls per treated participant
    control_groups = params.get("n_control_groups")

    def with_controls(g: float, m: float) -> dict:
        out = dict(params, n_groups=g, group_size=m, n_control=ratio * g * m)
        if control_groups is not None:
            out["n_control_groups"] = max(2.0, control_groups * g * m / (g0 * m0))
        return out

    share = 1.0 / (1.0 + ratio)
    by_unknown = {
        "n_groups": lambda x: with_controls(x, m0),
        "group_size": lambda x: with_controls(g0, x),
        # participants in all: groups of the scenario's size, as many as the treated share fills
        "n_participants": lambda x: with_controls(x * share / m0, m0),
    }
    return {"params": by_unknown[unknown], "treated_share": share}


def _arm_totals(formula: str, p: dict) -> dict:
    """Participants (and groups or clusters) per arm at the solved design."""
    formula = base_design(formula)
    if formula == "irgt":
        treated = p["n_groups"] * p["group_size"]
        out = {
            "treated": {"participants": treated, "groups": p["n_groups"]},
            "control": {"participants": p["n_control"]},
        }
        if p.get("n_control_groups") is not None:
            out["control"]["groups"] = p["n_control_groups"]
        return out
    if formula == "crt":
        k1 = p["n_clusters"]
        k0 = k1 * p.get("cluster_ratio", 1.0)
        m = p["cluster_size"]
        return {
            "treated": {"clusters": k1, "participants": k1 * m},
            "control": {"clusters": k0, "participants": k0 * m},
        }
    if "treatment_matrix" in p:
        n_clusters = len(p["treatment_matrix"])
        n_periods = len(p["treatment_matrix"][0])
    else:
        n_clusters = p["clusters_per_step"] * p["n_steps"]
        n_periods = p["n_steps"] + 1
    return {
        "all": {
            "clusters": n_clusters,
            "participants": n_clusters * n_periods * p["n_per_period"],
        }
    }


def _held_line(formula: str, unknown: str, hold: str, p: dict, arms: dict) -> str:
    """One line: what was held fixed and the totals per arm at the answer."""
    formula = base_design(formula)

    def n(x) -> str:
        return f"{math.ceil(x - 1e-9):d}"

    if formula == "irgt":
        t, c = arms["treated"], arms["control"]
        controls = f"{n(c['participants'])} controls"
        if "groups" in c:
            controls += f" in {c['groups']:.3g} groups"
        totals = (
            f"{t['groups']:.4g} groups of {p['group_size']:.3g} = {n(t['participants'])} "
            f"treated + {controls} = {n(t['participants'] + c['participants'])} in all"
        )
        if unknown in ("n_groups", "group_size", "n_participants") and hold == "allocation":
            ratio = c["participants"] / t["participants"]
            held = f"allocation ratio (controls {ratio:.3g} per treated participant) held"
            if unknown != "group_size":
                held += ", group size held"
        elif unknown in ("n_groups", "group_size"):
            held = "controls held fixed (--hold n_control)"
        elif unknown == "n_control":
            held = "treatment groups and their size held"
        else:
            held = "every count held"
        return f"{held}: {totals}"
    if formula == "crt":
        t, c = arms["treated"], arms["control"]
        k1, k0 = math.ceil(t["clusters"] - 1e-9), math.ceil(c["clusters"] - 1e-9)
        m = p["cluster_size"]
        return (
            f"ratio of control to treated clusters ({p.get('cluster_ratio', 1.0):.3g}) and "
            f"cluster size held: {k1} treated + {k0} control clusters (rounded up) = "
            f"{k1 + k0}; {n(k1 * m)} + {n(k0 * m)} = {n((k1 + k0) * m)} participants"
        )
    a = arms["all"]
    return (
        f"steps and periods held: {a['clusters']:.4g} clusters, "
        f"{n(a['participants'])} participants over all periods"
    )


def _range_warnings(s: Scenario, formula, unknown, value, p: dict, arms: dict) -> list[str]:
    """The answer beyond what the scenario has, or at an edge of its allowed range."""
    formula = base_design(formula)
    out = []
    n_munis = len(s.sites.participants)
    g = s.groups
    if formula in ("crt", "stepped_wedge"):
        need = sum(math.ceil(a["clusters"] - 1e-9) for a in arms.values())
        if need > n_munis:
            out.append(
                f"the answer needs {need:.4g} clusters but the scenario has {n_munis} "
                "municipalities: recruit more municipalities or choose another design"
            )
    if unknown == "group_size" and formula == "irgt":
        if value > g.max_size:
            out.append(
                f"groups of {value} exceed the scenario's largest group (groups.max_size = "
                f"{g.max_size}): add groups instead"
            )
        elif value < g.min_size:
            out.append(
                f"groups of {value} are below the smallest group that runs (groups.min_size = "
                f"{g.min_size})"
            )
    if formula == "irgt" and unknown in ("n_groups", "n_participants"):
        groups = p["n_groups"]
        if groups > n_munis * 20:
            out.append(f"{groups:.4g} groups is more than 20 per municipality ({n_munis})")
    if unknown == "icc" and value < 1e-3:
        out.append("the target needs an ICC of almost 0: it sits at the lower edge")
    if unknown == "dropout" and value < 0.01:
        out.append("the target needs almost complete follow-up (dropout < 1 %)")
    if unknown == "alpha" and value > 0.2:
        out.append(f"alpha {value:.3g} is far above conventional levels")
    return out


_SOLVED_MEANING = {
    "effect": "minimum detectable intention-to-treat effect (outcome units)",
    "n_groups": "treatment groups",
    "group_size": "participants per treatment group",
    "n_control": "control participants",
    "n_participants": "participants randomised in all",
    "n_clusters": "clusters in the treated arm",
    "cluster_size": "participants per cluster",
    "clusters_per_step": "clusters crossing over at each step",
    "n_per_period": "participants measured per cluster and period",
    "icc": "largest residual group ICC (after baseline adjustment) reaching the target",
    "sd": "largest residual SD (after baseline adjustment, outcome units) reaching the target",
    "alpha": "smallest two-sided significance level reaching the target",
    "dropout": "largest share lost to follow-up reaching the target",
    "odds_ratio": "minimum detectable intention-to-treat odds ratio (marginal, nearest 1)",
    "rate_ratio": "minimum detectable intention-to-treat rate ratio (marginal, nearest 1)",
}

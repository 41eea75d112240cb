"""Analytic power of a scenario's binary or count outcome: the simulator's latent model mapped
onto the formulas of :mod:`trialsim.power.analytic_glm`.

The simulator (:mod:`trialsim.simulate.outcomes`) draws a latent score ``z = sqrt(icc_m) M +
sqrt(1 - icc_m) P + (s_g G + s_r R in a treatment group)``; a binary outcome is ``1{z /
sqrt(v) > Phi^-1(1 - p)}`` (v the latent variance) and a count is Poisson with mean ``mu
exp(s z - s^2 v / 2)``. The arms' risks or mean counts are the intention-to-treat ones
(:func:`trialsim.power.simulation.arm_means`: attendance, dose-response, self-selection and
contamination), so the effect is the *marginal* odds or rate ratio at the final visit -- what
the default logistic (standardised) and Poisson GLMs estimate.

Variance components on the outcome's scale, from the latent ones:

* counts (closed form, log-normal moments; ``a = s^2 icc_m``, ``b = s^2 (1 - icc_m)``,
  ``c = s^2 (s_g^2 + s_r^2)``): within a municipality, a person's variance is ``mu + mu^2
  e^a (e^b - 1)`` (``overdispersion = e^a (e^b - 1)``), two members of one group share
  ``mu^2 e^a (e^c - 1)`` (``cv_between^2 = e^a (e^c - 1)``, Hayes & Bennett's k), and the
  baseline explains ``mu^2 e^a (e^(b rho^2) - 1)`` of the follow-up (the Poisson GLM adjusts
  for ``log1p(baseline)``, close to the baseline's latent score);
* binary (bivariate normal orthant probabilities over a 24-point Gauss-Hermite rule for the
  municipality effect): the within-municipality variance ``E[p_M (1 - p_M)]``, the group
  covariance ``E[Phi2(h, h; r_g) - p_M^2]`` and the baseline's share ``phi^2`` (the squared
  correlation of the binary baseline and follow-up, which the logistic GLM adjusts for).

Designs, as the continuous mapping (:mod:`trialsim.power.from_scenario`):

* individual / waitlist / cohort randomisation: partially nested; municipalities are strata
  (their variance is removed), ICC on the outcome scale in the treated arm only, the
  baseline's share removed from each arm's individual variance (``treated_efficiency``,
  ``control_efficiency``), Satterthwaite df;
* municipality randomisation: cluster-randomised, ``icc`` on the outcome scale from the
  municipality effect left after the baseline (``icc_m (1 - rho)^2``) and, in treated
  municipalities, their groups' covariance averaged over the arms; t on ``k_1 + k_0 - 2`` df;
* stepped wedge: Hussey & Hughes at the mean of the two arms' means, the groups' covariance
  carried in the treated cells' variance, t on ``I - 2`` df (the GLM's cluster-robust SE over
  few municipalities).

Approximations (checked against simulation in tests/test_power_analytic_glm_scenario.py):
dropout MCAR with the expected completers per group, a count's person variance taken equal in
both arms (the group effect scales it by ``e^c`` in the treated arm, a few per cent).
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

from trialsim.errors import UserError
from trialsim.scenario import BinaryOutcome, CountOutcome, Scenario, arm_counts, groups_in_cell
from trialsim.simulate.outcomes import cluster_scales

_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(24)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


def _phi2(h1, h2, r):
    """P(X1 < h1, X2 < h2) for standard bivariate normals with correlation r (arrays h)."""
    if r <= 0:
        return special.ndtr(h1) * special.ndtr(h2)
    cov = [[1.0, r], [r, 1.0]]
    pts = np.column_stack([np.ravel(h1), np.ravel(h2)])
    return stats.multivariate_normal(mean=[0.0, 0.0], cov=cov).cdf(pts).reshape(np.shape(h1))


def binary_moments(p, *, icc_m, cov_group, rho_baseline, p_baseline, stratified=True):
    """Within-municipality (``stratified``) or marginal moments of a binary outcome with risk
    ``p`` whose latent score has municipality variance ``icc_m``, person variance ``1 -
    icc_m`` and group variance ``cov_group``: ``(total, group_cov, explained)`` -- the
    person variance, the covariance of two members of one group and the variance the
    baseline (risk ``p_baseline``, latent correlation ``rho_baseline`` of the person parts)
    explains."""
    v = 1.0 + cov_group
    m_part = np.sqrt(icc_m) * _NODES if stratified else 0.0 * _NODES
    rest = v - icc_m if stratified else v
    rest0 = 1.0 - icc_m if stratified else 1.0
    h = (m_part - np.sqrt(v) * special.ndtri(1.0 - p)) / np.sqrt(rest)
    h0 = (m_part - special.ndtri(1.0 - p_baseline)) / np.sqrt(rest0)
    p_m, p0_m = special.ndtr(h), special.ndtr(h0)
    total = _WEIGHTS @ (p_m * (1 - p_m))
    total0 = _WEIGHTS @ (p0_m * (1 - p0_m))
    group = _WEIGHTS @ (_phi2(h, h, cov_group / rest) - p_m**2)
    r01 = (1.0 - icc_m) * rho_baseline / np.sqrt(rest0 * rest)
    cov01 = _WEIGHTS @ (_phi2(h0, h, r01) - p0_m * p_m)
    return float(total), float(group), float(cov01**2 / total0)


def count_moments(mu, *, sd_log, icc_m, cov_group, rho_baseline, stratified=True):
    """The same moments for a count with mean ``mu`` and log-normal SD ``sd_log`` (closed
    form): ``(overdispersion, group_cov, explained)``; ``overdispersion`` of the person
    variance ``mu + overdispersion mu^2`` (within a municipality when ``stratified``)."""
    s2 = sd_log**2
    a = s2 * icc_m if stratified else 0.0
    b = s2 * (1.0 - icc_m) if stratified else s2
    over = np.exp(a) * np.expm1(b)
    group = mu**2 * np.exp(a) * np.expm1(s2 * cov_group)
    explained = mu**2 * np.exp(a) * np.expm1(s2 * (1.0 - icc_m) * rho_baseline**2)
    return float(over), float(group), float(explained)


def _kind(o) -> str:
    return "binary" if isinstance(o, BinaryOutcome) else "count"


def glm_parameters(s: Scenario, outcome: str, code: int) -> tuple[str, dict]:
    """The formula (``"irgt-binary"``, ``"crt-count"``, ...) and its keyword arguments for
    the binary or count ``outcome`` of ``s`` (arm ``code`` against the reference)."""
    from trialsim.power.simulation import arm_means

    o = s.outcomes[outcome]
    if not isinstance(o, BinaryOutcome | CountOutcome):
        raise ValueError(f"{outcome!r} is not a binary or count outcome")
    kind = _kind(o)
    g, d = s.groups, s.design
    s_group, s_trainer = cluster_scales(g)
    cov_group = float(s_group**2 + s_trainer**2)
    rho = s.correlation.baseline_followup
    mu0, mu1 = arm_means(s, outcome) if code == 1 else _contrast_means(s, outcome, code)
    ratio = float(
        np.exp(special.logit(mu1) - special.logit(mu0)) if kind == "binary" else mu1 / mu0
    )
    common = {
        ("odds_ratio" if kind == "binary" else "rate_ratio"): ratio,
        ("risk_control" if kind == "binary" else "rate_control"): float(mu0),
        "dropout": 1.0 - s.dropout.completion_target,
        "scale": "log",
    }
    sizes = np.asarray(s.sites.participants, dtype=float)
    stratified = d.randomisation in ("individual", "waitlist", "cohort")

    def moments(mu, cov):
        if kind == "binary":
            return binary_moments(mu, icc_m=g.icc_municipality, cov_group=cov,
                                  rho_baseline=rho, p_baseline=o.prevalence,
                                  stratified=stratified)  # fmt: skip
        return count_moments(mu, sd_log=o.sd_log, icc_m=g.icc_municipality, cov_group=cov,
                             rho_baseline=rho, stratified=stratified)  # fmt: skip

    if stratified:
        return f"irgt-{kind}", dict(common, **_irgt(s, kind, code, sizes, mu0, mu1, moments))
    if d.randomisation == "municipality":
        return f"crt-{kind}", dict(common, **_crt(s, o, sizes, mu0, mu1, cov_group))
    if d.randomisation == "stepped-wedge":
        return f"stepped_wedge-{kind}", dict(
            common, **_stepped_wedge(s, o, sizes, mu0, mu1, cov_group, moments)
        )
    raise UserError(f"no analytic formula for {d.randomisation!r} randomisation")


def _contrast_means(s: Scenario, outcome: str, code: int) -> tuple[float, float]:
    """Arm ``code``'s mean against the reference with three or more arms: the scenario with
    that arm's effect as the first contrast."""
    import dataclasses

    from trialsim.power.simulation import arm_means

    o = s.outcomes[outcome]
    effects = s.arm_effects(outcome)
    name = "odds_ratio" if isinstance(o, BinaryOutcome) else "rate_ratio"
    one = dataclasses.replace(o, **{name: float(effects[code - 1])})
    try:
        twin = dataclasses.replace(s, outcomes={**s.outcomes, outcome: one})
        return arm_means(twin, outcome)
    except (TypeError, ValueError):
        raise UserError(
            f"analytic power for arm {code} of a binary or count outcome with three or more "
            "arms is not available: use --method simulation"
        ) from None


def _irgt(s, kind, code, sizes, mu0, mu1, moments) -> dict:
    g, d = s.groups, s.design
    if d.randomisation == "cohort":
        n_cohorts = groups_in_cell(sizes, g.mean_size)
        treated = np.floor(n_cohorts * d.allocation_treated + 0.5)
        n_treated = sizes * treated / n_cohorts
        n_groups = int(treated.sum())
        n_control = float((sizes - n_treated).sum())
    else:
        counts = arm_counts(sizes.astype(int), s.arm_allocation)
        n_treated = counts[:, code].astype(float)
        n_groups = int(groups_in_cell(n_treated, g.mean_size).sum())
        n_control = float(counts[:, 0].sum())
    _, s_trainer = cluster_scales(g)
    cov_group = float(cluster_scales(g)[0] ** 2 + s_trainer**2)
    out = dict(
        n_groups=n_groups,
        group_size=float(n_treated.sum() / n_groups),
        n_control=n_control,
        cv_group_size=g.cv_size,
    )
    if kind == "binary":
        total1, group1, explained1 = moments(mu1, cov_group)
        total0, _, explained0 = moments(mu0, 0.0)
        icc = group1 / (mu1 * (1 - mu1))  # the formula's ICC on the risk scale
        # the municipality strata and the baseline leave this share of each arm's individual
        # variance (the formula's (1 - icc) p (1 - p) and p (1 - p))
        eff1 = (total1 - group1 - explained1) / ((1 - icc) * mu1 * (1 - mu1))
        eff0 = (total0 - explained0) / (mu0 * (1 - mu0))
        return dict(out, icc=float(icc), treated_efficiency=_unit(eff1),
                    control_efficiency=_unit(eff0))  # fmt: skip
    over, group1, explained1 = moments(mu1, cov_group)
    _, _, explained0 = moments(mu0, 0.0)
    eff1 = 1.0 - explained1 / (mu1 + over * mu1**2)
    eff0 = 1.0 - explained0 / (mu0 + over * mu0**2)
    return dict(out, cv_between=float(np.sqrt(group1) / mu1), overdispersion=float(over),
                treated_efficiency=_unit(eff1), control_efficiency=_unit(eff0))  # fmt: skip


def _unit(x: float) -> float:
    return float(min(1.0, max(x, 1e-6)))


def _crt(s, o, sizes, mu0, mu1, cov_group) -> dict:
    g, d = s.groups, s.design
    n_munis = len(sizes)
    k1 = round(n_munis * d.allocation_treated)
    k0 = n_munis - k1
    mean_size = float(sizes.mean())
    groups_per_muni = float(groups_in_cell(sizes, g.mean_size).mean())
    # between-municipality covariance on the outcome scale (marginal moments); a treated
    # municipality's mean also carries the average of its groups' effects
    out = {}
    # the municipality effect is in baseline and follow-up alike: adjustment for the baseline
    # (slope rho) leaves icc_m (1 - rho)^2 of it, as in the continuous mapping
    icc_m = g.icc_municipality * (1.0 - s.correlation.baseline_followup) ** 2
    if isinstance(o, BinaryOutcome):

        def cov(mu, c_lat):
            h = special.ndtri(mu)
            return float(_phi2(np.array([h]), np.array([h]), c_lat)[0] - mu**2)

        s1, s0 = mu1 * (1 - mu1), mu0 * (1 - mu0)
        tau1 = cov(mu1, (icc_m + cov_group / groups_per_muni * (1 + g.cv_size**2)))
        tau0 = cov(mu0, icc_m)
        tau2 = (tau1 / s1 / k1 + tau0 / s0 / k0) / (1 / k1 + 1 / k0)
        out["icc"] = float(tau2)
    else:
        sd2 = o.sd_log**2
        over = float(np.expm1(sd2))
        c1 = icc_m + cov_group * (1 + g.cv_size**2) / groups_per_muni
        tau1 = np.expm1(sd2 * c1) / (1 / mu1 + over)
        tau0 = np.expm1(sd2 * icc_m) / (1 / mu0 + over)
        out["icc"] = float((tau1 / k1 + tau0 / k0) / (1 / k1 + 1 / k0))
        out["overdispersion"] = over
    return dict(
        out,
        n_clusters=int(k1),
        cluster_ratio=k0 / k1,
        cluster_size=mean_size,
        cv_cluster_size=float(sizes.std() / mean_size),
    )


def _stepped_wedge(s, o, sizes, mu0, mu1, cov_group, moments) -> dict:
    g, d = s.groups, s.design
    binary = isinstance(o, BinaryOutcome)
    n_munis, n_steps = len(sizes), d.n_steps
    n_periods = n_steps + 1
    per_step = np.bincount((np.arange(n_munis) * n_steps) // n_munis, minlength=n_steps)
    n_per_period = float(sizes.sum() / (n_munis * n_periods))
    mu_bar = (mu0 + mu1) / 2
    if binary:
        total, _, explained = moments(mu_bar, 0.0)
        h = special.ndtri(mu_bar)
        tau2 = float(_phi2(np.array([h]), np.array([h]), g.icc_municipality)[0] - mu_bar**2)
        s2 = mu_bar * (1 - mu_bar)
        out = {}
    else:
        over, _, explained = moments(mu_bar, 0.0)
        total = mu_bar + over * mu_bar**2
        sd2 = o.sd_log**2
        tau2 = float(mu_bar**2 * np.expm1(sd2 * g.icc_municipality))
        s2 = total
        out = {"overdispersion": float(over)}
    # the groups' covariance in the treated cells, averaged over cells, as person variance
    n_done = n_per_period * s.dropout.completion_target
    groups_per_cell = float(groups_in_cell(n_per_period, g.mean_size))
    treated_share = float((per_step * np.arange(n_steps, 0, -1)).sum() / (n_munis * n_periods))
    group_cov = moments(mu_bar, cov_group)[1] if binary else (
        mu_bar**2 * np.expm1(sd2 * cov_group)
    )  # fmt: skip
    extra = treated_share * group_cov * (1 + g.cv_size**2) / groups_per_cell * n_done
    efficiency = (total - explained + extra) / s2
    params = dict(
        out,
        n_per_period=n_per_period,
        icc=float(tau2 / (tau2 + s2)),
        efficiency=float(min(1.0, efficiency)),
        dist="t",
    )
    if (per_step == per_step[0]).all():
        return dict(params, clusters_per_step=int(per_step[0]), n_steps=int(n_steps))
    x = np.arange(n_periods)[None, :] > np.repeat(np.arange(n_steps), per_step)[:, None]
    return dict(params, treatment_matrix=x.astype(int))

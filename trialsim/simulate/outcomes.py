"""Correlated outcomes on their real scales (scenario ``[outcomes.NAME]``).

Every outcome k of participant i at visit t has a standardised latent score

    z = sqrt(icc_m) M[muni, k] + sqrt(1 - icc_m) P[i, k, t] + 1{in a group, t > 0} (s_g G + s_r R)

with P multivariate normal over (outcome, visit) with correlation kron(R_outcome, R_visit),
and municipality (M), group (G) and trainer (R) effects standard normal, correlated across
outcomes like P. ``s_g`` and ``s_r`` make ``icc_group`` and ``icc_trainer`` the shares of the
treated arm's follow-up variance within a municipality (the partially nested convention: the
individual variance is the same in both arms and groups add to it). Controls have latent
variance 1, so each outcome's ``sd`` is its control-arm SD.

Baseline covariates add ``effect * (x - mean) / sd`` (numeric) or ``effects[level]``
(categorical) to z at every visit (:func:`trialsim.simulate.trial.draw_covariates`), so an
outcome's ``mean``/``prevalence`` is that of participants at the covariate means and
reference levels. Attention-control groups in the reference arm (``[groups.control]``) add
``s_c G`` after baseline with ``s_c`` from their own ICC (:func:`control_group_scale`).

The latent score is mapped to the outcome's scale:
* bounded: mean + sd z + effect, rounded to ``step`` and clipped to [lower, upper];
* continuous: mean + sd z + effect (neither rounded nor clipped);
* count: Poisson with log-normal mean ``mean * rate_ratio^dose * exp(sd_log z - sd_log^2 v / 2)``
  (v the latent variance, so the arm mean is exact);
* binary: 1 when Phi(z / sqrt(v)) exceeds 1 - p, with logit p = logit(prevalence) + dose log OR.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy import special

from trialsim.scenario import (
    BinaryOutcome,
    BoundedOutcome,
    ContinuousOutcome,
    CountOutcome,
    Groups,
    Scenario,
    outcome_correlation,
    visit_correlation,
)


def cluster_scales(g: Groups) -> tuple[float, float]:
    """SDs of the group and trainer effects on the latent scale (see module docstring)."""
    individual = 1.0 - g.icc_municipality
    rest = 1.0 - g.icc_group - g.icc_trainer
    return (np.sqrt(g.icc_group * individual / rest), np.sqrt(g.icc_trainer * individual / rest))


def control_group_scale(g: Groups) -> float:
    """SD of an attention-control group's effect on the latent scale: ``[groups.control]
    icc_group`` is the share of the control arm's follow-up variance (within a municipality)
    between its groups; control groups have no trainer variance."""
    icc = g.control.icc_group
    return float(np.sqrt(icc * (1.0 - g.icc_municipality) / (1.0 - icc)))


def latent_person_chol(s: Scenario) -> np.ndarray:
    """Cholesky factor of kron(R_outcome, R_visit), the person-level latent correlation."""
    c = s.correlation
    r_out = outcome_correlation(len(s.outcomes), c.between_outcomes)
    r_vis = visit_correlation(s.n_visits, c.baseline_followup, c.between_followups)
    return np.kron(np.linalg.cholesky(r_out), np.linalg.cholesky(r_vis))


def draw_person_latent(s: Scenario, n_reps: int, n: int, *, rng: np.random.Generator):
    """Person-level latent scores P, (B, N, K, V), each standard normal."""
    k, v = len(s.outcomes), s.n_visits
    chol = latent_person_chol(s)
    eps = rng.standard_normal((n_reps, n, k * v))
    return (eps @ chol.T).reshape(n_reps, n, k, v)


def draw_cluster_effects(s: Scenario, n_reps: int, n_units: int, *, rng: np.random.Generator):
    """Standard-normal unit effects, (B, units, K), correlated across outcomes like P."""
    k = len(s.outcomes)
    chol = np.linalg.cholesky(outcome_correlation(k, s.correlation.between_outcomes))
    return rng.standard_normal((n_reps, n_units, k)) @ chol.T


def latent_scores(
    muni_z: np.ndarray,
    person: np.ndarray,
    sd_person: float,
    in_group: np.ndarray,
    cluster_z: np.ndarray,
) -> np.ndarray:
    """Latent scores z (B, N, V) of one outcome (module docstring): ``muni_z + sd_person P``
    at every visit, plus ``cluster_z`` after baseline for participants in a group.

    ``muni_z``, ``cluster_z`` (B, N) float, ``in_group`` (B, N) bool, ``person`` (B, N, V)."""
    out = np.empty(person.shape)
    _latent_kernel(muni_z, person, sd_person, in_group, cluster_z, out)
    return out


@numba.njit(nogil=True, cache=True)
def _latent_kernel(muni_z, person, sd_person, in_group, cluster_z, out):
    n_rep, n, n_visits = out.shape
    for r in range(n_rep):
        for i in range(n):
            m = muni_z[r, i]
            c = cluster_z[r, i] if in_group[r, i] else 0.0
            out[r, i, 0] = m + sd_person * person[r, i, 0]
            for t in range(1, n_visits):
                out[r, i, t] = m + sd_person * person[r, i, t] + c


def to_scale(
    o: BoundedOutcome | ContinuousOutcome | CountOutcome | BinaryOutcome,
    z: np.ndarray,
    grouped_var: np.ndarray,
    dose: np.ndarray,
    treated: np.ndarray,
    blinded: np.ndarray,
    bias: tuple[float, float],
    *,
    rng: np.random.Generator,
    arm_effect: np.ndarray | None = None,
) -> np.ndarray:
    """Map latent scores ``z`` (B, N, V) to the outcome's scale.

    ``grouped_var`` (B, N) is the latent variance after baseline (1 outside groups); ``dose``
    (B, N) the dose factor, times each visit's :func:`effect_shares` the share of the full
    effect a measurement carries; ``treated`` (B, N) and ``blinded`` (B, N, V) place the bias
    ``(unblinded, treated)`` of :func:`trialsim.simulate.blinding.bias_terms` (bounded scales
    only): the first on treated participants' follow-up measurements by an unblinded assessor,
    the second on all their follow-up measurements, both in the favourable direction.

    ``arm_effect`` (B, N), with three or more arms, is each participant's arm's full-dose
    effect on the outcome's effect scale (outcome units, rate ratio or odds ratio); ``None``
    uses the outcome's single effect.
    """
    shares = effect_shares(o, z.shape[-1])
    if isinstance(o, BoundedOutcome | ContinuousOutcome):
        bias_unblinded, bias_treated = favourable_sign(o) * np.asarray(bias, dtype=float)
        effect = np.broadcast_to(
            np.asarray(o.effect if arm_effect is None else arm_effect, dtype=float), dose.shape
        )
        bounded = isinstance(o, BoundedOutcome)
        out = np.empty(z.shape)
        _bounded_kernel(
            z, dose, shares, treated, blinded, bias_unblinded, bias_treated,
            o.sd, o.mean, effect, o.step if bounded else 0.0,
            o.lower if bounded else -np.inf, o.upper if bounded else np.inf, out,
        )  # fmt: skip
        return out
    # counts and binary outcomes carry no rater bias
    latent_var = by_visit(1.0, grouped_var, z.shape[-1])
    share = np.stack([dose * w for w in shares], axis=-1)
    ratio = o.rate_ratio if isinstance(o, CountOutcome) else o.odds_ratio
    log_ratio = np.log(ratio) if arm_effect is None else np.log(arm_effect)[..., None]
    if isinstance(o, CountOutcome):
        log_mean = np.log(o.mean) + log_ratio * share
        rate = np.exp(log_mean + o.sd_log * z - 0.5 * o.sd_log**2 * latent_var)
        return rng.poisson(rate).astype(float)
    p = special.expit(special.logit(o.prevalence) + log_ratio * share)
    u = special.ndtr(z / np.sqrt(latent_var))
    return (u > 1.0 - p).astype(float)


@numba.njit(nogil=True, cache=True)
def _bounded_kernel(
    z, dose, shares, treated, blinded, bias_unblinded, bias_treated,
    sd, mean, effect, step, lower, upper, out,
):  # fmt: skip
    """Bounded scale: ``mean + sd z + effect dose share + bias``, rounded to ``step`` (if > 0)
    and clipped to [lower, upper], in one pass (``effect`` (B, N); a continuous outcome has
    step 0 and infinite bounds)."""
    n_rep, n, n_visits = z.shape
    for r in range(n_rep):
        for i in range(n):
            for t in range(n_visits):
                y = sd * z[r, i, t] + mean
                y += effect[r, i] * (dose[r, i] * shares[t])
                if t > 0 and treated[r, i]:
                    y += bias_treated
                    if not blinded[r, i, t]:
                        y += bias_unblinded
                if step > 0.0:
                    y = np.rint((y - lower) * (1.0 / step)) * step + lower
                out[r, i, t] = min(max(y, lower), upper)


def untreated_final(
    o: BoundedOutcome | ContinuousOutcome | CountOutcome | BinaryOutcome,
    z_final: np.ndarray,
    latent_var_final: np.ndarray,
) -> np.ndarray:
    """The part of each participant's final-visit outcome that does not depend on the dose,
    (B, N), from which :func:`final_outcome_at` gives the outcome at any dose exactly as
    :func:`to_scale` draws it: bounded and continuous ``mean + sd z`` (before the effect,
    rounding and clipping; no rater bias, which is measurement error, not effect); count
    the expected count at dose 0 ``mean exp(sd_log z - sd_log^2 v / 2)`` (the Poisson draw
    around it is measurement noise); binary the latent uniform ``Phi(z / sqrt(v))``.

    ``z_final`` (B, N) latent scores at the final visit, ``latent_var_final`` (B, N) their
    variance v (the ``grouped_var`` of the simulator)."""
    if isinstance(o, CountOutcome):
        return o.mean * np.exp(o.sd_log * z_final - 0.5 * o.sd_log**2 * latent_var_final)
    if isinstance(o, BinaryOutcome):
        return special.ndtr(z_final / np.sqrt(latent_var_final))
    return o.mean + o.sd * z_final


def final_outcome_at(
    o: BoundedOutcome | ContinuousOutcome | CountOutcome | BinaryOutcome,
    untreated: np.ndarray,
    effect: float,
    dose: np.ndarray | float,
) -> np.ndarray:
    """Each participant's final-visit outcome (counts: its expected value) at ``dose``
    (the dose factor, 0..1, scalar or like ``untreated``) of a treatment whose full-dose
    effect is ``effect`` on the outcome's effect scale (outcome units, rate ratio, odds
    ratio), from :func:`untreated_final`: the potential outcomes of the simulated trial, on
    the same random numbers as its observed outcomes."""
    untreated = np.asarray(untreated, dtype=float)
    kind, coef, base, step, lower, upper = _potential_params(o, effect)
    share = np.broadcast_to(final_effect_share(o) * np.asarray(dose, float), untreated.shape)
    out = np.empty(untreated.shape)
    _outcome_at_kernel(kind, untreated.ravel(), np.ascontiguousarray(share).ravel(), coef,
                       base, step, lower, upper, out.ravel())  # fmt: skip
    return out


def mean_potential_outcomes(
    o: BoundedOutcome | ContinuousOutcome | CountOutcome | BinaryOutcome,
    untreated: np.ndarray,
    target: np.ndarray,
    treated: tuple[float, np.ndarray | float],
    control: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per replicate (rows of the (R, N) arrays), the mean of :func:`final_outcome_at` over
    the participants in ``target`` under ``treated`` = (effect, dose: scalar or (R, N)) and
    under ``control`` = (effect, dose), and the size of ``target``: ``(m1, m0, n)``, means
    NaN where ``n`` is 0. One pass over the arrays, no temporaries."""
    r = untreated.shape[0]
    kind, coef1, base, step, lower, upper = _potential_params(o, treated[0])
    coef0 = _potential_params(o, control[0])[1]
    share = final_effect_share(o)
    dose1 = np.broadcast_to(np.asarray(treated[1], dtype=float), untreated.shape)
    m1, m0, n = np.empty(r), np.empty(r), np.empty(r, dtype=np.int64)
    _target_means_kernel(kind, untreated, target, dose1, share, coef1, share * control[1],
                         coef0, base, step, lower, upper, m1, m0, n)  # fmt: skip
    return m1, m0, n


def _potential_params(o, effect: float) -> tuple[int, float, float, float, float, float]:
    """(kind, coefficient, logit base, step, lower, upper) of :func:`_outcome_at`."""
    if isinstance(o, CountOutcome):
        return 1, float(np.log(effect)), 0.0, 0.0, -np.inf, np.inf
    if isinstance(o, BinaryOutcome):
        return 2, float(np.log(effect)), float(special.logit(o.prevalence)), 0.0, -np.inf, np.inf
    if isinstance(o, BoundedOutcome):
        return 0, float(effect), 0.0, float(o.step), float(o.lower), float(o.upper)
    return 0, float(effect), 0.0, 0.0, -np.inf, np.inf


@numba.njit(nogil=True, cache=True)
def _outcome_at(kind, u, share, coef, base, step, lower, upper):
    """One potential outcome from the dose-free part ``u`` (:func:`untreated_final`) at
    effect share ``share`` (dose factor x the final visit's share): the arithmetic of
    :func:`to_scale` (bounded/continuous: ``u + effect share``, rounded and clipped; count:
    ``u rr^share``; binary: ``1{u > 1 - expit(logit(prevalence) + share log OR)}``)."""
    if kind == 1:
        return u * np.exp(coef * share)
    if kind == 2:
        p = 1.0 / (1.0 + np.exp(-(base + coef * share)))
        return 1.0 if u > 1.0 - p else 0.0
    y = u + coef * share
    if step > 0.0:
        y = np.rint((y - lower) * (1.0 / step)) * step + lower
    return min(max(y, lower), upper)


@numba.njit(nogil=True, cache=True)
def _outcome_at_kernel(kind, u, share, coef, base, step, lower, upper, out):
    for i in range(u.size):
        out[i] = _outcome_at(kind, u[i], share[i], coef, base, step, lower, upper)


@numba.njit(nogil=True, cache=True)
def _target_means_kernel(
    kind, u, target, dose1, share, coef1, share0, coef0, base, step, lower, upper, m1, m0, n
):
    n_rep, n_people = u.shape
    for r in range(n_rep):
        s1 = 0.0
        s0 = 0.0
        k = 0
        for i in range(n_people):
            if target[r, i]:
                s1 += _outcome_at(
                    kind, u[r, i], share * dose1[r, i], coef1, base, step, lower, upper
                )
                s0 += _outcome_at(kind, u[r, i], share0, coef0, base, step, lower, upper)
                k += 1
        n[r] = k
        m1[r] = s1 / k if k > 0 else np.nan
        m0[r] = s0 / k if k > 0 else np.nan


def by_visit(baseline, followup, n_visits: int) -> np.ndarray:
    """(B, N, V) array holding ``baseline`` at visit 0 and ``followup`` at every later visit.

    ``followup`` is (B, N); ``baseline`` is (B, N) or a scalar. Stacking visit by visit is
    much faster than broadcasting a (B, N, 1) array against a (V,) one, where numpy's inner
    loop would run over the two or three visits only.
    """
    followup = np.asarray(followup)
    first = np.broadcast_to(np.asarray(baseline, dtype=followup.dtype), followup.shape)
    return np.stack([first] + [followup] * (n_visits - 1), axis=-1)


def effect_shares(o, n_visits: int) -> np.ndarray:
    """Share of the full effect at each visit (default: none at baseline, all afterwards)."""
    if o.effect_by_visit is not None:
        return np.asarray(o.effect_by_visit, dtype=float)
    return np.r_[0.0, np.ones(n_visits - 1)]


def final_effect_share(o) -> float:
    """Share of the full effect at the final visit (:func:`effect_shares`)."""
    return 1.0 if o.effect_by_visit is None else float(o.effect_by_visit[-1])


def favourable_sign(o) -> float:
    return 1.0 if o.better == "higher" else -1.0

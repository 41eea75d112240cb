"""PyMC models of a trial: partially nested, cluster-randomised / stepped-wedge, dose-response.

All models share one linear predictor (the ANCOVA design of
:func:`trialsim.analyse.prepare.ancova_arrays`: intercept, treatment, centred baseline,
municipality strata, period effects) plus a random intercept:

- ``partially-nested``: a random effect of the treatment group, in the treated arm only
  (controls are not clustered); Baldwin et al. (2011) Psychol Methods 16:149;
- ``cluster`` / ``stepped-wedge``: a random effect of the randomised cluster (municipality
  or cohort) for everybody; stepped wedge adds period effects (Hussey & Hughes 2007);
- with more than two arms the design holds every arm (the contrast's arm is ``effect``); each
  other arm's effect gets the same prior, and ``arm_effects`` holds them all (outcome units);
- ``dose``: the partially nested model plus a slope in the attended fraction of sessions within
  the treated arm (associational: attendance is chosen after randomisation).

Random effects are non-centred (``tau * z``, ``z ~ N(0, 1)``), which samples well when groups
are small and ``tau`` is poorly identified (Betancourt & Girolami 2015). Priors: the effect
gets the named prior (:mod:`trialsim.bayes.priors`), the other coefficients are flat,
``log sigma`` is flat (Jeffreys' prior on the residual SD) and ``tau`` a half-normal or
half-t (:class:`trialsim.bayes.fast.ScalePrior`) - exactly the priors of the exact fast
posterior, so the two agree. The Student-t residual option adds ``nu ~ Gamma(2, 0.1)``
(Juárez & Steel 2010, J Bus Econ Stat 28:2).

Inside the model the outcome is standardised (``(y - mean) / sd``); priors are rescaled
accordingly, which is an exact reparametrisation (flat and Jeffreys priors are invariant; a
normal prior and a half-normal scale are divided by ``sd``). Prior parameters are ``pm.Data``
so that one compiled model serves every dataset of the same shape.

With normal residuals the likelihood is written with sufficient statistics (weighted cross-
products of the design, the outcome and the random-effect units, see
:func:`sufficient_statistics`): the same log density as the sum over participants, but a tiny
graph whose data shapes do not depend on the number of participants, so it compiles and samples
faster. Student-t residuals keep one row per participant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trialsim.analyse.prepare import ModelArrays
from trialsim.bayes.fast import ScalePrior
from trialsim.bayes.priors import EffectPrior
from trialsim.errors import UserError

MODELS = ("partially-nested", "cluster", "stepped-wedge", "dose", "repeated")
RESIDUALS = ("normal", "student-t")


@dataclass(frozen=True)
class ModelInput:
    """One dataset ready for a PyMC model.

    Every participant keeps a row; ``weight`` is 1 for complete cases and 0 otherwise, so all
    replicates of a scenario have the same shapes and share one compiled model.
    """

    kind: str
    y: np.ndarray  # (n,) outcome, 0 where not used
    X: np.ndarray  # (n, p); column ``coef`` is the treatment
    weight: np.ndarray  # (n,) 1 = complete case
    columns: tuple[str, ...]
    coef: int
    cluster: np.ndarray  # (n,) random-effect unit 0..G-1, -1 none
    n_clusters: int
    y_centre: float
    y_scale: float
    # multi-arm trials: positions in ``beta_other`` of the other non-reference arms'
    # coefficients (they get the effect's prior too) and the arms of ``arm_effects``
    arm_index: tuple[int, ...] = ()
    arm_order: tuple[int, ...] = ()  # column of each non-reference arm (structure order)
    # several random-intercept terms (repeated measures): (name, unit (n,), n_units) each;
    # empty for the one-term models, whose term is ``cluster``
    terms: tuple[tuple[str, np.ndarray, int], ...] = ()
    # per term of ``terms``: centred parametrisation (``u ~ N(0, tau)``) instead of the
    # non-centred ``tau * z``; better where each unit has several informative rows
    centred: tuple[bool, ...] = ()

    @property
    def random_terms(self) -> tuple[tuple[str, np.ndarray, int], ...]:
        """Every random-intercept term as (name, unit 0..G-1 or -1, G)."""
        if self.terms:
            return self.terms
        return (
            (
                "cluster" if self.kind in ("cluster", "stepped-wedge") else "group",
                self.cluster,
                self.n_clusters,
            ),
        )

    @property
    def shape_key(self) -> tuple[int, ...]:
        return (len(self.y), self.X.shape[1], *(g for _, _, g in self.random_terms))

    @property
    def n_used(self) -> int:
        return int(self.weight.sum())


def model_input(a: ModelArrays, rep: int, kind: str = "partially-nested") -> ModelInput:
    """Arrays of replicate ``rep`` for model ``kind`` (complete cases weighted 1)."""
    if kind not in MODELS:
        raise ValueError(f"unknown model {kind!r}; choose from {', '.join(MODELS)}")
    if kind == "repeated":
        raise ValueError("the repeated-measures model takes its rows from terms_input")
    keep = a.mask[rep]
    X = np.where(keep[:, None], a.X[rep], 0.0)
    columns = list(a.columns)
    if kind in ("cluster", "stepped-wedge"):
        units = a.cluster
        if (units[rep] < 0).all():
            raise UserError(
                f"the {kind} model needs randomised clusters (municipality, cohort or stepped-"
                "wedge data); use --model partially-nested for individual randomisation"
            )
    else:
        units = a.group
    if kind == "dose":
        fraction = a.attended_fraction[rep]
        treated = a.treated[rep] & keep
        centre = fraction[treated].mean() if treated.any() else 0.0
        X = np.column_stack([X, np.where(treated, fraction - centre, 0.0)])
        columns.append("attended_fraction_centred")
    n_used = int(keep.sum())
    if n_used < X.shape[1] + 2:
        raise UserError(
            f"only {n_used} complete cases for {X.shape[1]} coefficients: too few to fit"
        )
    y_used = a.y[rep, keep]
    cluster, n_units = _relabel(units[rep])
    # the other non-reference arms (joint design): their columns, and every arm's column in
    # the order of the structure's arms (the contrast's arm is column coef)
    coef = a.treat_column
    other_cols = [j for j in range(X.shape[1]) if j != coef]
    arm_cols = [j for j, c in enumerate(columns) if c.startswith("arm[")]
    arm_index = tuple(other_cols.index(j) for j in arm_cols)
    return ModelInput(
        arm_index=arm_index,
        arm_order=(coef, *arm_cols),
        kind=kind,
        y=np.where(keep, a.y[rep], 0.0),
        X=X,
        weight=keep.astype(float),
        columns=tuple(columns),
        coef=a.treat_column,
        cluster=cluster,
        n_clusters=n_units,
        y_centre=float(y_used.mean()),
        y_scale=float(y_used.std()) or 1.0,
    )


def _relabel(unit: np.ndarray) -> tuple[np.ndarray, int]:
    """Units of one replicate relabelled 0..G-1 (every row's unit, used or not, so that
    replicates and files of one design have the same shapes and share a compiled model)."""
    present, index = np.unique(unit[unit >= 0], return_inverse=True)
    out = np.full(unit.shape, -1)
    out[unit >= 0] = index
    return out, max(len(present), 1)


def terms_input(
    Xy: np.ndarray,
    used: np.ndarray,
    columns: tuple[str, ...],
    terms: tuple[tuple[str, np.ndarray], ...],
    rep: int = 0,
    kind: str = "repeated",
    centred: tuple[bool, ...] | None = None,
) -> ModelInput:
    """Replicate ``rep`` of a design with any random-intercept terms (the layout of
    :class:`trialsim.analyse.formula.FormulaArrays`: ``Xy`` (R, M, p + 1) zero outside
    ``used``, column 1 the effect; ``terms`` (name, ids (R, M)) with -1 for none), e.g. the
    repeated-measures model, one row per participant and visit. ``centred``: per term, the
    centred parametrisation (default none)."""
    keep = np.asarray(used[rep], dtype=bool)
    X, y = Xy[rep, :, :-1], Xy[rep, :, -1]
    n_used = int(keep.sum())
    if n_used < X.shape[1] + 2:
        raise UserError(
            f"only {n_used} rows with the outcome for {X.shape[1]} coefficients: too few to fit"
        )
    relabelled = []
    for name, ids in terms:
        unit, n_units = _relabel(np.asarray(ids[rep]))
        relabelled.append((name, unit, n_units))
    y_used = y[keep]
    # every column but the intercept centred over the rows used: the slopes (the effect
    # among them) are unchanged, the intercept is no longer correlated with them in the
    # posterior, which NUTS with a diagonal mass matrix needs to mix well
    X = X - np.where(np.arange(X.shape[1]) > 0, X[keep].mean(axis=0), 0.0)
    first = relabelled[0] if relabelled else ("none", np.full(len(y), -1), 1)
    arm_cols = [j for j, c in enumerate(columns) if c.startswith("arm[")]
    other_cols = [j for j in range(X.shape[1]) if j != 1]
    return ModelInput(
        kind=kind,
        y=np.where(keep, y, 0.0),
        X=np.where(keep[:, None], X, 0.0),
        weight=keep.astype(float),
        columns=tuple(columns),
        coef=1,
        cluster=first[1],
        n_clusters=first[2],
        y_centre=float(y_used.mean()),
        y_scale=float(y_used.std()) or 1.0,
        arm_index=tuple(other_cols.index(j) for j in arm_cols),
        arm_order=(1, *arm_cols),
        terms=tuple(relabelled),
        centred=tuple(centred) if centred is not None else (False,) * len(relabelled),
    )


def _suffix(data: ModelInput, name: str) -> str:
    """Names of a term's variables: ``tau_z``, ``z`` for the one-term models of
    :func:`model_input`, ``tau_z_<term>``, ``z_<term>`` for the terms of :func:`terms_input`."""
    return f"_{name}" if data.terms else ""


def _term_priors(data: ModelInput, group_prior: ScalePrior, term_priors) -> tuple:
    priors = tuple(term_priors) if term_priors else (group_prior,) * len(data.random_terms)
    if len(priors) != len(data.random_terms):
        raise ValueError(f"{len(data.random_terms)} random terms need as many SD priors")
    return priors


def _prior_data(
    data: ModelInput, prior: EffectPrior, group_prior: ScalePrior, term_priors=None
) -> dict:
    s = data.y_scale
    out = {
        "prior_mean": np.asarray(0.0 if prior.flat else prior.mean / s),
        "prior_sd": np.asarray(1.0 if prior.flat else prior.sd / s),
        "y_scale": np.asarray(s),
    }
    for (name, _, _), tp in zip(
        data.random_terms, _term_priors(data, group_prior, term_priors), strict=True
    ):
        out[f"tau_scale{_suffix(data, name)}"] = np.asarray(tp.scale / s)
    return out


def _row_values(data: ModelInput) -> dict:
    other = [j for j in range(data.X.shape[1]) if j != data.coef]
    Xo = data.X[:, other].copy()
    Xo[:, 0] = 1.0  # the intercept absorbs the centring of y
    out = {
        "y": np.where(data.weight > 0, (data.y - data.y_centre) / data.y_scale, 0.0),
        "weight": data.weight,
        "X_other": Xo,
        "treat": data.X[:, data.coef].astype(float),
    }
    for name, unit, _ in data.random_terms:
        sfx = _suffix(data, name)
        out[f"unit{sfx}"] = np.maximum(unit, 0).astype(float)  # float: one nutpie buffer
        out[f"has_unit{sfx}"] = (unit >= 0).astype(float)
    return out


def _indicator(unit: np.ndarray, n_units: int) -> np.ndarray:
    Z = np.zeros((len(unit), n_units))
    rows = np.flatnonzero(unit >= 0)
    Z[rows, unit[rows]] = 1.0
    return Z


def sufficient_statistics(data: ModelInput) -> dict:
    """Weighted cross-products that determine the Gaussian log-likelihood exactly.

    With ``A = [X_other, treat]``, ``W = diag(weight)`` and ``Z_k`` the (n, G_k) indicator of
    random-intercept term k's units (zero rows for participants without one), the residual
    sum of squares of ``y - A b - sum_k tau_k Z_k z_k`` is ``y'Wy - 2 b'A'Wy + b'A'WA b
    - 2 sum_k tau_k z_k'(Z_k'Wy - Z_k'WA b) + sum_k tau_k^2 z_k' diag(Z_k'WZ_k) z_k
    + 2 sum_{k<l} tau_k tau_l z_k' Z_k'WZ_l z_l``: the likelihood needs only these small
    arrays, whatever the number of rows (the usual sufficient-statistic reduction of the
    linear mixed model, e.g. Gelman et al. 2013, Bayesian Data Analysis, 3rd ed., §14.2).
    """
    v = _row_values(data)
    w, y = v["weight"], v["y"]
    A = np.column_stack([v["X_other"], v["treat"]])
    WA, Wy = A * w[:, None], y * w
    out = {
        "n_obs": np.asarray(w.sum()),
        "yWy": np.asarray(y @ Wy),
        "AWy": A.T @ Wy,
        "AWA": A.T @ WA,
    }
    Z = [_indicator(unit, g) for _, unit, g in data.random_terms]
    names = [_suffix(data, name) for name, _, _ in data.random_terms]
    for k, (Zk, sfx) in enumerate(zip(Z, names, strict=True)):
        WZ = Zk * w[:, None]
        out[f"ZWy{sfx}"] = Zk.T @ Wy
        out[f"ZWA{sfx}"] = WZ.T @ A
        out[f"n_unit{sfx}"] = WZ.sum(axis=0)
        for l_ in range(k + 1, len(Z)):
            out[f"ZWZ{sfx}{names[l_]}"] = WZ.T @ Z[l_]
    return out


def uses_sufficient_statistics(residual: str) -> bool:
    """Normal residuals: the likelihood is written with sufficient statistics (tiny graph,
    fast compilation, one compiled model for every n); Student-t needs the rows."""
    return residual == "normal"


def data_values(
    data: ModelInput,
    prior: EffectPrior,
    group_prior: ScalePrior,
    residual: str = "normal",
    term_priors=None,
) -> dict:
    """Values of every ``pm.Data`` of the model for ``data`` (for reuse of a compiled model)."""
    if uses_sufficient_statistics(residual):
        values = sufficient_statistics(data)
    else:
        values = _row_values(data)
    return {**values, **_prior_data(data, prior, group_prior, term_priors)}


def build_model(
    data: ModelInput,
    *,
    prior: EffectPrior,
    group_prior: ScalePrior,
    residual: str = "normal",
    term_priors: tuple[ScalePrior, ...] | None = None,
):
    """The PyMC model for ``data`` (see the module docstring for its structure).

    The effect is ``effect`` in outcome units; ``tau`` the group (cluster) SD and ``sigma``
    the residual SD, both in outcome units; ``beta_other`` are the other coefficients on the
    standardised scale (in the order of ``data.columns`` without the treatment). With several
    random-intercept terms (``data.terms``, e.g. participant and group in repeated measures)
    each term ``t`` has its SD ``sd_<t>`` (outcome units) with the prior ``term_priors[k]``
    (default ``group_prior`` for every term).
    """
    import pymc as pm

    if residual not in RESIDUALS:
        raise ValueError(f"--residual must be one of {', '.join(RESIDUALS)}, got {residual!r}")
    priors = _term_priors(data, group_prior, term_priors)
    values = data_values(data, prior, group_prior, residual, priors)
    sufficient = uses_sufficient_statistics(residual)
    p_other = (values["AWA"].shape[0] - 1) if sufficient else values["X_other"].shape[1]
    with pm.Model() as model:
        d = {k: pm.Data(k, v) for k, v in values.items()}
        s = d["y_scale"]
        beta_other = pm.Flat("beta_other", shape=p_other)
        if prior.flat:
            effect_z = pm.Flat("effect_z")
        else:
            effect_z = pm.Normal("effect_z", mu=d["prior_mean"], sigma=d["prior_sd"])
        log_sigma = pm.Flat("log_sigma")
        sigma_z = pm.math.exp(log_sigma)
        random = []  # (suffix, tau_z, z, multiplier of z in the linear predictor) per term
        centred = data.centred or (False,) * len(priors)
        for (name, _, n_units), tp, c in zip(data.random_terms, priors, centred, strict=True):
            sfx = _suffix(data, name)
            if tp.family == "half-normal":
                tau_z = pm.HalfNormal(f"tau_z{sfx}", sigma=d[f"tau_scale{sfx}"])
            else:
                tau_z = pm.HalfStudentT(f"tau_z{sfx}", nu=tp.nu, sigma=d[f"tau_scale{sfx}"])
            if c:  # z is the intercept itself, u ~ N(0, tau)
                random.append((sfx, tau_z, pm.Normal(f"z{sfx}", 0.0, tau_z, shape=n_units), 1.0))
            else:
                z = pm.Normal(f"z{sfx}", 0.0, 1.0, shape=n_units)
                random.append((sfx, tau_z, z, tau_z))
        if sufficient:
            pm.Potential("loglik", _normal_loglik(d, beta_other, effect_z, log_sigma, random))
        else:
            mu = pm.math.dot(d["X_other"], beta_other) + effect_z * d["treat"]
            for sfx, _, z, mult in random:
                mu = mu + d[f"has_unit{sfx}"] * mult * z[d[f"unit{sfx}"].astype("int64")]
            # weighted log-likelihood: rows with weight 0 (not complete cases) contribute nothing
            nu = pm.Gamma("nu", alpha=2.0, beta=0.1)
            dist = pm.StudentT.dist(nu=nu, mu=mu, sigma=sigma_z)
            pm.Potential("loglik", (d["weight"] * pm.logp(dist, d["y"])).sum())
        if data.arm_index:
            # multi-arm: every arm's effect gets the effect's prior; arm_effects (outcome units)
            # in the order of data.arm_order (the contrast's arm first)
            import pytensor.tensor as pt

            others = beta_other[list(data.arm_index)]
            if not prior.flat:
                normal = pm.Normal.dist(mu=d["prior_mean"], sigma=d["prior_sd"])
                pm.Potential("arm_prior", pm.logp(normal, others).sum())
            pm.Deterministic("arm_effects", pt.concatenate([effect_z[None], others]) * s)
        pm.Deterministic("effect", effect_z * s)
        pm.Deterministic("sigma", sigma_z * s)
        for sfx, tau_z, _, _ in random:
            pm.Deterministic(f"sd{sfx}" if sfx else "tau", tau_z * s)
        if data.kind == "dose":
            pm.Deterministic("dose_slope", beta_other[-1] * s)
    return model


def _normal_loglik(d, beta_other, effect_z, log_sigma, random):
    """Gaussian log-likelihood from :func:`sufficient_statistics` (equal to the sum over
    complete cases of ``log N(y_i | mu_i, sigma)``); ``random`` (suffix, tau, z, multiplier
    of z: tau when non-centred, 1 when centred) per term."""
    import pytensor.tensor as pt

    b = pt.concatenate([beta_other, effect_z[None]])
    rss = d["yWy"] - 2.0 * pt.dot(b, d["AWy"]) + pt.dot(b, pt.dot(d["AWA"], b))
    for k, (sfx, _, z, m) in enumerate(random):
        cross = pt.dot(z, d[f"ZWy{sfx}"] - pt.dot(d[f"ZWA{sfx}"], b))
        rss = rss - 2.0 * m * cross + m**2 * pt.dot(d[f"n_unit{sfx}"], z**2)
        for sfx_l, _, z_l, m_l in random[k + 1 :]:
            rss = rss + 2.0 * m * m_l * pt.dot(z, pt.dot(d[f"ZWZ{sfx}{sfx_l}"], z_l))
    n = d["n_obs"]
    return -n * (log_sigma + 0.5 * np.log(2.0 * np.pi)) - 0.5 * rss * pt.exp(-2.0 * log_sigma)

"""Named analyses: each maps (TrialData, outcome) to a batched :class:`Estimates`.

``estimand`` says what the analysis targets, so simulation can score bias and coverage:
``"itt"`` the intention-to-treat effect (mean difference; marginal log rate ratio for counts;
marginal log odds ratio for binary outcomes), ``"full_dose"`` the effect at full attendance,
``"compliers"`` the ITT effect in the treated who attend at least the per-protocol threshold,
``None`` when the target is not defined by the simulated trial (bias is then not scored);
see :mod:`trialsim.power.estimand` (computed from each simulated trial's potential outcomes)
and :func:`trialsim.power.simulation.true_effect` (its closed form where one exists).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from trialsim.analyse.estimate import Estimates
from trialsim.analyse.prepare import ancova_arrays
from trialsim.data import TrialData
from trialsim.errors import UserError
from trialsim.structure import TrialStructure


@dataclass(frozen=True)
class Analysis:
    name: str
    run: Callable[[TrialData, str], Estimates]
    description: str
    estimand: str | None = "itt"
    gaussian: bool = True  # for continuous (bounded) outcomes; False: counts / binary
    # fits every arm in one model (a contrast's estimate then borrows the other arms'
    # residual variance and covariate slopes); False: compares two arms at a time
    joint: bool = False
    # the joint Gaussian fit behind the estimates, for Dunnett's adjustment: (data, outcome)
    # -> (Fitted, arm columns); None when the analysis is not one linear (mixed) model
    joint_fit: Callable[[TrialData, str], tuple] | None = None
    # the model in lme4 notation: (structure, outcome) -> text; None: not a formula model
    formula: Callable[[TrialStructure, str], str] | None = None
    # a REML mixed model whose run (and joint_fit) take ``df="kenward-roger"``
    kenward_roger: bool = False
    # small-sample df (and SE) method: "satterthwaite" (each analysis's own) or "kenward-roger"
    df: str = "satterthwaite"

    def with_df(self, df: str) -> Analysis:
        """This analysis with small-sample method ``df``: ``"satterthwaite"`` (as it is) or
        ``"kenward-roger"`` (Kenward-Roger adjusted SE and df; REML mixed models only)."""
        from functools import partial

        from trialsim.analyse.kenward_roger import check_df_method

        if check_df_method(df) == self.df:
            return self
        if not self.kenward_roger:
            usable = ", ".join(n for n, a in ANALYSES.items() if a.kenward_roger)
            raise UserError(
                f"--df {df}: the {self.name} analysis is not a REML mixed model; use it with "
                f"one of {usable} (or --formula), or leave out --df"
            )
        joint_fit = None if self.joint_fit is None else partial(self.joint_fit, df=df)
        return replace(self, run=partial(self.run, df=df), joint_fit=joint_fit, df=df)

    def estimate(self, data: TrialData, outcome: str) -> Estimates:
        """The estimate of ``data.contrast`` against the reference arm."""
        return self.run(data if self.joint else data.two_arms(), outcome)

    def model(self, structure: TrialStructure, outcome: str) -> str | None:
        """The model in lme4 notation, printed with every result (None when there is none)."""
        if self.formula is not None:
            return self.formula(structure, outcome)
        return default_formula(self.name, structure, outcome)


def _mixed(data: TrialData, outcome: str, df: str = "satterthwaite") -> Estimates:
    return _joint_mixed(data, outcome, df)[0].estimates


def _mixed_singleton(data: TrialData, outcome: str, df: str = "satterthwaite") -> Estimates:
    return _joint_mixed_singleton(data, outcome, df)[0].estimates


def _mixed_cluster(data: TrialData, outcome: str, df: str = "satterthwaite") -> Estimates:
    return _joint_mixed_cluster(data, outcome, df)[0].estimates  # it checks the clusters


def same_partition(cluster: np.ndarray, group: np.ndarray) -> bool:
    """True when ``cluster`` and ``group`` (R, N; -1 = none) split every replicate's
    participants identically (a model with both terms is not identifiable)."""
    if ((cluster < 0) != (group < 0)).any():
        return False
    for c, g in zip(cluster, group, strict=True):
        pairs = np.unique(np.stack([c, g]), axis=1)
        if len(np.unique(pairs[0])) != pairs.shape[1] or len(np.unique(pairs[1])) != pairs.shape[1]:
            return False
    return True


def _ancova(data: TrialData, outcome: str) -> Estimates:
    from trialsim.analyse.ols import fit_ols

    a = ancova_arrays(data, outcome)
    return fit_ols(a.y, a.X, a.mask, analysis="ancova")


def _cr2(data: TrialData, outcome: str) -> Estimates:
    from trialsim.analyse.ols import fit_ols_cluster

    a = ancova_arrays(data, outcome)
    cluster = np.where(a.cluster >= 0, a.cluster, a.group)  # -1: each control its own cluster
    return fit_ols_cluster(a.y, a.X, cluster, a.mask, vcov="CR2", analysis="cr2")


def _cluster_level(data: TrialData, outcome: str) -> Estimates:
    from trialsim.analyse.cluster_level import cluster_level_ttest

    return cluster_level_ttest(data, outcome)


def _mar_formula(st: TrialStructure, outcome: str) -> str:
    from trialsim.analyse.mar import mar_spec

    return f"{mar_spec(st, outcome).lme4()} [attendance_c where attendance is recorded]"


def _from(module: str, function: str) -> Callable[..., Estimates]:
    def run(data: TrialData, outcome: str, **options) -> Estimates:
        import importlib

        return getattr(importlib.import_module(module), function)(data, outcome, **options)

    return run


ANALYSES: dict[str, Analysis] = {
    a.name: a
    for a in [
        Analysis(
            "mixed",
            _mixed,
            "partially nested mixed model: random group intercept in the treated arm only, "
            "REML, Satterthwaite df (default for individual randomisation)",
            joint=True,
            kenward_roger=True,
        ),
        Analysis(
            "mixed-singleton",
            _mixed_singleton,
            "mixed model where each control is its own cluster (homoscedastic variant)",
            joint=True,
            kenward_roger=True,
        ),
        Analysis(
            "mixed-cluster",
            _mixed_cluster,
            "random intercepts for the randomised cluster (cohort / municipality) and for "
            "the treatment groups nested in it (a group spanning clusters counts once per "
            "cluster), period effects in a stepped wedge; REML, Satterthwaite df",
            joint=True,
            kenward_roger=True,
        ),
        Analysis(
            "ancova",
            _ancova,
            "ANCOVA ignoring clustering (shows the inflated type-I error)",
            joint=True,
        ),
        Analysis("cr2", _cr2, "OLS with cluster-robust CR2 SEs and Bell-McCaffrey df", joint=True),
        Analysis(
            "cluster-level",
            _cluster_level,
            "t test on cluster means of baseline-adjusted residuals (few clusters)",
        ),
        Analysis(
            "complete-case",
            _from("trialsim.analyse.missing", "complete_case"),
            "ANCOVA on participants measured at the final visit",
        ),
        Analysis(
            "mar",
            _from("trialsim.analyse.mar", "mar_repeated"),
            "likelihood-based analysis under missing at random: the repeated-measures model "
            "plus the attended fraction (centred in each arm, a slope per visit) where "
            "attendance is recorded; effect at the last visit; REML, Satterthwaite df",
            joint=True,
            kenward_roger=True,
            joint_fit=_from("trialsim.analyse.mar", "mar_joint_fit"),
            formula=_mar_formula,
        ),
        Analysis(
            "repeated",
            _from("trialsim.analyse.repeated", "repeated_measures"),
            "repeated measures: every post-baseline visit, visit effects, a random intercept "
            "per participant (and per group / cluster); effect at the last visit "
            "(--estimand average|constant for the others); REML, Satterthwaite df",
            joint=True,
            kenward_roger=True,
        ),
        Analysis(
            "per-protocol",
            _from("trialsim.analyse.attendance", "per_protocol"),
            "treated with enough attendance vs controls (biased by self-selection)",
            estimand="compliers",
        ),
        Analysis(
            "as-treated",
            _from("trialsim.analyse.attendance", "as_treated"),
            "outcome on attended fraction (biased by self-selection)",
            estimand="full_dose",
        ),
        Analysis(
            "cace-dose",
            _from("trialsim.analyse.attendance", "cace_dose"),
            "instrumental variables: effect of full attendance (randomisation as instrument)",
            estimand="full_dose",
        ),
        Analysis(
            "cace-binary",
            _from("trialsim.analyse.attendance", "cace_compliance"),
            "instrumental variables: effect in those attending at least the threshold",
            estimand="compliers",
        ),
        Analysis(
            "poisson",
            _from("trialsim.analyse.glm", "poisson_rate_ratio"),
            "Poisson GLM for counts (log rate ratio); Mancl-DeRouen (CR3) cluster-robust SE, "
            "Bell-McCaffrey df",
            gaussian=False,
        ),
        Analysis(
            "logistic",
            _from("trialsim.analyse.glm", "logistic_odds_ratio"),
            "logistic GLM for binary outcomes, standardised to the marginal log odds ratio; "
            "CR2 cluster-robust SE, Bell-McCaffrey df",
            gaussian=False,
        ),
        Analysis(
            "gee-poisson",
            _from("trialsim.analyse.gee", "gee_poisson_rate_ratio"),
            "Poisson GEE, exchangeable correlation within treatment groups (controls alone); "
            "Mancl-DeRouen SE, Bell-McCaffrey df",
            gaussian=False,
        ),
        Analysis(
            "gee-logistic",
            _from("trialsim.analyse.gee", "gee_logistic_odds_ratio"),
            "logistic GEE, exchangeable correlation within treatment groups (controls alone), "
            "marginal log odds ratio; CR2 SE, Bell-McCaffrey df",
            gaussian=False,
        ),
        Analysis(
            "lmm",
            _from("trialsim.analyse.lmm_terms", "lmm_analysis"),
            "mixed model with a random intercept for every grouping the structure has: "
            "delivery groups (one variance per arm with groups when the variance is by arm), "
            "randomised clusters that are not the groups, trainers (crossed); REML, "
            "Satterthwaite df",
            joint=True,
            kenward_roger=True,
        ),
    ]
}


@dataclass(frozen=True)
class DefaultChoice:
    """The analysis the trial's structure calls for, and why (printed with results)."""

    name: str
    reason: str

    def line(self) -> str:
        return f"analysis: {self.name} (default: {self.reason})"


def default_analysis(structure: TrialStructure, outcome: str) -> DefaultChoice:
    """The one rule choosing the default analysis from the trial structure and the outcome.

    Every command (``analyse``, ``bayes``, ``power``, ``compare``, ``sweep``, ``assurance``,
    ``budget``, ``calibrate``) asks this function, so they cannot disagree.

    * counts: the Poisson GLM, binary outcomes: the logistic GLM (both with small-sample
      cluster-robust SEs over groups and clusters);
    * continuous outcomes, clusters randomised that hold several delivery groups (e.g.
      municipalities): the nested cluster mixed model ``mixed-cluster``;
    * continuous outcomes, delivery groups in two or more arms with a variance per arm (e.g.
      attention-control groups): ``lmm``, lme4's ``(0 + armA | group) + (0 + armB | group)``
      (plus trainers when recorded);
    * continuous outcomes, delivery groups (in any arm; a randomised cohort that is one group
      counts as a group): the mixed model ``mixed`` with a random intercept per group where
      groups exist (partially nested when only some arms have groups);
    * continuous outcomes with no groups and no randomised clusters: ``ancova``.
    """
    spec = structure.outcome(outcome)
    where = _clustering(structure)
    if spec.type == "count":
        return DefaultChoice("poisson", f"count outcome{where}")
    if spec.type == "binary":
        return DefaultChoice("logistic", f"binary outcome{where}")
    if structure.cluster_randomised and not structure.groups_are_clusters:
        return DefaultChoice(
            "mixed-cluster",
            f"{spec.type} outcome, {structure.cluster} randomised"
            + (", groups inside them" if structure.has_groups else ""),
        )
    if len(structure.group_arms) >= 2 and structure.group_variance == "by-arm":
        return DefaultChoice(
            "lmm", f"{spec.type} outcome, delivery groups {structure.groups_description}"
        )
    if structure.has_groups:
        return DefaultChoice(
            "mixed", f"{spec.type} outcome, delivery groups {structure.groups_description}"
        )
    return DefaultChoice("ancova", f"{spec.type} outcome, no groups or randomised clusters")


def _clustering(structure: TrialStructure) -> str:
    parts = []
    if structure.cluster_randomised:
        parts.append(f"{structure.cluster} randomised")
    if structure.has_groups:
        parts.append(f"delivery groups {structure.groups_description}")
    return f", cluster-robust over {' and '.join(parts)}" if parts else ""


def estimate_contrasts(
    analysis: Analysis, data: TrialData, outcome: str, *, arms: tuple[str, ...] | None = None
) -> pd.DataFrame:
    """One row per replicate and contrast (``arms``, default every non-reference arm, against
    the reference): ``contrast`` names it as ``"ARM - REFERENCE"``."""
    st = data.structure
    frames = []
    for arm in st.contrasts if arms is None else arms:
        frame = analysis.estimate(data.for_contrast(arm), outcome).to_frame(rep=data.rep)
        frame.insert(1, "contrast", f"{arm} - {st.reference}")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def resolve_analysis(analysis: str | Analysis) -> Analysis:
    """A named analysis from the registry, or an :class:`Analysis` itself (e.g. the model of
    a ``--formula``, :func:`formula_analysis`)."""
    return analysis if isinstance(analysis, Analysis) else get_analysis(analysis)


def get_analysis(name: str) -> Analysis:
    try:
        return ANALYSES[name]
    except KeyError:
        raise UserError(f"unknown analysis {name!r}; choose from {', '.join(ANALYSES)}") from None


# ---- the model in lme4 notation, joint fits (Dunnett), formula and repeated analyses ---------


def _fixed_text(st: TrialStructure, outcome: str) -> str:
    terms = ["arm"] + (["baseline"] if st.has_baseline else []) + list(st.covariates)
    if st.stratified and st.site is not None and not st.cluster_is_site:
        terms.append(st.site)
    if st.n_periods > 1:
        terms.append("period")
    return f"{outcome} ~ {' + '.join(terms)}"


def _group_text(st: TrialStructure, *, by_arm: bool = False) -> str:
    """The group term(s): one variance per arm with groups when ``by_arm`` (lme4's
    ``(0 + armA | group) + (0 + armB | group)``), else one for every group."""
    if by_arm and st.group_variance == "by-arm" and len(st.group_arms) > 1:
        return " + ".join(f"(0 + {_indicator(a)} | group)" for a in st.group_arms)
    return "(0 + treated | group)" if st.partially_nested else "(1 | group)"


def _indicator(arm: str) -> str:
    """An arm's indicator as lme4 would name it (``arm`` + label, back-quoted if needed)."""
    name = f"arm{arm}"
    return name if name.replace("_", "").replace(".", "").isalnum() else f"`{name}`"


def default_formula(name: str, st: TrialStructure, outcome: str) -> str | None:
    """The lme4 (or lm/glm) formula of a built-in analysis on this structure; None for the
    analyses that are not one regression model (IV, per-protocol, cluster-level)."""
    fixed = _fixed_text(st, outcome)
    groups = st.has_groups and not st.groups_are_clusters
    if name in ("ancova", "complete-case"):
        return fixed
    if name == "cr2":
        return f"{fixed}  [CR2 cluster-robust SEs]"
    if name == "mixed":
        unit = _group_text(st) if st.has_groups else "(1 | cluster)"
        return f"{fixed} + {unit}"
    if name == "mixed-singleton":
        return f"{fixed} + (1 | group, or participant outside groups)"
    if name == "mixed-cluster":
        return f"{fixed} + (1 | {st.cluster or 'cluster'})" + (
            f" + {_group_text(st)}" if groups else ""
        )
    if name == "lmm":
        terms = (
            [f"(1 | {st.cluster})"] if st.cluster_randomised and not st.groups_are_clusters else []
        )
        terms += [_group_text(st, by_arm=True)] if st.has_groups else []
        terms += ["(1 | trainer)"] if st.trainers and st.has_groups else []
        return " + ".join([fixed, *terms])
    if name in ("poisson", "logistic"):
        family = "poisson" if name == "poisson" else "binomial"
        return f"glm({fixed}, family = {family})  [cluster-robust SEs]"
    if name in ("gee-poisson", "gee-logistic"):
        family = "poisson" if name == "gee-poisson" else "binomial"
        return f"geeglm({fixed}, family = {family}, id = group, corstr = 'exchangeable')"
    if name == "repeated":
        from trialsim.analyse.repeated import repeated_spec

        return repeated_spec(st, outcome, "last").lme4()
    return None


def _arm_columns(columns: tuple[str, ...], data: TrialData) -> list[int]:
    """Column of each non-reference arm in an ``ancova_arrays`` design (-1: absent)."""
    st = data.structure
    out = []
    for k in range(1, st.n_arms):
        name = "treatment" if k == data.contrast else f"arm[{st.arms[k]}]"
        out.append(columns.index(name) if name in columns else -1)
    return out


def _joint_ancova(data: TrialData, outcome: str):
    from trialsim.analyse.fitting import fit_terms

    a = ancova_arrays(data, outcome)
    return fit_terms(a.Xy, a.mask, (), analysis="ancova"), _arm_columns(a.columns, data)


def _joint_mixed(data: TrialData, outcome: str, df: str = "satterthwaite"):
    from trialsim.analyse.fitting import Fitted
    from trialsim.analyse.reml import fit_reml_masked

    a = ancova_arrays(data, outcome)
    fit = fit_reml_masked(a.Xy, a.group, a.mask, analysis="mixed", df=df)
    return Fitted(fit.estimates, fit.beta, fit.cov_beta, "reml"), _arm_columns(a.columns, data)


def _joint_mixed_cluster(data: TrialData, outcome: str, df: str = "satterthwaite"):
    """Random cluster and group intercepts: the nested engine (Satterthwaite df), the general
    one for Kenward-Roger df (the same REML fit)."""
    from trialsim.analyse.fitting import Fitted
    from trialsim.analyse.reml_nested import check_nesting, fit_reml_nested
    from trialsim.analyse.reml_nested import split_groups_by_cluster as split

    a = ancova_arrays(data, outcome)
    if (a.cluster < 0).all():
        raise UserError(
            "mixed-cluster needs randomised clusters (a cluster column: cohort, municipality, "
            "school, ...); these data randomised people: use 'mixed'"
        )
    if same_partition(a.cluster, a.group):
        raise UserError(
            "mixed-cluster: every randomised cluster is exactly one delivery group, so the "
            "cluster and group variances cannot both be estimated; use 'mixed' (one random "
            "intercept per group)"
        )
    group = a.group
    try:
        check_nesting(a.cluster, group)
    except ValueError:  # real data with a group across clusters: one group per cluster part
        group = split(a.cluster, group)
    if df == "satterthwaite":
        fit = fit_reml_nested(a.Xy, a.cluster, group, a.mask, analysis="mixed-cluster")
    else:
        from trialsim.analyse.lmm import fit_lmm

        terms = [("cluster", a.cluster), ("group", group)]
        fit = fit_lmm(a.Xy, terms, a.mask, analysis="mixed-cluster", df=df)
    return Fitted(fit.estimates, fit.beta, fit.cov_beta, "reml"), _arm_columns(a.columns, data)


def _joint_mixed_singleton(data: TrialData, outcome: str, df: str = "satterthwaite"):
    from trialsim.analyse.fitting import Fitted
    from trialsim.analyse.reml import fit_reml_masked

    a = ancova_arrays(data, outcome)
    n_groups = int(a.group.max(initial=-1)) + 1
    unit = np.where(a.group >= 0, a.group, n_groups + np.arange(a.group.shape[1]))
    fit = fit_reml_masked(a.Xy, unit, a.mask, analysis="mixed-singleton", df=df)
    return Fitted(fit.estimates, fit.beta, fit.cov_beta, "reml"), _arm_columns(a.columns, data)


def _joint_lmm(data: TrialData, outcome: str, df: str = "satterthwaite"):
    """The joint fit of the ``lmm`` analysis (its terms from the structure)."""
    from trialsim.analyse.fitting import Fitted, fit_terms
    from trialsim.analyse.lmm import fit_lmm
    from trialsim.analyse.lmm_terms import structure_terms

    a = ancova_arrays(data, outcome)
    terms = structure_terms(data, a)
    if len(terms) < 2:
        fit = fit_terms(a.Xy, a.mask, tuple(terms), analysis="lmm", df=df)
    else:
        lmm = fit_lmm(a.Xy, terms, a.mask, analysis="lmm", df=df)
        fit = Fitted(lmm.estimates, lmm.beta, lmm.cov_beta, "lmm")
    return fit, _arm_columns(a.columns, data)


def _spec_joint_fit(make_spec):
    def joint_fit(data: TrialData, outcome: str, df: str = "satterthwaite"):
        from trialsim.analyse.fitting import fit_terms
        from trialsim.analyse.formula import model_arrays

        a = model_arrays(data, make_spec(data.structure, outcome))
        fit = fit_terms(a.Xy, a.used, a.terms, coef=a.coef, df=df)
        return fit, [a.arm_columns[k] for k in range(1, data.structure.n_arms)]

    return joint_fit


def _spec_run(make_spec, analysis: str):
    def run(data: TrialData, outcome: str, df: str = "satterthwaite") -> Estimates:
        from trialsim.analyse.fitting import fit_terms
        from trialsim.analyse.formula import model_arrays

        a = model_arrays(data, make_spec(data.structure, outcome))
        return fit_terms(a.Xy, a.used, a.terms, coef=a.coef, analysis=analysis, df=df).estimates

    return run


def repeated_analysis(estimand: str = "last") -> Analysis:
    """The ``repeated`` analysis with the treatment effect at the last visit, averaged over
    visits or constant over visits (see :mod:`trialsim.analyse.repeated`)."""
    from trialsim.analyse.repeated import ESTIMANDS, repeated_spec

    if estimand not in ESTIMANDS:
        raise UserError(f"--estimand {estimand!r}: choose one of {', '.join(ESTIMANDS)}")

    def make_spec(st, outcome):
        return repeated_spec(st, outcome, estimand)

    return Analysis(
        "repeated",
        _spec_run(make_spec, f"repeated({estimand})"),
        ANALYSES["repeated"].description,
        estimand="itt" if estimand == "last" else None,
        joint=True,
        kenward_roger=True,
        joint_fit=_spec_joint_fit(make_spec),
        formula=lambda st, outcome: make_spec(st, outcome).lme4(),
    )


def formula_analysis(spec) -> Analysis:
    """An analysis fitting the model of a :class:`~trialsim.analyse.formula.ModelSpec`
    (from ``--formula``) with the engine its random terms need."""

    def make_spec(st, outcome):
        return spec

    return Analysis(
        "formula",
        _spec_run(make_spec, "formula"),
        f"the model {spec.lme4()}",
        estimand=None if spec.repeated else "itt",
        joint=True,
        kenward_roger=True,
        joint_fit=_spec_joint_fit(make_spec),
        formula=lambda st, outcome: spec.lme4(),
    )


for _name, _fit in (
    ("ancova", _joint_ancova),
    ("mixed", _joint_mixed),
    ("mixed-singleton", _joint_mixed_singleton),
    ("lmm", _joint_lmm),
    ("mixed-cluster", _joint_mixed_cluster),
    ("repeated", repeated_analysis("last").joint_fit),
):
    ANALYSES[_name] = replace(ANALYSES[_name], joint_fit=_fit)


def adjust_contrasts(
    analysis: Analysis, data: TrialData, outcome: str, frame: pd.DataFrame, level: float = 0.95
) -> tuple[pd.DataFrame, list[str]]:
    """Add multiplicity-adjusted p-values to ``frame`` (from :func:`estimate_contrasts`, two or
    more contrasts): ``p_holm`` always; ``p_dunnett``, ``ci_low_dunnett``, ``ci_high_dunnett``
    when the analysis is one joint Gaussian model (its contrasts' correlation from that fit).
    Returns the frame and lines naming the adjustments."""
    from trialsim.analyse.multiplicity import correlation, dunnett, holm

    contrasts = list(dict.fromkeys(frame["contrast"]))
    k = len(contrasts)
    if k < 2:
        return frame, []
    wide = {c: frame[frame["contrast"] == c].reset_index(drop=True) for c in contrasts}
    p = np.column_stack([wide[c]["p_value"].to_numpy() for c in contrasts])
    out = []
    adjusted = holm(p)
    lines = [f"multiplicity: Holm over the {k} contrasts with {data.structure.reference} (p_holm)"]
    dun = None
    if analysis.joint_fit is not None and analysis.gaussian:
        arms = [c.split(" - ")[0] for c in contrasts]
        fit, columns = analysis.joint_fit(data.for_contrast(arms[0]), outcome)
        every = list(data.structure.contrasts)
        cols = [columns[every.index(a)] for a in arms]
        if all(c >= 0 for c in cols):
            cov = fit.cov_beta[:, cols][:, :, cols]
            est = np.column_stack([wide[c]["estimate"].to_numpy() for c in contrasts])
            se = np.column_stack([wide[c]["se"].to_numpy() for c in contrasts])
            df_all = np.column_stack([wide[c]["df"].to_numpy() for c in contrasts])
            df = df_all.min(axis=1)
            dun = dunnett(est, se, correlation(cov), df, level=level)
            method = "Kenward-Roger" if analysis.df == "kenward-roger" else "Satterthwaite"
            how = (
                "residual df"
                if fit.engine == "ols"
                else f"df the smallest {method} df of the contrasts (an approximation)"
            )
            lines.append(
                f"multiplicity: Dunnett single-step, multivariate t with the contrasts' "
                f"correlation from the joint fit, {how} (p_dunnett, simultaneous "
                f"{level:.0%} CI)"
            )
    if dun is None:
        lines.append(
            "multiplicity: Dunnett not available (not one joint Gaussian model); Holm only"
        )
    for j, c in enumerate(contrasts):
        part = wide[c].copy()
        part["p_holm"] = adjusted[:, j]
        if dun is not None:
            part["p_dunnett"] = dun[0][:, j]
            part["ci_low_dunnett"] = dun[1][:, j]
            part["ci_high_dunnett"] = dun[2][:, j]
        out.append(part)
    return pd.concat(out, ignore_index=True), lines

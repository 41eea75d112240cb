"""Named analyses: each maps (TrialData, outcome) to a batched :class:`Estimates`.

``estimand`` says what the analysis targets, so simulation can score bias and coverage:
``"itt"`` the intention-to-treat effect (mean difference; marginal log rate ratio for counts;
marginal log odds ratio for binary outcomes), ``"full_dose"`` the effect at full attendance,
``None`` when the target is not a simple function of the scenario (bias is then not scored);
see :func:`trialsim.power.simulation.true_effect`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trialsim.analyse.estimate import Estimates
from trialsim.analyse.prepare import ancova_arrays
from trialsim.data import TrialData
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

    def estimate(self, data: TrialData, outcome: str) -> Estimates:
        """The estimate of ``data.contrast`` against the reference arm."""
        return self.run(data if self.joint else data.two_arms(), outcome)


def _mixed(data: TrialData, outcome: str) -> Estimates:
    from trialsim.analyse.reml import fit_reml_masked

    a = ancova_arrays(data, outcome)
    return fit_reml_masked(a.Xy, a.group, a.mask, analysis="mixed").estimates


def _mixed_singleton(data: TrialData, outcome: str) -> Estimates:
    from trialsim.analyse.reml import fit_reml_masked

    a = ancova_arrays(data, outcome)
    n_groups = int(a.group.max(initial=-1)) + 1
    cluster = np.where(a.group >= 0, a.group, n_groups + np.arange(a.group.shape[1]))
    return fit_reml_masked(a.Xy, cluster, a.mask, analysis="mixed-singleton").estimates


def _mixed_cluster(data: TrialData, outcome: str) -> Estimates:
    from trialsim.analyse.reml_nested import check_nesting, fit_reml_nested
    from trialsim.analyse.reml_nested import split_groups_by_cluster as split

    a = ancova_arrays(data, outcome)
    if (a.cluster < 0).all():
        raise ValueError(
            "mixed-cluster needs randomised clusters (a cluster column: cohort, municipality, "
            "school, ...); these data randomised people: use 'mixed'"
        )
    if same_partition(a.cluster, a.group):
        raise ValueError(
            "mixed-cluster: every randomised cluster is exactly one delivery group, so the "
            "cluster and group variances cannot both be estimated; use 'mixed' (one random "
            "intercept per group)"
        )
    group = a.group
    try:
        check_nesting(a.cluster, group)
    except ValueError:  # real data with a group across clusters: one group per cluster part
        group = split(a.cluster, group)
    return fit_reml_nested(a.Xy, a.cluster, group, a.mask, analysis="mixed-cluster").estimates


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


def _from(module: str, function: str) -> Callable[[TrialData, str], Estimates]:
    def run(data: TrialData, outcome: str) -> Estimates:
        import importlib

        return getattr(importlib.import_module(module), function)(data, outcome)

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
        ),
        Analysis(
            "mixed-singleton",
            _mixed_singleton,
            "mixed model where each control is its own cluster (homoscedastic variant)",
            joint=True,
        ),
        Analysis(
            "mixed-cluster",
            _mixed_cluster,
            "random intercepts for the randomised cluster (cohort / municipality) and for "
            "the treatment groups nested in it (a group spanning clusters counts once per "
            "cluster), period effects in a stepped wedge; REML, Satterthwaite df",
            joint=True,
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
            _from("trialsim.analyse.missing", "mar_all_visits"),
            "likelihood-based MAR analysis using all visits (monotone factorisation)",
        ),
        Analysis(
            "per-protocol",
            _from("trialsim.analyse.attendance", "per_protocol"),
            "treated with enough attendance vs controls (biased by self-selection)",
            estimand=None,
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
            estimand=None,
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


def get_analysis(name: str) -> Analysis:
    try:
        return ANALYSES[name]
    except KeyError:
        raise ValueError(f"unknown analysis {name!r}; choose from {', '.join(ANALYSES)}") from None

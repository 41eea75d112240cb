"""Repeated measures: every post-baseline visit in one linear mixed model.

The model the structure calls for, in lme4 notation::

    y ~ arm + baseline + factor(visit) + covariates + site + period
        + (1 | participant) [+ (1 | group)] [+ (1 | cluster)]

one row per participant and post-baseline visit with the outcome measured (participants with
a missing visit contribute their other visits: valid under missing at random given the
model's terms and earlier outcomes), a random intercept per participant, plus the delivery
group and randomised cluster terms the structure has. REML, Satterthwaite df (lmerTest).

``estimand`` says what "the treatment effect" is:

* ``last``: the effect at the last visit (arm x visit interactions; the arm column is the
  last visit's effect);
* ``average``: the mean of the visit-specific effects, equal weights (arm x visit
  interactions in sum-to-zero coding; the arm column is the mean);
* ``constant``: one effect common to every visit (no interaction), as in
  ``lmer(bdi ~ bdi.pre + factor(month) + treatment + drug + length + (1 | participant))``.

Participant and group (or cluster) terms are nested and fitted by the nested engine; all three
(participant, group and cluster) need the general engine (refused without it).
"""

from __future__ import annotations

from trialsim.analyse.estimate import Estimates
from trialsim.analyse.formula import ModelSpec, RandomTerm, Term, model_arrays
from trialsim.data import TrialData
from trialsim.errors import UserError
from trialsim.structure import TrialStructure

ESTIMANDS = ("last", "average", "constant")


def repeated_spec(structure: TrialStructure, outcome: str, estimand: str = "last") -> ModelSpec:
    """The repeated-measures model of ``outcome`` the structure calls for (module docstring)."""
    if estimand not in ESTIMANDS:
        raise UserError(f"--estimand {estimand!r}: choose one of {', '.join(ESTIMANDS)}")
    if not structure.has_baseline and len(structure.visit_months) < 2:
        raise UserError(
            f"the repeated-measures analysis needs two or more visits of {outcome!r}; "
            "these data have one: use the default analysis"
        )
    fixed = [Term("arm", "arm")]
    if structure.has_baseline:
        fixed.append(Term("baseline", "baseline"))
    fixed.append(Term("factor(visit)", "visit"))
    for name, cov in structure.covariates.items():
        fixed.append(Term(name, "categorical" if cov.kind == "categorical" else "numeric", name))
    if structure.stratified and structure.site is not None and not structure.cluster_is_site:
        fixed.append(Term(structure.site, "site"))
    if structure.n_periods > 1:
        fixed.append(Term("period", "period"))
    random = [RandomTerm("participant", "participant")]
    if structure.has_groups and not structure.groups_are_clusters:
        printed = "(0 + treated | group)" if structure.partially_nested else ""
        random.append(RandomTerm("group", "group", printed))
    if structure.cluster_randomised:
        random.append(RandomTerm(structure.cluster, "cluster"))
    return ModelSpec(outcome, tuple(fixed), tuple(random), arm_by_visit=estimand)


def repeated_measures(
    data: TrialData,
    outcome: str,
    *,
    estimand: str = "last",
    level: float = 0.95,
    df: str = "satterthwaite",
) -> Estimates:
    """The repeated-measures treatment effect (``estimand``: last, average or constant) of
    ``data.contrast`` against the reference, batched over replicates; ``df``:
    ``"satterthwaite"`` or ``"kenward-roger"``."""
    from trialsim.analyse.fitting import fit_terms

    spec = repeated_spec(data.structure, outcome, estimand)
    a = model_arrays(data, spec)
    return fit_terms(
        a.Xy,
        a.used,
        a.terms,
        coef=a.coef,
        analysis=f"repeated({estimand})",
        level=level,
        df=df,
    ).estimates

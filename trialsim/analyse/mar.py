"""The ``mar`` analysis: the repeated-measures model plus attendance, likelihood-based under
missing at random (MAR).

In lme4 notation (the ``repeated`` model of :mod:`trialsim.analyse.repeated` with one term
more)::

    y ~ arm * factor(visit) + baseline + attendance_c:factor(visit) + covariates + site
        + (1 | participant) [+ (1 | group)] [+ (1 | cluster)]

fitted by REML to every post-baseline visit a participant has (one row per participant and
visit), where ``attendance_c`` is the attended fraction of the offered sessions minus its mean
in the participant's arm (0 for an arm nobody attends, e.g. controls), with its own slope at
every visit. Why: dropout in a group-therapy trial often depends on attendance (people who
stop coming stop answering); a likelihood analysis is valid under MAR given the terms of the
model and the earlier outcomes, so attendance must be in the model. Centring it within the arm
keeps the arm column the intention-to-treat effect at the last visit (the treated
participants' effect averaged over their attendance, with the mean linear in attendance),
the estimand of ``repeated``: ``E[y | arm, f] = ... + b_arm + b_f (f - mean f)`` averages to
``b_arm`` over the arm. Attendance is recorded for everyone randomised, including those who
drop out, so the mean is over every participant of the arm with a baseline.

Without attendance records (no sessions offered) or when nobody's attendance varies, the term
drops out and ``mar`` is exactly ``repeated``. Compared with the earlier ``mar`` (a monotone
factorisation with an unstructured covariance over the visits, which ignored the treatment
groups and still gives the delta-adjusted sensitivity analysis,
:func:`trialsim.analyse.missing.mar_all_visits`), the within-participant correlation is one
random intercept and the delivery groups and randomised clusters have their own terms, as
in every other mixed model here. Known bias: when attendance is self-selected on prognosis,
E[y | baseline, attendance] is not linear in attendance and the imputation the likelihood
makes for dropouts is misspecified, as for the earlier ``mar``.
"""

from __future__ import annotations

import numpy as np

from trialsim.analyse.estimate import Estimates
from trialsim.analyse.formula import ModelSpec, Term, model_arrays
from trialsim.analyse.repeated import repeated_spec
from trialsim.data import TrialData
from trialsim.structure import TrialStructure


def attendance_recorded(data: TrialData) -> bool:
    """True when the data record sessions offered to someone (attendance is known)."""
    return bool(np.asarray(data.sessions_offered).any())


def mar_spec(
    structure: TrialStructure, outcome: str, estimand: str = "last", attendance: bool = True
) -> ModelSpec:
    """The ``repeated`` model of ``outcome`` with the centred attendance term (module
    docstring) when ``attendance``; without it, the ``repeated`` model itself."""
    spec = repeated_spec(structure, outcome, estimand)
    if not attendance:
        return spec
    label = "attendance_c" if estimand == "constant" else "attendance_c:factor(visit)"
    fixed = (*spec.fixed, Term(label, "attendance"))
    return ModelSpec(spec.outcome, fixed, spec.random, arm_by_visit=spec.arm_by_visit)


def mar_arrays(data: TrialData, outcome: str, estimand: str = "last"):
    """The batched design of the ``mar`` model on ``data`` (attendance where recorded)."""
    spec = mar_spec(data.structure, outcome, estimand, attendance_recorded(data))
    return model_arrays(data, spec)


def mar_repeated(
    data: TrialData,
    outcome: str,
    *,
    estimand: str = "last",
    level: float = 0.95,
    df: str = "satterthwaite",
) -> Estimates:
    """The ``mar`` treatment effect of ``data.contrast`` against the reference (``estimand``
    last, average or constant as in ``repeated``), batched over replicates; ``df``:
    ``"satterthwaite"`` or ``"kenward-roger"``."""
    from trialsim.analyse.fitting import fit_terms

    a = mar_arrays(data, outcome, estimand)
    return fit_terms(
        a.Xy, a.used, a.terms, coef=a.coef, analysis="mar", level=level, df=df
    ).estimates


def mar_joint_fit(data: TrialData, outcome: str, df: str = "satterthwaite"):
    """The joint fit behind ``mar`` (every arm in one model) and each non-reference arm's
    column, for Dunnett's adjustment."""
    from trialsim.analyse.fitting import fit_terms

    a = mar_arrays(data, outcome)
    fit = fit_terms(a.Xy, a.used, a.terms, coef=a.coef, df=df)
    return fit, [a.arm_columns[k] for k in range(1, data.structure.n_arms)]

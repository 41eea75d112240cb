"""lme4-style model formulas on a trial's structure: ``parse_formula`` and ``model_arrays``.

A formula such as ``math ~ arm + C(school) + sx + (1 | class)`` names the outcome, fixed
effects and random intercepts with the column names of the user's file or the structure's
roles:

* ``arm`` (or the file's arm column, e.g. ``treatment``): treatment contrasts of the arms, the
  reference arm first;
* ``baseline`` (or the outcome's baseline column, e.g. ``bdi.pre``, ``psp_0``): the outcome at
  visit 0;
* the site (``site`` or its name, e.g. ``municipality``, ``school``), ``period``: categorical;
* ``visit`` / ``month`` as a factor (``factor(month)``, ``C(visit)``, or bare ``visit``) gives
  visit fixed effects, a bare ``month`` / ``time`` the months as a number; either makes the
  model a repeated-measures model over every post-baseline visit (one row per participant and
  visit);
* covariates by name; categorical ones (declared, or wrapped in ``C()`` / ``factor()``) as R's
  treatment contrasts (the first level the reference). Numbers enter as they are (no
  centring), as in R.

Random intercepts only: ``(1 | g)`` with ``g`` one of group, cluster (or its name), site (or
its name), trainer, participant. Random slopes are refused. Rows whose group/cluster id is -1
(e.g. controls of a partially nested trial) carry no effect of that term, which is lme4's
``(0 + treated | group)``.

The design is batched: ``Xy`` (R, M, p + 1) is ``[X, y]``, zero outside ``used``, the layout
the REML engines take; column 1 is the arm compared with the reference (``data.contrast``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from trialsim.data import TrialData
from trialsim.errors import UserError
from trialsim.structure import TrialStructure

RANDOM_ROLES = ("group", "cluster", "site", "trainer", "participant")
_BASELINE_SUFFIXES = ("pre", "0", "baseline", "base", "bl", "0m", "m0", "t0")
_RANDOM = re.compile(r"\(\s*([^()|]*?)\s*(\|\|?)\s*([^()|]+?)\s*\)")
_WRAPPED = re.compile(r"^(C|factor|as\.factor)\((.+)\)$")


@dataclass(frozen=True)
class Term:
    """A fixed-effect term: ``kind`` is arm, baseline, numeric, categorical, site, period,
    visit (categorical), time (numeric months) or attendance (the attended fraction centred
    on its mean in each arm, one slope per visit unless the arm effect is constant over
    visits; see :mod:`trialsim.analyse.mar`); ``source`` the covariate name for covariates;
    ``label`` the term as printed."""

    label: str
    kind: str
    source: str | None = None


@dataclass(frozen=True)
class RandomTerm:
    label: str  # as written, e.g. "class"
    role: str  # group, cluster, site, trainer, participant
    printed: str = ""  # lme4 text when not (1 | label), e.g. "(0 + treated | group)"


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model: outcome, fixed terms (arm first), random intercepts and, for a
    repeated-measures model, how the arm effect is defined over visits (``arm_by_visit``:
    ``constant`` one effect for every visit, ``last`` the effect at the last visit, ``average``
    the mean of the visit-specific effects)."""

    outcome: str
    fixed: tuple[Term, ...]
    random: tuple[RandomTerm, ...] = ()
    arm_by_visit: str = "constant"
    text: str = ""
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def repeated(self) -> bool:
        return any(t.kind in ("visit", "time") for t in self.fixed) or any(
            r.role == "participant" for r in self.random
        )

    def lme4(self) -> str:
        """The model in lme4 notation (``lmer``/``lm`` formula)."""
        fixed = [t.label for t in self.fixed]
        if self.arm_by_visit != "constant":
            visit = next((t.label for t in self.fixed if t.kind in ("visit", "time")), "visit")
            fixed = [f"arm * {visit}" if t.kind == "arm" else t.label for t in self.fixed]
            fixed = [f for f in fixed if f != visit]
        rand = [r.printed or f"(1 | {r.label})" for r in self.random]
        text = f"{self.outcome} ~ {' + '.join(fixed + rand)}"
        if self.arm_by_visit == "last":
            text += "  [arm effect at the last visit]"
        elif self.arm_by_visit == "average":
            text += "  [arm effect averaged over the visits]"
        return text


def _fail(text: str, what: str) -> UserError:
    return UserError(f"--formula {text!r}: {what}")


def parse_formula(
    text: str, structure: TrialStructure, names: dict[str, str] | None = None
) -> ModelSpec:
    """Parse ``text`` against ``structure``; ``names`` maps roles to the file's column names
    (e.g. ``{"arm": "treatment", "site": "school"}``, as the reader reports them).

    Raises ValueError (one line: what is wrong and how to write it) for unknown names,
    random slopes, interactions, transformations, a missing arm term or a missing ``~``.
    """
    from formulaic import Formula

    names = {k.casefold(): v for k, v in (names or {}).items()}
    if "~" not in text:
        raise _fail(text, "no '~'; write OUTCOME ~ arm + ... + (1 | group)")
    lhs, rhs = (s.strip() for s in text.split("~", 1))
    outcome = _outcome(text, lhs, structure)
    random = []
    for inner, bars, grouping in _RANDOM.findall(rhs):
        if bars == "||" or inner.replace(" ", "") not in ("1",):
            raise _fail(
                text,
                f"random slopes ({inner} | {grouping}) are not supported; only random "
                f"intercepts (1 | {grouping})",
            )
        random.append(RandomTerm(grouping, _random_role(text, grouping, structure, names)))
    fixed_text = _RANDOM.sub("", rhs)
    if "|" in fixed_text:
        raise _fail(text, "a random term must be written in brackets, e.g. (1 | group)")
    fixed_text = re.sub(r"\+\s*(?=\+|$)", "", fixed_text.strip()).strip().lstrip("+").strip()
    fixed_text = fixed_text or "1"
    try:
        rhs_terms = Formula(f"y ~ {fixed_text}").rhs
    except Exception as exc:  # formulaic's parse errors: many classes
        raise _fail(text, f"cannot read the fixed effects ({str(exc).splitlines()[0]})") from None
    if not any(str(t) == "1" for t in rhs_terms):
        raise _fail(text, "models without an intercept are not supported; drop '- 1' / '+ 0'")
    fixed: list[Term] = []
    for term in rhs_terms:
        if str(term) == "1":
            continue
        if len(term.factors) != 1:
            raise _fail(
                text,
                f"interactions ({term}) are not supported; for an arm effect per visit use "
                "the 'repeated' analysis with --estimand last",
            )
        fixed.append(_fixed_term(text, str(term.factors[0]), structure, names, outcome))
    arms = [t for t in fixed if t.kind == "arm"]
    if not arms:
        arm_col = names.get("arm")
        also = f" (or {arm_col})" if arm_col and arm_col != "arm" else ""
        raise _fail(text, f"the formula has no arm term: add 'arm'{also} to the fixed effects")
    fixed = arms[:1] + [t for t in fixed if t.kind != "arm"]
    labels = [t.label for t in fixed]
    if len(set(labels)) != len(labels):
        raise _fail(text, "a term appears twice")
    return ModelSpec(outcome=outcome, fixed=tuple(fixed), random=tuple(random), text=text)


def _outcome(text: str, lhs: str, structure: TrialStructure) -> str:
    match = [o for o in structure.outcomes if o.casefold() == lhs.casefold()]
    if not match:
        raise _fail(
            text,
            f"the outcome {lhs!r} is not an outcome of the data "
            f"({', '.join(structure.outcomes) or 'none'})",
        )
    return match[0]


def _role_names(structure: TrialStructure, names: dict[str, str]) -> dict[str, str]:
    """Lower-case name -> role, for the names a formula may use."""
    out = {}
    for role in ("arm", "site", "cluster", "group", "trainer", "period", "participant"):
        out[role] = role
        if names.get(role):
            out[names[role].casefold()] = role
    if structure.site:
        out[structure.site.casefold()] = "site"
    if structure.cluster:
        out[structure.cluster.casefold()] = "site" if structure.cluster_is_site else "cluster"
    out["treatment"] = out.get("treatment", "arm")
    out["treat"] = out.get("treat", "arm")
    return out


def _random_role(text, grouping, structure, names) -> str:
    role = _role_names(structure, names).get(grouping.casefold())
    if role == "site" and structure.cluster_is_site:
        role = "cluster"
    if role not in RANDOM_ROLES:
        raise _fail(
            text,
            f"({1} | {grouping}): {grouping!r} is not a grouping of the data; use one of "
            "group, cluster, site, trainer, participant (or the file's column for it)",
        )
    if role == "group" and not structure.has_groups:
        raise _fail(text, f"(1 | {grouping}): the data have no delivery groups")
    if role == "cluster" and not structure.cluster_randomised:
        raise _fail(text, f"(1 | {grouping}): the data have no randomised clusters")
    if role == "site" and structure.site is None:
        raise _fail(text, f"(1 | {grouping}): the data have no sites")
    if role == "trainer" and not structure.trainers:
        raise _fail(text, f"(1 | {grouping}): the data do not record trainers")
    return role


def _is_baseline(name: str, outcome: str) -> bool:
    low, out = name.casefold(), outcome.casefold()
    if low == "baseline":
        return True
    if not low.startswith(out) or len(low) <= len(out) + 1 or low[len(out)] not in "._ ":
        return False
    return low[len(out) + 1 :] in _BASELINE_SUFFIXES


def _fixed_term(text, factor, structure, names, outcome) -> Term:
    wrapped = _WRAPPED.match(factor.replace(" ", ""))
    name = wrapped.group(2).strip("`") if wrapped else factor.strip("`")
    if not wrapped and not re.fullmatch(r"[A-Za-z_.][\w.]*", name):
        raise _fail(
            text,
            f"the term {factor!r} is not supported (only names, C(name) and factor(name)); "
            "compute it as a column of the file",
        )
    low = name.casefold()
    role = _role_names(structure, names).get(low)
    if role == "arm":
        return Term("arm", "arm")
    if role == "site" or (role == "cluster" and structure.cluster_is_site):
        if structure.site is None:
            raise _fail(text, f"{name!r}: the data have no sites")
        return Term(factor if wrapped else name, "site")
    if role == "period":
        return Term(factor if wrapped else name, "period")
    if role in ("cluster", "group", "trainer", "participant"):
        raise _fail(
            text,
            f"{name!r} as a fixed effect is not supported; write it as a random intercept "
            f"(1 | {name})",
        )
    if low in ("visit", "month", "time", "months"):
        if not structure.has_baseline and len(structure.visit_months) < 2:
            raise _fail(text, f"{name!r}: the data have one visit only")
        categorical = wrapped is not None or low == "visit"
        return Term(factor if wrapped else name, "visit" if categorical else "time")
    if _is_baseline(name, outcome):
        if not structure.has_baseline:
            raise _fail(text, f"{name!r}: {outcome!r} has no baseline measurement")
        return Term(name, "baseline")
    match = [c for c in structure.covariates if c.casefold() == low]
    if not match:
        raise _fail(
            text,
            f"unknown name {name!r}: not a column of the data, a role (arm, site, cluster, "
            "group, trainer, period, visit, month, baseline) or a covariate",
        )
    spec = structure.covariates[match[0]]
    kind = "categorical" if wrapped or spec.kind == "categorical" else "numeric"
    label = factor if wrapped else match[0]
    return Term(label, kind, match[0])


def formula_names(text: str) -> list[str]:
    """The plain names a formula uses (to declare unknown ones as covariates before
    reading a file)."""
    rhs = text.split("~", 1)[-1]
    rhs = _RANDOM.sub("", rhs)
    out = []
    for token in re.split(r"[+\-*:]", rhs):
        token = token.strip()
        wrapped = _WRAPPED.match(token.replace(" ", ""))
        token = (wrapped.group(2) if wrapped else token).strip("`")
        if re.fullmatch(r"[A-Za-z_.][\w.]*", token):
            out.append(token)
    return out


# --------------------------------------------------------------------------- arrays


@dataclass(frozen=True)
class FormulaArrays:
    """The batched design of a :class:`ModelSpec`: ``Xy`` (R, M, p + 1) zero outside
    ``used`` (R, M); ``terms`` the random terms' ids (R, M), -1 where a row has none;
    ``arm_columns[k]`` the column of arm k (-1 for the reference) and ``n_visits`` the
    post-baseline visits per participant (1 for a one-visit model)."""

    Xy: np.ndarray
    used: np.ndarray
    columns: tuple[str, ...]
    terms: tuple[tuple[str, np.ndarray], ...]
    arm_columns: tuple[int, ...]
    n_visits: int = 1

    @property
    def coef(self) -> int:
        return 1


def _dummies(codes: np.ndarray, levels: list, name: str, ok: np.ndarray):
    """Treatment-contrast columns of integer codes: the first level present (level 0 when
    present, as in R) is the reference."""
    codes = np.asarray(codes)
    rows = np.broadcast_to(ok, np.broadcast_shapes(ok.shape, codes.shape))
    present = np.unique(
        np.broadcast_to(codes, rows.shape)[rows & (np.broadcast_to(codes, rows.shape) >= 0)]
    )
    return [
        (f"{name}[{levels[int(j)] if int(j) < len(levels) else j}]", (codes == j).astype(float))
        for j in present[1:]
    ]


def model_arrays(data: TrialData, spec: ModelSpec, *, visit: int = -1) -> FormulaArrays:
    """The design of ``spec`` on ``data`` (R replicates).

    A model without visit terms is fitted to the outcome at ``visit`` (default the last), one
    row per participant; a repeated-measures model to every post-baseline visit (one row per
    participant and visit, participant-major). Rows are used where the outcome and every
    term's value are known.
    """
    st = data.structure
    values = data.outcomes[spec.outcome]
    r, n, v_all = values.shape
    if spec.repeated:
        first = 1 if st.has_baseline else 0
        visits = np.arange(first, v_all)
        if visits.size == 0:
            raise UserError(f"{spec.outcome!r} has no post-baseline visit to model")
    else:
        visits = np.array([visit % v_all])
    nv = visits.size
    m = n * nv

    def person(x):  # (1|R, N) person-level -> (1|R, M)
        x = np.asarray(x)
        return np.repeat(x, nv, axis=1) if nv > 1 else x

    y = values[:, :, visits].reshape(r, m)
    ok = np.isfinite(y)
    cols: list[tuple[str, np.ndarray]] = [("intercept", np.ones((1, m)))]
    arm = person(data.arm)
    arm_columns = [-1] * st.n_arms
    others = [k for k in range(1, st.n_arms) if k != data.contrast]
    # the contrast's arm in column 1, then the other arms present
    present = set(np.unique(data.arm[np.isfinite(values[:, :, visits]).any(axis=2)]).tolist())
    arm_order = [data.contrast] + [k for k in others if k in present]
    for k in arm_order:
        arm_columns[k] = len(cols)
        cols.append(("treatment" if k == data.contrast else f"arm[{st.arms[k]}]", arm == k))
    visit_codes = np.broadcast_to(np.tile(np.arange(nv), n)[None], (1, m))
    for t in spec.fixed[1:]:
        if t.kind == "baseline":
            b = person(values[:, :, 0])
            ok &= np.isfinite(b)
            cols.append((t.label, np.where(np.isfinite(b), b, 0.0)))
        elif t.kind == "numeric":
            x = person(data.covariates[t.source])
            ok &= np.isfinite(x)
            cols.append((t.label, np.where(np.isfinite(x), x, 0.0)))
        elif t.kind == "categorical":
            x = person(data.covariates[t.source])
            ok &= np.isfinite(x)
            cs = st.covariates[t.source]
            if cs.kind == "categorical":
                codes, levels = np.where(np.isfinite(x), x, -1).astype(np.int64), list(cs.levels)
            else:  # C(number): levels are the sorted distinct values
                levels = np.unique(x[np.isfinite(x)]).tolist()
                codes = np.where(np.isfinite(x), np.searchsorted(levels, x), -1)
                levels = [f"{v:g}" for v in levels]
            cols += _dummies(codes, levels, t.source, ok)
        elif t.kind == "site":
            cols += _dummies(person(data.site), list(data.site_names), t.label, ok)
        elif t.kind == "period":
            cols += _dummies(
                person(data.period), [str(j) for j in range(st.n_periods)], t.label, ok
            )
        elif t.kind == "visit":
            labels = [f"{st.visit_months[v]:g}" for v in visits]
            cols += _dummies(visit_codes, labels, t.label, np.ones((1, m), bool))
        elif t.kind == "time":
            months = np.asarray(st.visit_months, dtype=float)[visits]
            cols.append((t.label, np.tile(months, n)[None]))
        elif t.kind == "attendance":
            centred = person(_centred_attendance(data, values))
            if spec.arm_by_visit == "constant" or nv == 1:
                cols.append((t.label, centred))
            else:
                cols += [
                    (f"attendance:visit{v + 1}", centred * (visit_codes == v)) for v in range(nv)
                ]
    used = ok
    cols = _arm_by_visit(cols, spec.arm_by_visit, arm_order, visit_codes, nv)
    # drop columns that are zero on every used row of every replicate (absent levels)
    keep = [
        j
        for j, (name, x) in enumerate(cols)
        if j < 2 or np.broadcast_to(x != 0, (r, m))[used].any()
    ]
    if any(j not in keep for j in range(len(cols)) if cols[j][0] in ("treatment",)):
        raise UserError("no participant of the compared arm has the outcome")
    arm_columns = [keep.index(c) if c >= 0 and c in keep else -1 for c in arm_columns]
    cols = [cols[j] for j in keep]
    p = len(cols)
    Xy = np.zeros((r, m, p + 1))
    for j, (_, x) in enumerate(cols):
        Xy[..., j] = np.where(used, x, 0.0)
    Xy[..., p] = np.where(used, y, 0.0)
    terms = []
    for rt in spec.random:
        if rt.role == "participant":
            ids = np.repeat(np.arange(n), nv)[None]
        else:
            ids = person(
                {
                    "group": data.group,
                    "cluster": data.cluster,
                    "site": data.site,
                    "trainer": data.trainer,
                }[rt.role]
            )
        terms.append((rt.label, np.broadcast_to(np.asarray(ids, dtype=np.int64), (r, m))))
    return FormulaArrays(
        Xy=Xy,
        used=used,
        columns=tuple(c[0] for c in cols),
        terms=tuple(terms),
        arm_columns=tuple(arm_columns),
        n_visits=nv,
    )


def _centred_attendance(data: TrialData, values: np.ndarray) -> np.ndarray:
    """The attended fraction of the offered sessions (R, N), minus its mean over the arm's
    participants (those with a baseline when the outcome has one) in each replicate: 0 in an
    arm nobody attends, so the arm columns stay the effects at the arm's mean attendance."""
    fraction = data.sessions_attended / np.maximum(data.sessions_offered, 1)
    fraction = np.asarray(fraction, dtype=float)
    r, n = values.shape[:2]
    fraction = np.broadcast_to(fraction, (r, n))
    arm = np.broadcast_to(data.arm, (r, n))
    counted = np.isfinite(values[:, :, 0]) if data.structure.has_baseline else np.ones((r, n), bool)
    out = np.zeros((r, n))
    for k in range(data.structure.n_arms):
        rows = arm == k
        weight = rows & counted
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (fraction * weight).sum(axis=1) / weight.sum(axis=1)
        out = np.where(rows, fraction - np.nan_to_num(mean)[:, None], out)
    return out


def _arm_by_visit(cols, how, arm_order, visit_codes, nv):
    """Arm-by-visit interaction columns so that each arm's own column is the effect at the
    last visit (``last``: the others are arm x 1{visit v}, v before the last) or the mean of
    the visit effects (``average``: arm x (1{visit v} - 1{first visit}), v after the first;
    these sum-to-zero deviations leave the arm column as the average)."""
    if how == "constant" or nv == 1:
        return cols
    out = list(cols)
    for k_pos, _k in enumerate(arm_order):
        a = cols[1 + k_pos][1]
        name = cols[1 + k_pos][0]
        for v in range(nv):
            if how == "last" and v < nv - 1:
                out.append((f"{name}:visit{v + 1}", a * (visit_codes == v)))
            elif how == "average" and v > 0:
                out.append(
                    (f"{name}:visit{v + 1}", a * ((visit_codes == v) * 1.0 - (visit_codes == 0)))
                )
    return out

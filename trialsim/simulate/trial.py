"""Assemble a batch of replicate trials from the components (docs/scenario.md).

Replicates are drawn in blocks of :data:`trialsim.seeds.BLOCK_SIZE`, each component from its
own stream (see :mod:`trialsim.seeds`), so a replicate does not depend on how the work is
chunked. Within a block everything is arrays with a leading replicate axis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from trialsim.data import TrialData
from trialsim.parallel import map_in_threads
from trialsim.scenario import Scenario
from trialsim.seeds import BLOCK_SIZE, block_rng, scenario_key
from trialsim.simulate import attendance, blinding, dropout, outcomes, recruitment
from trialsim.simulate.groups import assign_arm_groups, assign_groups
from trialsim.simulate.layout import Layout, build_layout
from trialsim.simulate.randomise import assign_arms

CALIBRATION_SEED = 20_160_301  # fixed: dropout calibration must not depend on the user's seed
CALIBRATION_BLOCKS = 2


def simulate_trials(
    scenario: Scenario,
    reps: int | Sequence[int] | np.ndarray,
    *,
    seed: int,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
    potential_outcomes: bool = False,
) -> TrialData:
    """Simulate replicate trials of ``scenario``.

    Parameters
    ----------
    scenario : a validated :class:`~trialsim.scenario.Scenario`.
    reps : number of replicates (0..reps-1) or the replicate indices to draw.
    seed : root seed; replicate r is the same for a given (seed, scenario name, r) however
        the replicates are batched.
    threads : blocks drawn in parallel threads (default: one per core); the result does not
        depend on it.
    progress : called with the number of replicates finished after each block.
    potential_outcomes : also keep what the trials' potential outcomes follow from
        (``TrialData.untreated`` and ``dose``, for per-trial estimands); off, they are
        dropped block by block (joining them costs the simulator a sixth of its time).

    Example
    -------
    >>> from trialsim.scenario import load_scenario
    >>> data = simulate_trials(load_scenario("scenarios/sft-19m.toml"), 200, seed=1)
    >>> data.outcomes["psp"].shape  # (replicates, participants, visits)
    (200, 340, 3)
    """
    rep_idx = np.arange(reps) if np.ndim(reps) == 0 else np.unique(np.asarray(reps, dtype=int))
    if rep_idx.size == 0 or rep_idx.min() < 0:
        raise ValueError("reps must be a positive count or non-negative replicate indices")
    layout = build_layout(scenario)
    alpha = dropout_intercept(scenario)

    def draw(block: int) -> TrialData:
        wanted = rep_idx[rep_idx // BLOCK_SIZE == block]
        data, _ = _simulate_block(scenario, layout, seed, int(block), alpha)
        if not potential_outcomes:
            data = replace(data, untreated={}, dose=None)
        if progress is not None:
            progress(len(wanted))
        return data if len(wanted) == BLOCK_SIZE else data.take(wanted - block * BLOCK_SIZE)

    return TrialData.concat(list(map_in_threads(draw, np.unique(rep_idx // BLOCK_SIZE), threads)))


@lru_cache(maxsize=64)
def _dropout_intercept_cached(scenario_json: str) -> float:
    scenario = Scenario.model_validate_json(scenario_json)
    layout = build_layout(scenario)
    lps = [
        _simulate_block(scenario, layout, CALIBRATION_SEED, b, None)[1]
        for b in range(CALIBRATION_BLOCKS)
    ]
    return dropout.calibrate_intercept(scenario.dropout, np.concatenate(lps), scenario.n_visits - 1)


def dropout_intercept(scenario: Scenario) -> float:
    """The dropout intercept meeting the scenario's completion target (cached per scenario)."""
    return _dropout_intercept_cached(scenario.model_dump_json())


#: streams of components added after :data:`trialsim.seeds.COMPONENTS` was fixed; their own
#: spawn-key index (far from the others) leaves every existing stream unchanged
_EXTRA_COMPONENTS = {"covariates": 100}


@dataclass(frozen=True)
class _Streams:
    seed: int
    name: str
    block: int

    def __call__(self, component: str) -> np.random.Generator:
        if component in _EXTRA_COMPONENTS:
            ss = np.random.SeedSequence(
                entropy=self.seed,
                spawn_key=(scenario_key(self.name), self.block, _EXTRA_COMPONENTS[component]),
            )
            return np.random.default_rng(ss)
        return block_rng(self.seed, self.name, self.block, component)


def draw_covariates(
    s: Scenario, b: int, n: int, *, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Baseline covariates of ``b`` replicates of ``n`` participants, and their summed shift
    of every outcome's latent score, (B, N): ``effect * (x - mean) / sd`` for a numeric
    covariate (x normal), ``effects[level]`` for a categorical one (level drawn with
    ``probs``; stored as level codes 0..L-1)."""
    values: dict[str, np.ndarray] = {}
    shift = np.zeros((b, n))
    for name, c in s.covariates.items():
        if c.type == "numeric":
            e = rng.standard_normal((b, n))
            values[name] = c.mean + c.sd * e
            shift += c.effect * e
        else:
            cum = np.cumsum(c.probs)
            code = np.minimum(np.searchsorted(cum / cum[-1], rng.random((b, n)), side="right"),
                              len(c.levels) - 1)  # fmt: skip
            values[name] = code.astype(float)
            if c.effects is not None:
                shift += np.asarray(c.effects, dtype=float)[code]
    return values, shift


def _simulate_block(
    s: Scenario, layout: Layout, seed: int, block: int, alpha: float | None
) -> tuple[TrialData | None, np.ndarray]:
    """One block of replicates. With ``alpha=None`` stop before dropout and return only the
    dropout linear predictor (for calibration).

    ``treated`` is membership of any active (non-reference) arm; ``arm`` holds the codes.
    With two arms and no control groups every step is what it was before arms were
    generalised (same streams, same draws)."""
    rng = _Streams(seed, s.name, block)
    structure = s.structure
    b, n, v = BLOCK_SIZE, layout.n_participants, s.n_visits
    rows = np.arange(b)[:, None]
    control = s.groups.control

    arms = assign_arms(s, layout, b, rng=rng("randomisation"))
    treated, cohort, arm = arms.treated, arms.cluster, arms.codes
    if arms.cohort_cell is not None:
        part = assign_groups(
            treated, layout, s.groups, rng=rng("groups"), cohorts=(cohort, arms.cohort_cell)
        )
    else:
        part = assign_arm_groups(arm, layout, s, rng=rng("groups"))
    in_group = part.group >= 0
    group = np.maximum(part.group, 0)
    trainer = part.group_trainer[group]

    latent_rng = rng("latent")
    person = outcomes.draw_person_latent(s, b, n, rng=latent_rng)
    link = recruitment.link_to_trial(s, layout, person, rng=rng("recruitment"))
    if link is not None:  # arms, groups and waiting come from the recruitment process
        treated, cohort, part = link.treated, link.cohort, link.partition
        arm = treated.astype(np.int8)
        in_group = part.group >= 0
        group = np.maximum(part.group, 0)
        trainer = part.group_trainer[group]
    muni_eff = outcomes.draw_cluster_effects(s, b, layout.n_municipalities, rng=latent_rng)
    group_eff = outcomes.draw_cluster_effects(s, b, max(len(part.group_cell), 1), rng=latent_rng)
    trainer_eff = outcomes.draw_cluster_effects(s, b, max(part.n_trainers, 1), rng=latent_rng)
    covariates, cov_shift = (
        draw_covariates(s, b, n, rng=rng("covariates")) if s.covariates else ({}, None)
    )

    names = list(s.outcomes)
    k_primary = names.index(s.primary)
    primary = s.outcomes[s.primary]
    sign_primary = outcomes.favourable_sign(primary)
    prognosis = sign_primary * person[:, :, k_primary, -1]
    attendance_rng = rng("attendance")
    offered, attended = attendance.draw_attendance(
        treated, prognosis, s.attendance, s.design.sessions_offered, rng=attendance_rng
    )
    in_control_group = None
    if control is not None:  # attention-control groups: their own course of sessions
        in_control_group = in_group & (arm == 0)
        sessions = control.sessions_offered or s.design.sessions_offered
        offered = np.where(in_control_group, sessions, offered)
        attended[in_control_group] = attendance.draw_sessions(
            prognosis[in_control_group], s.attendance, sessions, rng=attendance_rng
        )
    if link is not None:  # never started a group: no sessions attended
        attended = np.where(link.not_started, 0, attended)
    fraction = attended / np.maximum(offered, 1)
    dose = np.where(treated, attendance.dose_factor(fraction, s.attendance), 0.0)
    if not structure.cluster_is_site:
        # controls share a municipality (and its trained staff) with the treated arm
        dose = np.where(treated, dose, s.design.contamination)

    g = s.groups
    s_group, s_trainer = outcomes.cluster_scales(g)
    if control is not None:  # the control arm's groups: their own ICC, no trainer variance
        s_control = outcomes.control_group_scale(g)
        s_group = np.where(arm > 0, s_group, s_control)
        s_trainer = np.where(arm > 0, s_trainer, 0.0)
    grouped_var = np.where(in_group, 1.0 + s_group**2 + s_trainer**2, 1.0)  # after baseline
    blinded = blinding.draw_assessor_blinded(s.blinding, b, n, v, rng=rng("blinding"))
    noise_rng = rng("outcome_noise")

    values: dict[str, np.ndarray] = {}
    untreated: dict[str, np.ndarray] = {}  # for per-trial estimands (potential outcomes)
    primary_z = None
    for k, (name, o) in enumerate(s.outcomes.items()):
        cluster_z = s_group * group_eff[rows, group, k] + s_trainer * trainer_eff[rows, trainer, k]
        muni_z = np.sqrt(g.icc_municipality) * muni_eff[rows, layout.municipality, k]
        sd_person = np.sqrt(1.0 - g.icc_municipality)
        z = outcomes.latent_scores(muni_z, person[:, :, k, :], sd_person, in_group, cluster_z)
        if cov_shift is not None:  # baseline covariates shift every visit
            z += cov_shift[:, :, None]
        if k == k_primary:
            primary_z = z
        if alpha is None:
            continue
        bias = blinding.bias_terms(o.rater, s.blinding, o.expectancy_bias)
        arm_effect = None
        if s.n_arms > 2:  # each person's arm's effect (controls: the first arm's, contamination)
            effects = s.arm_effects(name)
            arm_effect = np.asarray((effects[0], *effects))[arm]
        values[name] = outcomes.to_scale(
            o, z, grouped_var, dose, treated, blinded, bias, rng=noise_rng, arm_effect=arm_effect
        )
        untreated[name] = outcomes.untreated_final(o, z[:, :, -1], grouped_var)

    lp = dropout.linear_predictor(
        s.dropout,
        treated,
        baseline_z=sign_primary * primary_z[:, :, 0],
        final_z=sign_primary * primary_z[:, :, -1] / np.sqrt(grouped_var),
        missed_fraction=1.0 - fraction,
    )
    if link is not None:
        rec = s.sites.recruitment
        lp = lp + rec.dropout_log_odds_per_month_waiting * link.waiting_months
    if alpha is None:
        return None, lp if link is None else np.where(link.lost, np.inf, lp)
    observed = dropout.draw_observed(alpha, lp, v, rng=rng("dropout"))
    if link is not None:  # lost before start: never measured after baseline
        observed[:, :, 1:] &= ~link.lost[:, :, None]
    for y in values.values():
        np.copyto(y, np.nan, where=~observed)

    every = (b, n)
    data = TrialData(
        scenario=s.name,
        structure=structure,
        rep=block * BLOCK_SIZE + np.arange(b),
        site_names=s.sites.names or tuple(f"M{i + 1}" for i in range(layout.n_municipalities)),
        site=np.broadcast_to(layout.municipality, every),
        cluster=(
            cohort
            if structure.cluster is not None and not structure.cluster_is_site
            else np.broadcast_to(layout.municipality, every)
            if structure.cluster is not None
            else np.broadcast_to(np.int64(-1), every)
        ),
        period=np.broadcast_to(layout.period, every),
        arm=arm.astype(np.int8),
        group=part.group,
        trainer=np.where(in_group, trainer, -1),
        sessions_offered=offered,
        sessions_attended=attended,
        outcomes=values,
        observed=observed,
        assessor_blinded=blinded,
        covariates=covariates,
        untreated=untreated,
        dose=dose,
        **({} if link is None else link.data_fields()),
    )
    return data, lp

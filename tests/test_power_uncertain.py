"""Sample size under an uncertain ICC (trialsim.power.uncertain).

Oracles: a degenerate prior (fixed:0.05) must give the plain solve at that ICC; each row of a
range is the plain solve at its ICC; the averaged answer is the smallest count whose mean
power over the prior's equal-probability points reaches the target (checked one below), and
the node rule agrees with scipy.integrate.quad over the Beta density to 2e-3 in power.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from tests.conftest import SFT
from trialsim.bayes.distributions import parse_design_prior
from trialsim.power.analytic import power_irgt
from trialsim.power.from_scenario import analytic_parameters, analytic_solve
from trialsim.power.uncertain import prior_nodes, solve_averaged, solve_over_range, with_value
from trialsim.scenario import load_scenario

S = load_scenario(SFT, [])


def test_fixed_prior_is_the_plain_solve():
    out = solve_averaged(S, "icc", parse_design_prior("fixed:0.05"), "n_groups", 0.8)
    assert out["value"] == analytic_solve(S, "n_groups", 0.8)["value"]


def test_range_rows_are_plain_solves():
    rows = solve_over_range(S, "icc", [0.02, 0.12], "n_groups", 0.8)
    for r in rows:
        assert (
            r["value"] == analytic_solve(with_value(S, "icc", r["icc"]), "n_groups", 0.8)["value"]
        )
    assert rows[0]["value"] < rows[1]["value"]


def test_equal_probability_nodes_integrate_a_smooth_power_curve():
    """Residual-ICC power curve of the SFT mapping, averaged over beta(2, 30) by the
    15-node rule and by adaptive quadrature."""
    _, p = analytic_parameters(S)
    prior = parse_design_prior("beta:2,30")

    def power_at(icc):
        return power_irgt(**dict(p, icc=icc))

    nodes = prior_nodes(prior, 15)
    by_nodes = np.mean([power_at(x) for x in nodes])
    by_quad, _ = integrate.quad(lambda x: power_at(x) * stats.beta.pdf(x, 2, 30), 0, 0.6)
    assert by_nodes == pytest.approx(by_quad, abs=2e-3)


@pytest.mark.slow
def test_averaged_answer_is_the_smallest_reaching_the_target():
    prior = parse_design_prior("beta:2,30")
    out = solve_averaged(S, "icc", prior, "n_groups", 0.8, nodes=7)
    assert out["expected_power"] >= 0.8
    below = solve_averaged(S, "icc", prior, "n_groups", 0.99, nodes=7)
    assert below["value"] > out["value"]

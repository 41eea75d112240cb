"""Posterior summaries of the effect and sampler diagnostics that name a remedy.

Thresholds follow Vehtari et al. (2021, Bayesian Anal 16:667): rank-normalised split R-hat
below 1.01 and bulk/tail effective sample sizes of at least 100 per chain (400 for 4 chains);
any divergent transition is reported (Betancourt 2017, arXiv:1701.02434).
"""

from __future__ import annotations

import numpy as np

RHAT_MAX = 1.01
ESS_PER_CHAIN = 100

SUMMARY_VARS = ("effect", "tau", "sigma", "nu", "dose_slope")


def posterior_probabilities(
    draws: np.ndarray, *, mcid: float | None, rope: tuple[float, float] | None, better: str
) -> dict:
    """P(benefit), P(benefit beyond the MCID), P(inside the ROPE) from effect draws."""
    sign = 1.0 if better == "higher" else -1.0
    draws = np.ravel(draws)
    out = {"p_benefit": float(np.mean(sign * draws > 0))}
    if mcid is not None:
        out["p_beyond_mcid"] = float(np.mean(sign * draws > abs(mcid)))
    if rope is not None:
        out["p_in_rope"] = float(np.mean((draws >= rope[0]) & (draws <= rope[1])))
    return out


def summarise(
    idata,
    *,
    mcid: float | None = None,
    rope: tuple[float, float] | None = None,
    better: str = "higher",
    hdi_prob: float = 0.95,
) -> dict:
    """Summary table rows (mean, sd, HDI, R-hat, ESS) plus probabilities and warnings."""
    import arviz as az

    post = idata.posterior
    names = [v for v in SUMMARY_VARS if v in post.data_vars]
    names += [str(v) for v in post.data_vars if str(v).startswith("sd_")]  # several terms
    table = az.summary(idata, var_names=names, hdi_prob=hdi_prob, round_to="none")
    rows = []
    for name, row in table.iterrows():
        rows.append(
            {
                "parameter": str(name),
                "mean": float(row["mean"]),
                "sd": float(row["sd"]),
                "hdi_low": float(row.iloc[2]),
                "hdi_high": float(row.iloc[3]),
                "r_hat": float(row["r_hat"]),
                "ess_bulk": float(row["ess_bulk"]),
                "ess_tail": float(row["ess_tail"]),
            }
        )
    effect = post["effect"].values
    result = {
        "parameters": rows,
        "hdi_prob": hdi_prob,
        **posterior_probabilities(effect, mcid=mcid, rope=rope, better=better),
    }
    result["diagnostics"] = diagnose(idata, table)
    return result


def diagnose(idata, table) -> dict:
    """Divergences, worst R-hat and smallest ESS, with a warning line (and remedy) for each
    problem."""
    n_chains = idata.posterior.sizes["chain"]
    divergent = 0
    stats = getattr(idata, "sample_stats", None)
    if stats is not None and "diverging" in stats:
        divergent = int(np.asarray(stats["diverging"]).sum())
    rhat = float(np.nanmax(table["r_hat"].to_numpy()))
    ess = float(np.nanmin(table[["ess_bulk", "ess_tail"]].to_numpy()))
    ess_min = ESS_PER_CHAIN * n_chains
    warnings = []
    if divergent:
        warnings.append(
            f"{divergent} divergent transitions: the posterior geometry is hard (often a group "
            "SD near zero); raise --target-accept (e.g. 0.95-0.99) or use a more informative "
            "group-SD prior; do not trust the result until they are gone"
        )
    if not rhat < RHAT_MAX:
        warnings.append(
            f"R-hat {rhat:.3f} >= {RHAT_MAX}: chains disagree; run more --tune and --draws "
            "iterations and check the trace plot"
        )
    if not ess >= ess_min:
        warnings.append(
            f"effective sample size {ess:.0f} < {ess_min} ({ESS_PER_CHAIN} per chain): "
            "posterior summaries are noisy; raise --draws"
        )
    return {
        "divergences": divergent,
        "max_r_hat": rhat,
        "min_ess": ess,
        "chains": int(n_chains),
        "draws": int(idata.posterior.sizes["draw"]),
        "warnings": warnings,
    }

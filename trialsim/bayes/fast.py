"""Exact posterior of the treatment effect in the Gaussian random-intercept model, batched.

Model (one replicate)::

    y = X beta + Z u + e,   u_c ~ N(0, tau^2),   e ~ N(0, sigma^2),

with ``Z`` the treatment groups (partially nested model: controls carry no random effect) or
the randomised clusters (cluster-randomised and stepped-wedge models). Priors, identical to
the PyMC model of :mod:`trialsim.bayes.models`:

- the effect ``beta_k``: normal ``N(m, s^2)`` or flat; the other coefficients: flat;
- ``p(sigma) ∝ 1/sigma`` (Jeffreys; ``log sigma`` flat);
- ``tau``: half-normal or half-Student-t with a given scale (:class:`ScalePrior`).

How it is computed
------------------
Write ``u = tau / sigma`` and ``lam = u^2``. Given ``(u, sigma)`` the model is linear-Gaussian
in ``beta``. With ``A(lam) = W' V_lam^-1 W`` (``W = [X, y]``, the same cross-products as the
REML engine of :mod:`trialsim.analyse.reml`), ``M = A_xx``, ``Q`` the GLS residual sum of
squares, ``b`` the GLS estimate of ``beta_k`` and ``c = (M^-1)_kk``, integrating the flat
coefficients and the normal prior on ``beta_k`` leaves the joint posterior (Lindley & Smith
1972, J R Stat Soc B 34:1; Gelman et al. 2013, *Bayesian Data Analysis* §14-15)::

    p(u, sigma | y) ∝ p_tau(u sigma) sigma^-(n-p) |V_lam|^-1/2 |M|^-1/2 exp(-Q / 2 sigma^2)
                      x N(b; m, sigma^2 c + s^2)

and ``beta_k | u, sigma, y`` is normal with precision ``1/(sigma^2 c) + 1/s^2``. The
marginal posterior of ``beta_k`` is therefore a mixture of normals over ``(u, sigma)``:
``u`` is integrated on a fixed trapezoid grid in ``t = u / (u + u0)`` (dense near zero, reaching
``u = 32 u0``), and ``log sigma`` by Gauss-Hermite quadrature centred on its conditional mode
``sigma^2 = Q / (n - p - 1)`` (the posterior of ``sigma`` given ``u`` is close to
inverse-gamma, so 10 nodes are exact to many digits). With a flat effect prior and a
scale-free prior on ``u`` this reduces to the familiar mixture of Student-t distributions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from trialsim.analyse.linalg import safe_cholesky
from trialsim.analyse.reml import ClusterStats, ProfiledGrid, cluster_stats, profiled_grid
from trialsim.bayes.priors import EffectPrior
from trialsim.errors import UserError

__all__ = ["FastPosterior", "ScalePrior", "fast_posterior", "fast_posterior_stats"]

N_RATIO = 64  # trapezoid nodes in t = u / (u + u0)
N_SIGMA = 10  # Gauss-Hermite nodes in log sigma
T_MAX = 32.0 / 33.0  # u up to 32 u0
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass(frozen=True)
class ScalePrior:
    """Prior of a standard deviation: ``half-normal`` or ``half-t`` (``nu`` df) with ``scale``."""

    family: str
    scale: float
    nu: float = 3.0

    def __post_init__(self) -> None:
        if self.family not in ("half-normal", "half-t"):
            raise UserError(f"group-SD prior must be half-normal or half-t, got {self.family!r}")
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise UserError(f"group-SD prior scale must be positive, got {self.scale}")
        if not self.nu > 0:
            raise UserError(f"half-t degrees of freedom must be positive, got {self.nu}")

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        z = np.asarray(x) / self.scale
        if self.family == "half-normal":
            core = -0.5 * z**2 - _LOG_SQRT_2PI
        else:
            core = stats.t.logpdf(z, self.nu)
        return math.log(2.0) - math.log(self.scale) + core

    def describe(self) -> str:
        if self.family == "half-normal":
            return f"half-normal(scale={self.scale:.4g})"
        return f"half-t(nu={self.nu:g}, scale={self.scale:.4g})"

    def pymc(self, name: str):
        """The same prior as a PyMC random variable (inside a model context)."""
        import pymc as pm

        if self.family == "half-normal":
            return pm.HalfNormal(name, sigma=self.scale)
        return pm.HalfStudentT(name, nu=self.nu, sigma=self.scale)


@dataclass(frozen=True)
class FastPosterior:
    """Marginal posterior of the effect for R replicates, as a mixture of normals.

    ``weights``, ``means`` and ``sds`` have shape (R, K); ``failed`` (R,) marks replicates
    that could not be fitted (rank-deficient design, too few rows): their summaries are NaN.
    """

    weights: np.ndarray
    means: np.ndarray
    sds: np.ndarray
    failed: np.ndarray
    prior: EffectPrior
    group_prior: ScalePrior

    @property
    def mean(self) -> np.ndarray:
        m = (self.weights * self.means).sum(axis=1)
        return np.where(self.failed, np.nan, m)

    @property
    def sd(self) -> np.ndarray:
        m = (self.weights * self.means).sum(axis=1)
        second = (self.weights * (self.sds**2 + self.means**2)).sum(axis=1)
        return np.where(self.failed, np.nan, np.sqrt(np.maximum(second - m**2, 0.0)))

    def cdf(self, x) -> np.ndarray:
        """P(effect <= x) per replicate; ``x`` scalar or (R,)."""
        x = np.broadcast_to(np.asarray(x, dtype=float), self.failed.shape)
        z = (x[:, None] - self.means) / self.sds
        out = (self.weights * special.ndtr(z)).sum(axis=1)
        return np.where(self.failed, np.nan, out)

    def prob_greater(self, x) -> np.ndarray:
        """P(effect > x) per replicate."""
        return 1.0 - self.cdf(x)

    def quantile(self, q: float, *, tol: float = 1e-10) -> np.ndarray:
        """The q-quantile per replicate (safeguarded Newton on the mixture CDF)."""
        mean, sd = self.mean, self.sd
        ok = ~self.failed
        x = np.where(ok, mean + special.ndtri(q) * sd, 0.0)
        lo = np.where(ok, (self.means - 10 * self.sds).min(axis=1), -1.0)
        hi = np.where(ok, (self.means + 10 * self.sds).max(axis=1), 1.0)
        for _ in range(60):
            z = (x[:, None] - self.means) / self.sds
            f = (self.weights * special.ndtr(z)).sum(axis=1) - q
            dens = (self.weights * np.exp(-0.5 * z**2) / (self.sds * math.sqrt(2 * math.pi))).sum(
                axis=1
            )
            lo, hi = np.where(f < 0, x, lo), np.where(f > 0, x, hi)
            with np.errstate(divide="ignore", invalid="ignore"):
                step = x - f / dens
            x_new = np.where((step > lo) & (step < hi) & np.isfinite(step), step, 0.5 * (lo + hi))
            done = np.abs(x_new - x) <= tol * (1.0 + np.abs(x))
            x = x_new
            if done[ok].all():
                break
        return np.where(ok, x, np.nan)

    def interval(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Equal-tailed credible interval."""
        return self.quantile((1 - level) / 2), self.quantile((1 + level) / 2)


def _ratio_grid(u0: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes u and trapezoid weights du over [0, 32 u0] on a uniform grid in t = u/(u+u0)."""
    t = np.linspace(0.0, T_MAX, n)
    h = t[1] - t[0]
    w_t = np.full(n, h)
    w_t[[0, -1]] = h / 2
    u = u0 * t / (1.0 - t)
    return u, w_t * u0 / (1.0 - t) ** 2


def _sigma_ols(S: np.ndarray, failed: np.ndarray, resid: np.ndarray) -> float:
    """Residual SD without random effects (last Cholesky pivot of ``W'W``), median over the
    batch: the scale of the default ratio grids."""
    L, ok = safe_cholesky(S)
    piv = np.diagonal(L, axis1=-2, axis2=-1)[:, -1]
    good = ~failed & ok & (piv > 0)
    return float(np.median(piv[good] / np.sqrt(resid[good]))) if good.any() else 1.0


def _default_ratio_scale(term_prior: ScalePrior, sigma_ols: float) -> float:
    """``u0``, the middle of the grid in ``u = tau / sigma``: ``min(0.5, 2 scale / sigma)``
    so that a narrow SD prior is resolved too."""
    return min(0.5, 2.0 * term_prior.scale / max(sigma_ols, 1e-300))


def mixture_posterior(
    grid: ProfiledGrid,
    ratio_sd: np.ndarray,
    log_du: np.ndarray,
    *,
    prior: EffectPrior,
    term_priors: tuple[ScalePrior, ...],
    failed: np.ndarray,
    n_sigma: int = N_SIGMA,
) -> FastPosterior:
    """The posterior of the effect as a mixture over variance-ratio nodes and ``log sigma``.

    ``grid`` holds the profiled likelihood (R, K) at K nodes whose ratio SDs
    ``u_t = tau_t / sigma`` are ``ratio_sd`` (K, T) for the T random-intercept terms with a
    prior (terms held at zero are left out); ``log_du`` (K,) the log quadrature weights in
    ``u``. The joint posterior of ``(u, sigma)`` is the module docstring's with one factor
    ``p_tau_t(u_t sigma) sigma`` per term (the Jacobian of ``tau_t = u_t sigma``), so the power
    of sigma is ``-(n - p - T)`` in ``s = log sigma``.
    """
    n_terms = ratio_sd.shape[1]
    resid = grid.resid_df
    chol_ok = grid.ok
    log_det_m, Qres, c_kk, beta_hat = grid.log_det_xx, grid.Q, grid.c_kk, grid.beta
    # Gauss-Hermite in s = log sigma around the conditional mode of sigma^2 = Q/(n-p-T)
    x_gh, w_gh = np.polynomial.hermite.hermgauss(n_sigma)
    nu = np.maximum(resid - n_terms, 1.0)[:, None]  # (R, 1)
    s_mode = 0.5 * np.log(Qres / nu)
    c_s = math.sqrt(2.0) / np.sqrt(2.0 * nu)  # sqrt(2) x conditional SD of log sigma
    s = s_mode[..., None] + c_s[..., None] * x_gh  # (R, K, J)
    sigma2 = np.exp(2.0 * s)
    log_h = (
        -(resid[:, None, None] - n_terms) * s
        - 0.5 * Qres[..., None] / sigma2
        - 0.5 * (grid.log_v + log_det_m)[..., None]
    )
    for t, term_prior in enumerate(term_priors):
        log_h = log_h + term_prior.logpdf(ratio_sd[:, t, None] * np.exp(s))
    var_lik = sigma2 * c_kk[..., None]
    b = np.broadcast_to(beta_hat[..., None], var_lik.shape)
    if prior.flat:
        post_mean, post_var = b, var_lik
    else:
        total = var_lik + prior.sd**2
        log_h = log_h - 0.5 * (b - prior.mean) ** 2 / total - 0.5 * np.log(total)
        post_var = 1.0 / (1.0 / var_lik + 1.0 / prior.sd**2)
        post_mean = post_var * (b / var_lik + prior.mean / prior.sd**2)
    log_w = log_h + np.log(w_gh) + x_gh**2 + np.log(c_s)[..., None] + log_du[None, :, None]
    log_w = np.where(chol_ok[..., None], log_w, -np.inf)
    n_rep = log_w.shape[0]
    log_w = log_w.reshape(n_rep, -1)
    log_w -= log_w.max(axis=1, keepdims=True)
    weights = np.exp(log_w)
    weights /= weights.sum(axis=1, keepdims=True)
    failed = failed | ~np.isfinite(weights).all(axis=1)
    return FastPosterior(
        weights=np.where(failed[:, None], 1.0 / weights.shape[1], weights),
        means=np.where(failed[:, None], 0.0, post_mean.reshape(n_rep, -1)),
        sds=np.where(failed[:, None], 1.0, np.sqrt(post_var).reshape(n_rep, -1)),
        failed=failed,
        prior=prior,
        group_prior=term_priors[0] if term_priors else None,
    )


def fast_posterior_stats(
    stats_: ClusterStats,
    *,
    prior: EffectPrior,
    group_prior: ScalePrior,
    coef: int = 1,
    ratio_scale: float | None = None,
    n_ratio: int = N_RATIO,
    n_sigma: int = N_SIGMA,
) -> FastPosterior:
    """Exact (quadrature) posterior of coefficient ``coef`` from :func:`cluster_stats` output.

    Parameters
    ----------
    stats_ : sufficient statistics of R replicates.
    prior : prior of the effect (normal or flat).
    group_prior : prior of the random-intercept SD ``tau`` (outcome units).
    coef : column of X whose coefficient is the effect.
    ratio_scale : ``u0``, the middle of the grid in ``u = tau / sigma``; default
        ``min(0.5, 2 scale / sigma_ols)`` so that a narrow group-SD prior is resolved too.
    n_ratio, n_sigma : quadrature nodes in ``u`` and ``log sigma``.
    """
    S, T = stats_.cross, stats_.cross_size
    q = S.shape[-1]
    p = q - 1
    coef = coef % p
    resid = stats_.n_obs.astype(float) - p
    failed = resid < 2.0
    S = np.where(failed[:, None, None], np.eye(q), S)
    T = np.where(failed[:, None, None, None], 0.0, T)
    n_size = np.where(failed[:, None], 0.0, stats_.n_size)
    resid = np.where(failed, 2.0, resid)
    if ratio_scale is None:
        ratio_scale = _default_ratio_scale(group_prior, _sigma_ols(S, failed, resid))
    u, du = _ratio_grid(ratio_scale, n_ratio)
    neutral = ClusterStats(
        cross=S,
        sizes=stats_.sizes,
        n_size=n_size,
        cross_size=T,
        n_obs=resid + p,
        n_clusters=stats_.n_clusters,
    )
    grid = profiled_grid(neutral, u**2, coef=coef)  # the REML engine's profiled likelihood
    return mixture_posterior(
        grid,
        u[:, None],
        np.log(np.where(du > 0, du, 1e-300)),
        prior=prior,
        term_priors=(group_prior,),
        failed=failed,
        n_sigma=n_sigma,
    )


def fast_posterior(
    y: np.ndarray,
    X: np.ndarray,
    cluster: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    prior: EffectPrior,
    group_prior: ScalePrior,
    coef: int = 1,
    **kwargs,
) -> FastPosterior:
    """Exact posterior of the effect for a batch: ``y`` (R, N), ``X`` (R, N, p), ``cluster``
    (R, N) ids with -1 for no random effect (see :func:`fast_posterior_stats`).

    Example
    -------
    >>> a = ancova_arrays(data, "psp")                                      # doctest: +SKIP
    >>> post = fast_posterior(a.y, a.X, a.group, a.mask, prior=EffectPrior("flat", 0, inf),
    ...                       group_prior=ScalePrior("half-normal", 6.5))  # doctest: +SKIP
    >>> post.prob_greater(7.0)                                              # doctest: +SKIP
    """
    return fast_posterior_stats(
        cluster_stats(y, X, cluster, mask),
        prior=prior,
        group_prior=group_prior,
        coef=coef,
        **kwargs,
    )

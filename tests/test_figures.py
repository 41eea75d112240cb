"""Figures are checked by what they draw (legend texts, axis labels, shaded areas, line
positions), captured from the figure just before it is written, not only that a file exists.

Oracles: the highest-density interval of normal draws against the normal quantiles
(+-1.96 SD, within 0.05 SD for 20,000 draws); the KDE integrates to one; the shaded area
beyond the MCID equals the share of draws beyond it (the number in the legend).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tests.conftest import SFT
from trialsim.report import style


@pytest.fixture
def captured(monkeypatch):
    """Figures passed to save_figure, kept open for inspection (files are still written)."""
    figures = []
    real = style.save_figure

    def keep(fig, path, **kw):
        figures.append(fig)  # closed by save_figure, but its artists stay readable
        return real(fig, path, **kw)

    monkeypatch.setattr(style, "save_figure", keep)
    for module in (
        "trialsim.bayes.plots",
        "trialsim.design.figures",
        "trialsim.report.plots",
        "trialsim.report.timeline",
    ):
        monkeypatch.setattr(f"{module}.save_figure", keep)
    return figures


def _renderer(fig):
    """A fresh Agg canvas for a figure save_figure has closed; draws it, returns the renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _legend(ax) -> list[str]:
    legend = ax.get_legend() or ax.figure.legends[0]
    return [t.get_text() for t in legend.get_texts()]


def _vlines(ax) -> dict[str, float]:
    """Label -> x of vertical lines (axvline)."""
    out = {}
    for line in ax.get_lines():
        x = np.asarray(line.get_xdata(), dtype=float)
        if len(x) == 2 and x[0] == x[1]:
            out[line.get_label()] = float(x[0])
    return out


def _shaded(ax) -> list:
    from matplotlib.collections import PolyCollection

    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def test_hdi_and_kde_against_the_normal_distribution():
    from trialsim.bayes.plots import hdi, kde_curve

    draws = np.random.default_rng(3).normal(2.0, 1.5, 20_000)
    lo, hi = hdi(draws)
    import arviz as az

    assert (lo, hi) == tuple(az.hdi(draws, hdi_prob=0.95))  # the summary table's numbers
    assert abs(lo - (2.0 - 1.96 * 1.5)) < 0.05 * 1.5
    assert abs(hi - (2.0 + 1.96 * 1.5)) < 0.05 * 1.5
    grid, dens = kde_curve(draws)
    assert abs(np.trapezoid(dens, grid) - 1) < 1e-3
    assert np.max(np.abs(dens - stats.norm.pdf(grid, 2.0, 1.5))) < 0.02
    # reflected at a bound: half-normal draws, no mass below 0, still integrates to one
    half = np.abs(draws - 2.0)
    grid, dens = kde_curve(half, lower=0.0)
    assert grid[0] == 0.0 and abs(np.trapezoid(dens, grid) - 1) < 0.01
    assert abs(dens[0] - 2 * stats.norm.pdf(0, 0, 1.5)) < 0.05  # the half-normal's density at 0


@pytest.mark.parametrize("better", ["higher", "lower"])
def test_posterior_plot_marks_the_signed_mcid_hdi_and_area_beyond(tmp_path, captured, better):
    from trialsim.bayes.plots import plot_posterior_mcid

    sign = 1 if better == "higher" else -1
    draws = np.random.default_rng(1).normal(sign * 4.0, 2.0, (2, 2000))
    mcid = sign * 5.0  # as the CLI passes it: BayesSettings.signed_mcid
    path = plot_posterior_mcid(
        draws, mcid, tmp_path / "post.svg", xlabel="difference in PSP (points, 1-100 scale)"
    )
    assert path.read_text().lstrip().startswith("<?xml")  # vector output by suffix
    ax = captured[-1].axes[0]
    texts = _legend(ax)
    minus = "\u2212"
    assert f"MCID ({'' if sign > 0 else minus}5)" in texts
    assert _vlines(ax)[f"MCID ({'' if sign > 0 else minus}5)"] == mcid
    p = np.mean(draws >= 5) if sign > 0 else np.mean(draws <= -5)
    assert f"P(beyond MCID) = {p:.2f}" in texts
    assert any(t.startswith("95% HDI") for t in texts)
    assert len(_shaded(ax)) == 2  # the HDI and the area beyond the MCID
    beyond = _shaded(ax)[1].get_paths()[0].vertices[:, 0]
    assert (beyond * sign >= 5 - 0.1).all()  # shaded only beyond the MCID
    assert ax.get_xlabel() == "difference in PSP (points, 1-100 scale)"
    assert ax.get_ylabel() == "posterior density"


def test_trace_titles_do_not_overlap_tick_labels(tmp_path, captured):
    from types import SimpleNamespace

    from trialsim.bayes.plots import plot_trace

    rng = np.random.default_rng(2)
    draws = {"effect": rng.normal(size=(2, 300)), "tau": np.abs(rng.normal(size=(2, 300)))}
    # the part of an ArviZ InferenceData the plot reads: posterior[name].values (chain, draw)
    idata = SimpleNamespace(posterior={k: SimpleNamespace(values=v) for k, v in draws.items()})
    plot_trace(idata, ["effect", "tau"], tmp_path / "trace.png")
    fig = captured[-1]
    renderer = _renderer(fig)
    for ax in fig.axes:
        title = ax.title.get_window_extent(renderer)
        for other in fig.axes:
            if other is ax:
                continue
            for label in other.get_xticklabels():
                if label.get_text():
                    assert not title.overlaps(label.get_window_extent(renderer))
    assert [t for t in _legend(fig.axes[0])] == ["chain 1", "chain 2"]


def test_reanalysis_of_a_ratio_is_drawn_on_a_ratio_axis(tmp_path, captured):
    from trialsim.bayes.plots import plot_reanalysis
    from trialsim.bayes.reanalysis import reanalyse

    r = reanalyse(0.75, ci=(0.55, 1.02), scale="log", mcid=0.52, better="lower", prior="sceptical")
    plot_reanalysis(r, tmp_path / "re.png")
    ax = captured[-1].axes[0]
    assert ax.get_xscale() == "log"
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert {"0.5", "0.75", "1", "1.5"} <= set(ticks)
    lines = _vlines(ax)
    assert lines["no effect (1)"] == 1.0
    mcid = [v for k, v in lines.items() if k.startswith("MCID")][0]
    assert mcid == pytest.approx(np.exp(r.mcid)) and mcid < 1  # lower is better: below 1
    assert any(t.startswith("P(beyond MCID) = ") for t in _legend(ax))
    assert "ratio" in ax.get_xlabel()


def test_running_power_has_target_and_analytic_reference(tmp_path, captured):
    from trialsim.report.plots import running_power_plot

    p = {"mixed": np.random.default_rng(4).uniform(size=400) ** 2}
    running_power_plot(p, 0.05, tmp_path / "rp.pdf", analytic=0.62)
    assert (tmp_path / "rp.pdf").read_bytes().startswith(b"%PDF")
    texts = _legend(captured[-1].axes[0])
    assert "target power 80%" in texts and "analytic formula 0.62" in texts
    assert "±1.96 Monte Carlo SE (Wilson)" in texts


def test_wilson_interval_against_statsmodels():
    from statsmodels.stats.proportion import proportion_confint

    from trialsim.report.plots import wilson

    n = np.array([10, 10, 200, 2000])
    k = np.array([10, 0, 123, 1730])
    lo, hi = wilson(k / n, n)
    ref = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert np.allclose(lo, ref[0], atol=2e-4) and np.allclose(hi, ref[1], atol=2e-4)


def _sweep_table():
    rows = []
    for icc in (0.0, 0.05, 0.1):
        for size in (5.0, 6.3, 8.0):
            rows.append(
                {
                    "groups.icc_group": icc,
                    "groups.mean_size": size,
                    "analysis": "mixed",
                    "power": 0.9 - icc - 0.01 * size,
                    "power_mcse": 0.02,
                    "type1": 0.05,
                    "type1_mcse": 0.01,
                    "analytic_power": 0.8 - icc,
                    "error": np.nan,
                }
            )
    return pd.DataFrame(rows)


def test_sweep_curves_and_heatmap_carry_human_labels_mcse_and_type1(tmp_path, captured):
    from trialsim.design.figures import sweep_figures
    from trialsim.design.grid import parse_vary

    axes = [parse_vary("groups.icc_group=0,0.05,0.1"), parse_vary("groups.mean_size=5,6.3,8")]
    paths = sweep_figures(_sweep_table(), axes, tmp_path)
    assert len(paths) == 3
    curve = captured[0].axes[0]
    assert curve.get_xlabel() == "group ICC"
    assert "80 % target" in _legend(curve) and "±1.96 Monte Carlo SE" in _legend(curve)
    assert "mean group size (participants) = 5" in _legend(curve)
    assert len(_shaded(curve)) >= 3  # an MCSE band per line
    assert captured[1].axes[0].get_xlabel() == "mean group size (participants)"
    heat = captured[2]
    titles = [a.get_title() for a in heat.axes]
    assert "power (± one MCSE)" in titles and "type-I error (± one MCSE)" in titles
    cell_texts = [t.get_text() for t in heat.axes[0].texts]
    assert "0.84\n±0.02" in cell_texts


@pytest.mark.slow  # ten panels with twin axes, drawn twice: ~5 s on an idle machine
def test_recruitment_timeline_ticks_labels_and_legend(tmp_path, captured):
    from trialsim.report.timeline import timeline_plot
    from trialsim.scenario import load_scenario
    from trialsim.simulate.recruitment import simulate_recruitment

    res = simulate_recruitment(load_scenario(SFT), 16, seed=1)
    timeline_plot(res, tmp_path / "t.png")
    fig = captured[-1]
    _renderer(fig)
    panels = [
        a for a in fig.axes if a.get_visible() and a.get_ylabel() != "groups" and a.get_title()
    ]
    assert len(panels) == 10
    for ax in panels:
        assert any(t.get_text() for t in ax.get_xticklabels()), ax.get_title()
        ticks = ax.get_yticks()
        assert np.allclose(ticks, np.round(ticks))  # whole people
    legend = next(a.get_legend() for a in fig.axes if a.get_legend() is not None)
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts == [
        "people enrolled, control",
        "people enrolled, treatment",
        "groups started",
        "groups cancelled",
    ]
    assert legend.get_title().get_text() == "line: median; band: 10th-90th percentile"
    # each entry shows its band's colour under its line
    from matplotlib.colors import to_rgb

    band = legend.legend_handles[0]
    assert np.allclose(band.get_facecolor()[:3], to_rgb(style.BLUE))


def test_style_labels_for_keys_and_effects():
    from trialsim.scenario import load_scenario

    assert style.key_label("groups.icc_group") == "group ICC"
    assert style.key_label("outcomes.psp.effect") == "PSP effect (outcome units)"
    assert style.key_label("foo.bar_baz") == "bar baz"
    spec = load_scenario(SFT).structure.outcome("psp")
    assert style.effect_label("psp", spec) == "difference in PSP (points, 1-100 scale)"
    assert style.signed(-5.0) == "\u22125"


def test_save_figure_formats_and_bad_suffix(tmp_path):
    plt = style.pyplot()
    for suffix, magic in ((".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")):
        fig, ax = plt.subplots()
        ax.plot([0, 1])
        assert style.save_figure(fig, tmp_path / f"f{suffix}").read_bytes().startswith(magic)
    fig, _ = plt.subplots()
    with pytest.raises(ValueError, match="must end in"):
        style.save_figure(fig, tmp_path / "f.jpg")
    assert not (tmp_path / "f.jpg").exists()

"""`report.html` rendered in a real browser (headless Chromium, Debian's ``chromium``).

The page is loaded at 800 px width (and at the A4 text width, 680 px) with a probe script
appended that measures, after every image has loaded, whether the page scrolls sideways
(``scrollWidth > clientWidth``), which elements stick out on the right, and which images
failed to decode (``naturalWidth == 0``). The measurements come back through
``--dump-dom``. Skipped, with the reason, only when no chromium binary is installed
(``apt-get install chromium``; ``scripts/setup`` installs it).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import matplotlib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from trialsim.cli import main
from trialsim.files import write_json

matplotlib.use("Agg")

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
    None,
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary (apt-get install chromium) to render the report"
)

PROBE = """
<script>
window.addEventListener('load', function () {
  var d = document.documentElement, w = d.clientWidth, wide = [];
  document.querySelectorAll('body *').forEach(function (e) {
    var r = e.getBoundingClientRect();
    if (r.right > w + 0.5 && r.width > 0) wide.push(e.tagName + ':' + Math.round(r.right));
  });
  var broken = [];
  document.querySelectorAll('img').forEach(function (i) {
    if (!i.complete || i.naturalWidth === 0) broken.push(i.alt);
  });
  var out = document.createElement('pre');
  out.id = 'trialsim-probe';
  out.textContent = JSON.stringify({client: w, scroll: d.scrollWidth, wide: wide.slice(0, 20),
    images: document.images.length, broken: broken});
  document.body.appendChild(out);
});
</script>
"""


def render_probe(html_path, tmp_path, width: int) -> dict:
    """Measurements of ``html_path`` rendered by headless Chromium at ``width`` px."""
    probed = tmp_path / f"probe-{width}.html"
    probed.write_text(html_path.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"))
    run = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={width},1000",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r'<pre id="trialsim-probe">(.*?)</pre>', run.stdout, re.S)
    assert found, f"chromium gave no measurements (exit {run.returncode}): {run.stderr[-500:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def _results(tmp_path):
    """A results folder with the outputs whose tables are widest: a power JSON, a design
    comparison with many columns, a sweep over two keys, long provenance lines, a figure."""
    import matplotlib.pyplot as plt

    root = tmp_path / "res"
    (root / "compare").mkdir(parents=True)
    (root / "sweep").mkdir()
    write_json(
        root / "power.json",
        {
            "scenario": "s",
            "outcome": "psp",
            "alpha": 0.05,
            "seed": 1,
            "versions": {"python": "3.11", "numpy": "2"},
            "analyses": [
                {
                    "analysis": "mixed",
                    "method": "simulation",
                    "reps": 2000,
                    "truth": 4.2,
                    "power": 0.6234,
                    "power_mcse": 0.011,
                    "type1": 0.051,
                    "type1_mcse": 0.005,
                    "bias": -0.01,
                    "bias_mcse": 0.04,
                    "coverage": 0.948,
                    "coverage_mcse": 0.005,
                    "failures": 0,
                }
            ],
            "analytic": {"formula": "irgt", "power": 0.61, "effect": 4.2, "n_groups": 27},
        },
    )
    rng = np.random.default_rng(1)
    designs = ["individual", "cohort", "municipality", "stepped-wedge", "waitlist"]
    columns = {c: rng.uniform(0, 1, 5) for c in ("power", "power_mcse", "type1", "type1_mcse")}
    frame = pd.DataFrame({"design": designs, "analysis": "mixed", **columns})
    for i in range(20):  # a 24-column table, as compare writes
        frame[f"extra_quantity_number_{i}"] = rng.uniform(1000, 100000, 5)
    frame.to_csv(root / "compare" / "other.csv", index=False)
    write_json(
        root / "compare" / "compare.json",
        {"target_power": 0.8, "rows": frame.assign(groups_needed=49).to_dict("records")},
    )
    cells = [(icc, size) for icc in (0.0, 0.05, 0.1, 0.15) for size in (5, 6.3, 8, 10, 12)]
    pd.DataFrame(
        {
            "cell": [f"c{i}" for i in range(len(cells))],
            "groups.icc_group": [c[0] for c in cells],
            "groups.mean_size": [c[1] for c in cells],
            "analysis": "mixed",
            "reps": 300,
            "power": rng.uniform(0.5, 0.95, len(cells)),
            "power_mcse": 0.02,
            "type1": rng.uniform(0.03, 0.07, len(cells)),
            "type1_mcse": 0.012,
        }
    ).to_csv(root / "sweep" / "results.csv", index=False)
    write_json(
        root / "sweep" / "provenance.json",
        {
            "command_line": "trialsim sweep scenarios/sft-19m.toml " + "--vary x=1,2,3 " * 12,
            "scenario_file": "scenarios/sft-19m.toml",
            "scenario_file_sha256": "e" * 64,
            "packages": {"numpy": "2"},
            "seed": 3,
        },
    )
    fig, ax = plt.subplots(figsize=(12, 3))  # wider than the page: must be scaled down
    ax.plot([0, 1], [0, 1])
    fig.savefig(root / "running-power.png", dpi=150)
    plt.close(fig)
    return root


@pytest.mark.parametrize("width", [800, pytest.param(680, marks=pytest.mark.slow)])
def test_report_fits_the_width_and_shows_every_image(tmp_path, width):
    root = _results(tmp_path)
    result = CliRunner().invoke(main, ["report", str(root)])
    assert result.exit_code == 0, result.output
    m = render_probe(root / "report.html", tmp_path, width)
    assert m["client"] <= width
    assert m["scroll"] <= m["client"], f"scrolls sideways at {width} px: {m['wide']}"
    assert m["wide"] == []
    assert m["images"] == 1 and m["broken"] == []


@pytest.mark.slow
def test_the_probe_sees_overflow_and_a_broken_image(tmp_path):
    """The measurement itself is checked: a 2000 px table and an undecodable image fail."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><body><table><tr><td style="white-space:nowrap">'
        + "x" * 400
        + '</td></tr></table><img alt="broken" src="data:image/png;base64,AAAA"></body></html>'
    )
    m = render_probe(page, tmp_path, 800)
    assert m["scroll"] > m["client"]
    assert m["broken"] == ["broken"]


def test_multi_arm_power_section_fits_800_px(tmp_path):
    from tests.test_report import three_arm_power_folder

    root = three_arm_power_folder(tmp_path)
    result = CliRunner().invoke(main, ["report", str(root)])
    assert result.exit_code == 0, result.output
    m = render_probe(root / "report.html", tmp_path, 800)
    assert m["scroll"] <= m["client"], f"scrolls sideways at 800 px: {m['wide']}"
    assert m["wide"] == []

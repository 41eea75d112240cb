"""Provenance records and `trialsim report` (Markdown and standalone HTML).

Oracles: the scenario file hash is recomputed with hashlib; package versions come from
importlib.metadata; the embedded figure decodes to the PNG's bytes.
"""

import base64
import hashlib
import json
import re
from importlib import metadata

import numpy as np
import pandas as pd
from click.testing import CliRunner

from tests.conftest import SFT
from trialsim.cli import main
from trialsim.files import write_bytes, write_json
from trialsim.report.provenance import build_provenance, read_provenance, write_provenance
from trialsim.scenario import load_scenario


def _results_folder(tmp_path):
    """A folder like the commands write: provenance, a CSV with MCSEs, a JSON, a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = load_scenario(SFT)
    folder = tmp_path / "res"
    write_provenance(
        folder,
        build_provenance(
            command="compare",
            scenario_path=SFT,
            scenario=s,
            seed=42,
            argv=["trialsim", "compare", str(SFT), "--reps", "10"],
            reps=10,
        ),
    )
    pd.DataFrame(
        {"design": ["individual", "cohort"], "power": [0.81, 0.45], "power_mcse": [0.012, 0.016]}
    ).to_csv(folder / "compare.csv", index=False)
    write_json(
        folder / "summary.json", {"scenario": s.name, "rows": [{"a": 1, "b": np.float64(2.5)}]}
    )
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    fig.savefig(folder / "figure.png")
    plt.close(fig)
    sub = folder / "sweep" / "cells"
    sub.mkdir(parents=True)
    (sub / "abc.json").write_text("{}")  # per-cell files are not reported
    return folder


def test_provenance_record(tmp_path):
    s = load_scenario(SFT)
    p = build_provenance(
        command="sweep",
        scenario_path=SFT,
        scenario=s,
        seed=7,
        argv=["/x/bin/trialsim", "sweep", "a b"],
        reps=3,
    )
    assert p["scenario_file_sha256"] == hashlib.sha256(SFT.read_bytes()).hexdigest()
    assert p["scenario_sha256"] == s.digest()
    assert p["packages"]["numpy"] == metadata.version("numpy")
    assert p["command_line"] == "trialsim sweep 'a b'"
    assert p["seed"] == 7 and p["settings"] == {"reps": 3}
    write_provenance(tmp_path, p)
    assert read_provenance(tmp_path) == json.loads(json.dumps(p))


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    write_bytes(tmp_path / "a.bin", b"123")
    write_json(tmp_path / "b.json", {"x": np.int64(3), "y": np.arange(2)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.json"]
    assert json.loads((tmp_path / "b.json").read_text()) == {"x": 3, "y": [0, 1]}


def test_report_markdown_and_html(tmp_path):
    folder = _results_folder(tmp_path)
    result = CliRunner().invoke(main, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    md = (folder / "report.md").read_text()
    html = (folder / "report.html").read_text()
    sha = hashlib.sha256(SFT.read_bytes()).hexdigest()
    for text in (md, html):
        assert sha in text
        assert f"numpy {metadata.version('numpy')}" in text
        assert "--reps 10" in text
        assert "0.81 ± 0.012" in text  # a figure shown with its Monte Carlo SE
        assert "abc.json" not in text
    assert "![figure.png](figure.png)" in md
    embedded = re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1)
    assert base64.b64decode(embedded) == (folder / "figure.png").read_bytes()
    assert "<script" not in html


def test_report_on_empty_or_missing_folder_is_one_line(tmp_path):
    for folder in (tmp_path, tmp_path / "missing"):
        result = CliRunner().invoke(main, ["report", str(folder)])
        assert result.exit_code == 2 and result.output.startswith("error: ")
        assert "Traceback" not in result.output

"""Write a calibrated scenario as a commented TOML file (atomically)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from trialsim.calibrate.estimate import Calibration
from trialsim.errors import UserError
from trialsim.files import write_text
from trialsim.scenario import scenario_from_dict

_TABLES = ("design", "sites", "groups", "attendance", "correlation", "dropout", "blinding")


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if v == v else "nan"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def _lines(table: dict, prefix: str, notes: dict[str, str]) -> list[str]:
    out = []
    for key, v in table.items():
        if v is None or isinstance(v, dict):
            continue
        line = f"{key} = {_value(v)}"
        note = notes.get(f"{prefix}{key}")
        out.append(f"{line:<34} # {note}" if note else line)
    return out


def scenario_toml(cal: Calibration, *, source: str, date: str, template_path: str) -> str:
    """The TOML text of a calibration, with the provenance and a note on every estimate."""
    raw, notes = cal.raw, cal.notes
    priors = raw["design_priors"]
    head = [
        f"# Calibrated by `trialsim calibrate` from {source} on {date}, n={cal.n_participants} "
        "participants.",
        f"# Values with a note are estimated from those data; the rest are kept from the "
        f"template {template_path}",
        "# (assumptions: check them). Use it as any scenario, e.g.",
        f"#   trialsim power scenarios/{raw['name']}.toml",
        "# and its [design_priors] (the posterior uncertainty of the effect and the group ICC) "
        "for assurance:",
        f"#   trialsim assurance scenarios/{raw['name']}.toml --design-prior "
        f"effect={priors['effect']} --design-prior icc={priors['icc']}",
        "",
    ]
    body = _lines({k: raw[k] for k in ("name", "description", "primary_outcome")}, "", notes)
    for table in _TABLES:
        body += ["", f"[{table}]", *_lines(raw[table], f"{table}.", notes)]
    for name, outcome in raw["outcomes"].items():
        body += ["", f"[outcomes.{name}]", *_lines(outcome, f"outcomes.{name}.", notes)]
    body += [
        "",
        "[design_priors]",
        "# Posterior of the ITT effect (mean, SD) and a Beta matched to the posterior of the",
        "# group ICC (its prior: see groups.icc_group), from the partially nested model of the",
        "# primary outcome. Assurance draws the effect and the ICC from these.",
        *_lines(priors, "design_priors.", notes),
    ]
    return "\n".join(head + body) + "\n"


def write_scenario(cal: Calibration, path: str | Path, **provenance) -> Path:
    """Write :func:`scenario_toml` to ``path`` after checking it loads back (atomic)."""
    path = Path(path)
    if path.suffix.lower() != ".toml":
        raise UserError(f"{path}: a scenario file must end in .toml")
    text = scenario_toml(cal, **provenance)
    scenario_from_dict(tomllib.loads(text), source=str(path))
    return write_text(path, text)

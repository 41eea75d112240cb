from pathlib import Path

import pytest

from trialsim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SFT = ROOT / "scenarios" / "sft-19m.toml"

# a clean world for calibration checks: continuous PSP without rounding or bounds, no
# dropout, blinded assessors, no municipality or trainer variance
CLEAN = (
    "outcomes.psp.step=0",
    "outcomes.psp.lower=-1000",
    "outcomes.psp.upper=1000",
    "dropout.completion_target=1",
    "blinding.assessor_unblinded_prob=0",
    "groups.icc_municipality=0",
    "groups.icc_trainer=0",
)


@pytest.fixture(scope="session")
def sft():
    return load_scenario(SFT)


def scenario(*overrides: str, outcomes=("psp",)):
    """The SFT scenario with overrides, simulating only ``outcomes``."""
    s = load_scenario(SFT, list(overrides))
    return s.with_outcomes(list(outcomes)) if outcomes else s

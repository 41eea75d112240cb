"""Random streams keyed by (root seed, scenario, replicate block, component).

Replicates are drawn in fixed blocks of :data:`BLOCK_SIZE`; every block has its own
``SeedSequence`` per simulator component. Replicate r is therefore identical whether it is
drawn alone, in a batch or in chunks on any number of workers, and two designs of the same
scenario share the streams of the components whose shapes they share (common random numbers).
"""

from __future__ import annotations

import hashlib

import numpy as np

BLOCK_SIZE = 256

#: root seeds are integers 0 .. 2**63 - 1 (negative or larger ones are refused, not wrapped)
MAX_SEED = 2**63 - 1

COMPONENTS = (
    "randomisation",
    "groups",
    "latent",
    "attendance",
    "blinding",
    "outcome_noise",
    "dropout",
    "recruitment",
)


def scenario_key(name: str) -> int:
    """A stable 32-bit key for a scenario name (the same on every machine and Python)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def check_seed(seed) -> int:
    """``seed`` as an int in 0 .. :data:`MAX_SEED`; a one-line UserError otherwise."""
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool) and 0 <= seed <= MAX_SEED:
        return int(seed)
    from trialsim.errors import UserError

    raise UserError(f"--seed {seed!r}: give a whole number from 0 to {MAX_SEED}")


def block_rng(seed: int, scenario_name: str, block: int, component: str) -> np.random.Generator:
    """The generator for one simulator component of one block of replicates."""
    check_seed(seed)
    ss = np.random.SeedSequence(
        entropy=seed,
        spawn_key=(scenario_key(scenario_name), block, COMPONENTS.index(component)),
    )
    return np.random.default_rng(ss)


def blocks_for(reps: np.ndarray) -> np.ndarray:
    """The block indices that cover the replicate indices ``reps``."""
    return np.unique(np.asarray(reps) // BLOCK_SIZE)

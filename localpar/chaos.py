"""Test-only: random short delays at the core's hand-off points, to shake out interleavings.

``LOCALPAR_CHAOS=<seed>`` in the environment (or ``enable(seed)``) makes every
``pause()`` sleep or yield for a random moment, up to ``MAX_DELAY`` seconds:
after a lock is taken, before a future completes, before a wake is written.
Off, ``pause`` is never called: each site tests the module flag first.
"""

from __future__ import annotations

import os
import random
import time

ENABLED = False
MAX_DELAY = 0.0005
_rng = random.Random()


def enable(seed: int, max_delay: float = MAX_DELAY) -> None:
    global ENABLED, MAX_DELAY
    _rng.seed(seed)
    MAX_DELAY = max_delay
    ENABLED = True


def disable() -> None:
    global ENABLED
    ENABLED = False


def pause() -> None:
    """A random delay: nothing, a yield of the CPU, or a short sleep."""
    roll = _rng.random()
    if roll < 0.5:
        return
    if roll < 0.75:
        os.sched_yield()
    else:
        time.sleep(_rng.random() * MAX_DELAY)


if os.environ.get("LOCALPAR_CHAOS"):
    enable(int(os.environ["LOCALPAR_CHAOS"]))

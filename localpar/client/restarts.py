"""When a dead engine is replaced (``restart_dead``, ``memory_limit``): at once after a
death that ends a useful life, later and later after deaths that come soon after a
start, and never again after `GIVE_UP_AFTER` of those in a row.

An engine that dies within `QUICK_DEATH_SECONDS` of its start died *quickly*: a task
that kills its engine each time it runs, a resubmitting loop, an engine that cannot
start, a memory limit below an idle engine's size.  Replacing it at once would turn
that into a fork storm.  So the n-th quick death in a row of one engine id waits
``BACKOFF_FIRST_SECONDS * 2 ** (n - 2)`` (at most `BACKOFF_MAX_SECONDS`; the first
waits nothing) before its replacement starts, and the `GIVE_UP_AFTER`-th is not
replaced: a warning says so, ``Client.status()`` lists it, and the EngineError of
the tasks it failed says so.  ``restart_engine(i)`` starts it again and forgets its
record.  A death after a longer life starts the count again.

`RestartPolicy` is called by the collector thread (at a death, before it fails the
tasks) and by the thread of ``restart_engine``; its state is guarded by its lock.
The waits themselves are the after-death helper threads' (``resources``), on the
event that ``close()`` sets.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Dict, List, Optional

QUICK_DEATH_SECONDS = 5.0
BACKOFF_FIRST_SECONDS = 0.1
BACKOFF_MAX_SECONDS = 5.0
GIVE_UP_AFTER = 5


@dataclass(frozen=True)
class Plan:
    """What to do after one death: replace after `delay` seconds, or not (`given_up`: why)."""

    delay: float
    given_up: Optional[str] = None


class RestartPolicy:
    """The quick deaths in a row of each engine id, and the ids given up on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._quick: Dict[int, int] = {}  # engine id -> quick deaths in a row
        self._given_up: Dict[int, str] = {}  # engine id -> why

    def after_death(self, engine_id: int, lived: float) -> Plan:
        """The plan for the replacement of engine `engine_id`, dead after `lived` seconds."""
        with self._lock:
            if lived >= QUICK_DEATH_SECONDS:
                self._quick.pop(engine_id, None)
                return Plan(0.0)
            n = self._quick.get(engine_id, 0) + 1
            self._quick[engine_id] = n
            if n >= GIVE_UP_AFTER:
                why = (
                    f"engine {engine_id} is not restarted: it died {n} times in a row within "
                    f"{QUICK_DEATH_SECONDS:g} s of its start; c.restart_engine({engine_id}) starts it again"
                )
                self._given_up[engine_id] = why
                return Plan(0.0, why)
            if n == 1:
                return Plan(0.0)
            return Plan(min(BACKOFF_FIRST_SECONDS * 2 ** (n - 2), BACKOFF_MAX_SECONDS))

    def forget(self, engine_id: int) -> None:
        """Engine `engine_id` was restarted by hand: its count starts again."""
        with self._lock:
            self._quick.pop(engine_id, None)
            self._given_up.pop(engine_id, None)

    def gave_up_on(self, engine_id: int) -> bool:
        """Whether engine `engine_id` is no longer restarted."""
        with self._lock:
            return engine_id in self._given_up

    def given_up(self) -> List[str]:
        """Why each engine id given up on is not restarted, by id."""
        with self._lock:
            return [self._given_up[i] for i in sorted(self._given_up)]

"""joblib's backend aborts only its own tasks (issue 23): ``abort_everything`` once dropped
every outstanding task of the client, other views' included."""

from __future__ import annotations

import time

import pytest
from conftest import HANG_GUARD

from localpar import Client

joblib = pytest.importorskip("joblib")


def fail_on(i: int) -> int:
    if i == 3:
        raise ValueError("batch 3 fails")
    time.sleep(0.01)
    return i


def test_a_failing_joblib_run_leaves_other_views_tasks_alone() -> None:
    with Client(2) as c:
        blocker = c[1].apply_async(time.sleep, 0.5)
        unrelated = [c[1].apply_async(pow, i, 2) for i in range(10)]  # queued behind the blocker
        c.load_balanced_view().register_joblib_backend("localpar-h1")
        with pytest.raises(Exception, match="batch 3 fails"):
            joblib.Parallel(n_jobs=1, backend="localpar-h1")(joblib.delayed(fail_on)(i) for i in range(20))
        blocker.get(timeout=HANG_GUARD)
        assert [ar.get(timeout=HANG_GUARD) for ar in unrelated] == [i * i for i in range(10)]

"""The client's routing: submissions never block, results come back in order."""

from __future__ import annotations

import threading

from conftest import wait_for_file


def _echo(i):
    return i


def test_submitting_to_a_busy_engine_never_blocks_on_its_full_pipe(client, tmp_path):
    """Thousands of calls queue behind a busy engine (more than its pipe holds); the
    caller gets every AsyncResult back at once, and the engine runs them in order."""
    go = tmp_path / "go"
    busy = client[0].apply_async(wait_for_file, str(go))
    payload = "x" * 200  # ~250 bytes per task: 2,000 tasks overfill a 64 KiB pipe
    submitted = []

    def submit():
        submitted.extend(client[0].apply_async(_echo, (i, payload)) for i in range(2000))

    submitter = threading.Thread(target=submit, daemon=True)
    submitter.start()
    submitter.join(timeout=30)
    try:
        assert not submitter.is_alive(), "apply_async blocked behind a busy engine"
        assert not busy.done()
        assert client[1].apply_sync(_echo, "other engine") == "other engine"  # the rest of the cluster serves
    finally:
        go.touch()
    assert busy.get(timeout=30) == str(go)
    assert [ar.get(timeout=60)[0] for ar in submitted] == list(range(2000))

"""Starting processes: every start method, from several threads at once, without re-running the
user's script and without touching multiprocessing for anyone else; forks of the client."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
from multiprocessing import spawn

import pytest
from conftest import HANG_GUARD

from localpar import Client


def run_script(tmp_path, body: str, timeout: float = 120) -> subprocess.CompletedProcess:
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(body))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_engines_start_from_two_threads_at_once(method, leak_check):
    with Client(1, start_method=method) as c:
        added, errors = [], []

        def add() -> None:
            try:
                added.extend(c.add_engines(1))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=add) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=HANG_GUARD * 6)
        assert not errors
        assert sorted(added) == [1, 2]
        assert c.ids == [0, 1, 2]
        pids = c[:].apply_sync(os.getpid)
        assert len(set(pids)) == 3


UNGUARDED = """
    import threading
    from multiprocessing import spawn
    from localpar import Client

    print("script body ran", flush=True)
    original = spawn.get_preparation_data
    for method in ("forkserver", "spawn"):
        with Client(1, start_method=method) as c:
            threads = [threading.Thread(target=c.add_engines, args=(1,)) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert c[:].apply_sync(lambda: 7) == [7, 7, 7]
        assert spawn.get_preparation_data is original
    print("done", flush=True)
"""


def test_an_unguarded_script_runs_once_with_every_start_method(tmp_path):
    done = run_script(tmp_path, UNGUARDED)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("script body ran") == 1
    assert "done" in done.stdout


def square(x: int) -> int:
    return x * x


def test_multiprocessing_is_left_as_it_was_for_the_users_own_pools(leak_check):
    original = spawn.get_preparation_data
    for method in ("forkserver", "spawn"):
        with Client(1, start_method=method) as c:
            c.add_engines(1)
        with Client(1, start_method=method):
            pass
    assert spawn.get_preparation_data is original
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        assert pool.map(square, range(5), chunksize=1) == [0, 1, 4, 9, 16]


FORK_AFTER_CLIENT = """
    import os, sys
    from localpar import Client, ClientClosedError

    c = Client(2)
    pid = os.fork()
    if pid == 0:
        try:
            c[:].apply_sync(os.getpid)
            print("child could use the client", flush=True)
        except ClientClosedError as exc:
            print("child refused:", exc, flush=True)
        sys.exit(0)  # runs the child's exit hooks
    os.waitpid(pid, 0)
    print("parent", c[:].apply_sync(lambda: 1), flush=True)
    c.close()
"""


def test_a_fork_of_the_client_process_neither_uses_nor_stops_its_engines(tmp_path):
    done = run_script(tmp_path, FORK_AFTER_CLIENT)
    assert done.returncode == 0, done.stderr
    assert "child refused: this Client belongs to process" in done.stdout
    assert "parent [1, 1]" in done.stdout


SECOND_CLIENT_FDS = """
    import os
    from localpar import Client

    a = Client(1)
    b = Client(2, start_method="fork")  # children that inherit whatever is open
    # Client() returns once the engines are forked, maybe before they ran their at-fork hook,
    # which closes what they inherited: a task's round trip says that they did.
    b[:].apply_sync(os.getpid)
    lifeline = os.fstat(a._lifeline.write_fd).st_ino
    for pid in b.engine_pids().values():
        writers = set()  # the pipes this engine can write to (a reader keeps nobody alive)
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                inode = os.stat(f"/proc/{pid}/fd/{fd}").st_ino
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    flags = next(int(line.split()[1], 8) for line in info if line.startswith("flags:"))
            except OSError:
                continue
            if flags & os.O_ACCMODE == os.O_WRONLY:
                writers.add(inode)
        print("holds" if lifeline in writers else "clean", flush=True)
    b.close()
    a.close()
"""


def test_engines_of_a_second_client_do_not_hold_the_first_clients_lifeline(tmp_path):
    done = run_script(tmp_path, SECOND_CLIENT_FDS)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["clean", "clean"]

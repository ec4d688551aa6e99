# Adapted for localpar from ipyparallel 9.2's clienttest.py (ipyparallel/tests/clienttest.py):
# the base class now runs on one shared localpar Client (conftest.py's `cluster`) instead of
# connecting a new ipyparallel Client to a controller; the task helpers are unchanged.
# Copyright (c) IPython Development Team.
# Distributed under the terms of the Modified BSD License (tests/peer/COPYING.md).
"""base class for parallel client tests"""

import os
import sys
import time
import warnings
from contextlib import contextmanager
from typing import Any, Dict, List

import pytest

from localpar import Client, error

CLUSTER: Dict[str, Any] = {}
"""The shared cluster: ``client`` (set by conftest's `cluster`) and ``base`` (engine ids kept)."""

PERMANENT_ENGINES = 4
"""Engines a test asks for beyond this many are stopped after the test."""


def segfault():
    """this will segfault"""
    import ctypes

    ctypes.memset(-1, 0, 1)


def crash():
    """Ungracefully exit the process"""
    os._exit(1)


def conditional_crash(condition):
    """Ungracefully exit the process"""
    if condition:
        crash()


def wait(n):
    """sleep for a time"""
    import time

    time.sleep(n)
    return n


def raiser(eclass):
    """raise an exception"""
    raise eclass()


def generate_output():
    """function for testing output

    publishes two outputs of each type, and returns
    a rich displayable object.
    """

    from IPython.display import HTML, Math, display

    print("stdout")
    print("stderr", file=sys.stderr)

    display(HTML("<b>HTML</b>"))

    print("stdout2")
    print("stderr2", file=sys.stderr)

    display(Math(r"\alpha=\beta"))

    return Math("42")


def skip_without(*names):
    """skip a test if some names are not importable"""

    def decorate(f):
        def skip_without_names(*args, **kwargs):
            for name in names:
                try:
                    __import__(name)
                except ImportError:
                    pytest.skip(f"Test requires {name}")
                except Exception as e:
                    warnings.warn(f"Unexpected exception importing {name}: {e}", stacklevel=2)
                    pytest.skip(f"Test requires {name}")
            return f(*args, **kwargs)

        skip_without_names.__name__ = f.__name__
        return skip_without_names

    return decorate


@contextmanager
def raises_remote(etype):
    if isinstance(etype, str):
        # allow Exception or 'Exception'
        expected_ename = etype
    else:
        expected_ename = etype.__name__

    try:
        try:
            yield
        except error.CompositeError as e:
            e.raise_exception()
    except error.RemoteError as e:
        tb = "\n".join(e.render_traceback())
        assert expected_ename == e.ename, f"Should have raised {expected_ename}, but raised {e.ename}:\n{tb}"

    else:
        pytest.fail("should have raised a RemoteError")


def _client() -> Client:
    return CLUSTER["client"]


def add_engines(n=1, profile="iptest", total=False):
    """add a number of engines to the shared cluster.

    If total is True, then already running engines are counted, and only
    the additional engines necessary (if any) are started.
    """
    rc = _client()
    base = len(rc)
    if total:
        n = max(n - base, 0)
    new = rc.add_engines(n) if n else []
    for engine_id in new:
        if len(CLUSTER["base"]) < PERMANENT_ENGINES:
            CLUSTER["base"].append(engine_id)
    return new


@pytest.mark.usefixtures("cluster")
class ClusterTestCase:
    timeout = 10
    engine_count = 2

    def add_engines(self, n=1, block=True):
        """add multiple engines to our cluster"""
        self.engines.extend(add_engines(n))

    def minimum_engines(self, n=1, block=True):
        """add engines until there are at least n connected"""
        self.engines.extend(add_engines(n, total=True))

    def wait_on_engines(self, timeout=5):
        """engines are up when add_engines returns"""

    def client_wait(self, client, jobs=None, timeout=-1):
        """my wait wrapper, sets a default finite timeout to avoid hangs"""
        if timeout is None or timeout < 0:
            timeout = self.timeout
        return Client.wait(client, jobs, timeout)

    def connect_client(self):
        """a new client (of one engine: localpar clients own their engines), closed at teardown"""
        c = Client(1)
        c.wait = lambda *a, **kw: self.client_wait(c, *a, **kw)
        self._own_clients.append(c)
        return c

    def _shared_client(self):
        """the shared client, with a bounded wait"""
        c = _client()
        c.wait = lambda *a, **kw: self.client_wait(c, *a, **kw)
        return c

    def assertRaisesRemote(self, etype, f, *args, **kwargs):
        with raises_remote(etype):
            f(*args, **kwargs)

    def _wait_for(self, f, timeout=10):
        """wait for a condition"""
        tic = time.time()
        while time.time() <= tic + timeout:
            if f():
                return
            time.sleep(0.1)
        if not f():
            print("Warning: Awaited condition never arrived")

    def setup_method(self):
        rc = _client()
        for engine_id in CLUSTER["base"]:  # replace engines an earlier test crashed or killed
            if engine_id not in rc.ids:
                rc.restart_engine(engine_id)
        add_engines(self.engine_count, total=True)
        self._own_clients = []
        self.client = self._shared_client()
        # start every test with clean engine namespaces:
        self.client.clear(block=True)
        # ipyparallel connects a new Client per test, whose history starts empty
        self.client.history = []
        self.base_engine_count = len(self.client.ids)
        self.engines: List[int] = []

    def teardown_method(self):
        for c in self._own_clients:
            c.close()
        rc = _client()
        # nothing a test left running may reach the next one
        if not Client.wait(rc, None, 2):
            rc.abort()
            rc.interrupt()
            Client.wait(rc, None, 10)
        for engine_id in rc.ids:
            if engine_id not in CLUSTER["base"]:
                rc.send_signal("SIGKILL", engine_id)
                rc.wait_for_death(engine_id, timeout=10)
        del rc.wait

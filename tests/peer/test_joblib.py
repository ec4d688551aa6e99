# Adapted for localpar from ipyparallel 9.2's test_joblib.py (ipyparallel/tests/test_joblib.py):
# only the cluster fixture (tests/peer/clienttest.py, conftest.py), the imports and the names of
# localpar's own classes changed; tests that cannot apply are skipped in conftest.py (SKIPPED).
# Copyright (c) IPython Development Team.
# Distributed under the terms of the Modified BSD License (tests/peer/COPYING.md).
import warnings
from unittest import mock

import pytest

import localpar as ipp

from .clienttest import ClusterTestCase, add_engines

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from joblib import Parallel, delayed

        from localpar.integrations.joblib_backend import LocalparBackend  # noqa
except (ImportError, TypeError):
    have_joblib = False
else:
    have_joblib = True


def neg(x):
    return -1 * x


class TestJobLib(ClusterTestCase):
    def setup_method(self):
        if not have_joblib:
            pytest.skip("Requires joblib >= 0.10")
        super().setup_method()
        add_engines(1, total=True)

    def test_default_backend(self):
        """ipyparallel.register_joblib_backend() registers default backend"""
        ipp.register_joblib_backend()
        with mock.patch.object(ipp.Client, "__new__", lambda *a, **kw: self.client):
            p = Parallel(backend="ipyparallel")
            assert p._backend._view.client is self.client

    def test_register_backend(self):
        view = self.client.load_balanced_view()
        view.register_joblib_backend("view")
        p = Parallel(backend="view")
        assert p._backend._view is view

    def test_joblib_backend(self):
        view = self.client.load_balanced_view()
        view.register_joblib_backend("view")
        p = Parallel(backend="view")
        result = p(delayed(neg)(i) for i in range(10))
        assert result == [neg(i) for i in range(10)]

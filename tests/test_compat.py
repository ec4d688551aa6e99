"""Task code written for ipyparallel on a localpar engine (``localpar/engine/compat.py``):
``from ipyparallel.datapub import publish_data`` is localpar's publish_data, and imports
nothing of an installed ipyparallel until task code uses more of it; then it is the real
package.  The client process is left alone: there, ipyparallel is ipyparallel."""

from __future__ import annotations

import subprocess
import sys
from typing import Any, Dict

import pytest
from conftest import HANG_GUARD

from localpar import Client

pytestmark = pytest.mark.timeout(120)


def import_the_alias() -> Dict[str, Any]:
    """Run on a fresh engine: what importing ipyparallel's datapub loads, then what the real package gives."""
    import sys

    from ipyparallel.datapub import publish_data

    import localpar.datapub

    seen: Dict[str, Any] = {
        "is_localpars": publish_data is localpar.datapub.publish_data,
        "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("ipyparallel", "zmq", "traitlets")),
    }
    import ipyparallel

    seen["version"] = ipyparallel.__version__
    seen["client"] = ipyparallel.Client.__module__
    from ipyparallel import Cluster

    seen["cluster"] = Cluster.__module__
    from ipyparallel.datapub import publish_data as again

    seen["still_localpars"] = again is localpar.datapub.publish_data
    return seen


def test_ipyparallels_datapub_on_an_engine_loads_nothing_of_ipyparallel() -> None:
    ipp = pytest.importorskip("ipyparallel")
    with Client(1, start_method="spawn") as c:  # a fresh interpreter: nothing inherited from this one
        seen = c[0].apply_async(import_the_alias).get(timeout=HANG_GUARD * 3)
    assert seen["is_localpars"]
    assert seen["loaded"] == ["ipyparallel", "ipyparallel.datapub"]  # no zmq, no traitlets, no client
    assert seen["version"] == ipp.__version__  # then the real package, on first use
    assert seen["client"] == "ipyparallel.client.client"
    assert seen["cluster"].startswith("ipyparallel.cluster")
    assert seen["still_localpars"]


def test_ipyparallel_in_the_client_process_is_the_real_one() -> None:
    pytest.importorskip("ipyparallel")
    probe = (
        "import localpar, sys\n"
        "c = localpar.Client(1)\n"
        "import ipyparallel.datapub, ipyparallel\n"
        "print(ipyparallel.datapub.publish_data.__module__, type(sys.modules['ipyparallel']).__name__,"
        " ipyparallel.Client.__module__)\n"
        "c.close()\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ipyparallel.engine.datapub", "module", "ipyparallel.client.client"]

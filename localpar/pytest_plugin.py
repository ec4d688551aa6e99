"""The pytest plugin at its registered path (the ``pytest11`` entry point); the code is in
`localpar.integrations.pytest_plugin`."""

from .integrations.pytest_plugin import (  # noqa: F401
    localpar_client,
    localpar_cluster,
    localpar_view,
    pytest_addoption,
    pytest_configure,
    pytest_report_header,
)

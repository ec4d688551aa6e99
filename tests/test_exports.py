"""The public surface, pinned: a name added or dropped is a decision, made here on purpose."""

from __future__ import annotations

import importlib.metadata

import localpar

PUBLIC = [
    "ALL_COMPLETED", "AsyncHubResult", "AsyncMapResult", "AsyncResult", "BroadcastView", "Client", "ClientClosedError",
    "Cluster", "CompositeError",
    "DataStoreError", "DirectView", "EngineError", "ExecuteReply", "FIRST_COMPLETED", "FIRST_EXCEPTION",
    "KernelError", "LoadBalancedView", "LocalparError", "NoEnginesError", "Reference", "RemoteError",
    "RemoteTraceback", "SerializationError", "TaskAborted", "__version__", "error", "interactive", "parallel",
    "register_joblib_backend", "remote",
    # scheduling (task flags and dependencies), as ipyparallel exports them at its top level
    "Dependency", "DependencyTimeout", "ImpossibleDependency", "InvalidDependency", "TaskTimeout",
    "UnmetDependency", "depend", "dependent", "require",
]  # fmt: skip


def test_the_root_exports_exactly_the_public_names_and_each_resolves():
    assert sorted(localpar.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(localpar, name) is not None, name


def test_the_short_import_paths_keep_working():
    from localpar.datapub import publish_data, report_progress
    from localpar.engine import datapub

    assert (publish_data, report_progress) == (datapub.publish_data, datapub.report_progress)
    import localpar.error
    import localpar.pytest_plugin

    assert localpar.error.CompositeError is localpar.CompositeError
    for fixture in ("localpar_client", "localpar_view", "localpar_cluster"):
        assert callable(getattr(localpar.pytest_plugin, fixture))


def _entry_point(group: str, name: str) -> importlib.metadata.EntryPoint:
    points = importlib.metadata.entry_points()
    selected = points.select(group=group) if hasattr(points, "select") else points.get(group, [])  # Python 3.9
    return next(ep for ep in selected if ep.name == name)


def test_the_console_script_and_the_pytest_plugin_are_registered_where_they_live():
    main = _entry_point("console_scripts", "localpar").load()
    from localpar.integrations.cli import main as cli_main

    assert main is cli_main
    assert _entry_point("pytest11", "localpar").load() is importlib.import_module("localpar.pytest_plugin")

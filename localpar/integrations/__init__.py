"""localpar inside other tools, built on the client's public API (in the user's process).

IPython's ``%px`` magics, ``view.executor`` (a ``concurrent.futures.Executor``), a joblib backend,
the pytest fixtures, and the ``localpar`` command line with its demo.
"""

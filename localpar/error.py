"""``localpar.error``: the exceptions under ipyparallel's module name (``ipp.error.CompositeError``)."""

from .errors import *  # noqa: F403
from .errors import __all__  # noqa: F401

"""``python -m localpar``: see `localpar.cli`."""

from __future__ import annotations

from .integrations.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

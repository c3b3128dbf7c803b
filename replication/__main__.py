"""``python -m replication COMMAND ...``: the command line, defined in :mod:`replication.cli`."""

from __future__ import annotations

import sys

from replication.cli import EXIT_CONFIG, main

__all__ = ["EXIT_CONFIG", "main"]

if __name__ == "__main__":
    sys.exit(main())

"""Process-wide logging set-up."""

from __future__ import annotations

import logging
import sys


def configure(level: str = "INFO") -> None:
    """One line per event on stderr, with time, level and logger."""
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )

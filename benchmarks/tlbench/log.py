"""Progress messages, on stderr so that the table on stdout stays clean."""

from __future__ import annotations

import sys


class Log:
    """Print progress lines to stderr unless *quiet*.  Any thread."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def __call__(self, message: str) -> None:
        """Print *message* (one line)."""
        if not self.quiet:
            print(f"  {message}", file=sys.stderr, flush=True)

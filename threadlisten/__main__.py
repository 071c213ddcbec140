"""``python -m threadlisten``: see ``threadlisten.cli``."""

from __future__ import annotations

from threadlisten.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

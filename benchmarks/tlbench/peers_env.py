"""The separate venv the third-party peers run in.

``benchmarks/.peers-venv`` is made from the interpreter running the harness
(same version, same build, so every Python server runs on the same CPython)
and gets ``benchmarks/peers-requirements.txt``.  None of it is a dependency
of threadlisten; the directory is git-ignored.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tlbench.log import Log

BENCH_DIR = Path(__file__).resolve().parent.parent
VENV = BENCH_DIR / ".peers-venv"
REQUIREMENTS = BENCH_DIR / "peers-requirements.txt"

#: Seconds pip may take to install the peers (wheels exist for all of them).
INSTALL_TIMEOUT = 900.0

#: Import name of each distribution the peers need.
IMPORT_NAMES = {
    "uvloop": "uvloop",
    "tornado": "tornado",
    "gevent": "gevent",
    "twisted": "twisted",
    "trio": "trio",
}


def python() -> Path:
    """Return the venv's interpreter (which may not exist yet)."""
    return VENV / "bin" / "python"


def exists() -> bool:
    """Whether the venv has been made."""
    return python().exists()


def install(log: Log) -> None:
    """Make the venv if needed and install the pinned peers into it.

    Raises:
        RuntimeError: venv creation or pip failed (with pip's last lines).
    """
    if not exists():
        log(f"making {VENV} from {sys.executable}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
    log(f"installing {REQUIREMENTS.name} into {VENV}")
    proc = subprocess.run(
        [str(python()), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"pip failed installing the peers:\n{tail}")


_PROBE = """
import importlib, importlib.metadata as md, json, sys
out = {"python": sys.version.split()[0]}
for dist, mod in json.loads(sys.argv[1]).items():
    try:
        importlib.import_module(mod)
        out[dist] = md.version(dist)
    except Exception as exc:
        out[dist] = None
print(json.dumps(out))
"""


def probe() -> dict[str, str | None]:
    """Return ``{distribution: version or None}`` for the peers' venv, plus its
    ``python`` version; empty when the venv does not exist."""
    if not exists():
        return {}
    proc = subprocess.run(
        [str(python()), "-c", _PROBE, json.dumps(IMPORT_NAMES)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        return {}
    result: dict[str, str | None] = json.loads(proc.stdout)
    return result

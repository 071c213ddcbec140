"""Every example runs its ``--self-test`` and exits 0, within a bound.

The examples are a numbered ladder (examples/README.md); each one drives
itself with real loopback clients and checks what happened, so this test only
runs them, each in its own process (example 6 lowers its own descriptor limit,
example 7 forks), and checks the exit status and that nothing was printed as a
traceback.  It also checks the ladder itself: numbered 01 to 09 without gaps,
each with a docstring, each listed in examples/README.md.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
#: Seconds one example's self-test may take (each takes well under one).
TIMEOUT = 60.0

_NAME = re.compile(r"^(\d\d)_[a-z0-9_]+\.py$")
LADDER = sorted(p for p in EXAMPLES.glob("*.py") if _NAME.match(p.name))


def test_the_ladder_is_complete_and_documented() -> None:
    numbers = [int(_NAME.match(p.name).group(1)) for p in LADDER]  # type: ignore[union-attr]
    assert numbers == list(range(1, 10))
    assert sorted(EXAMPLES.glob("*.py")) == LADDER, "an example outside the numbered ladder"
    index = (EXAMPLES / "README.md").read_text()
    for path in LADDER:
        docstring = ast.get_docstring(ast.parse(path.read_text()))
        assert docstring and "--self-test" in docstring, f"{path.name}: explain it and its test"
        assert f"({path.name})" in index, f"{path.name} is not in examples/README.md"


@pytest.mark.parametrize("path", LADDER, ids=[p.stem for p in LADDER])
def test_example_self_test(path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(path), "--self-test"],
        cwd=EXAMPLES.parent,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output, output

"""The README's example runs as printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    """Return the ```python blocks of the README."""
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_example_runs() -> None:
    """The ten-line example prints what its comment promises."""
    (code,) = python_blocks()
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "b'swapped from the main thread\\n'\n"
    assert "ResourceWarning" not in result.stderr


def test_readme_starts_with_the_two_commands() -> None:
    """The first two shell blocks install and run the demo, then the tests."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert "pip install -e '.[cli]'" in blocks[0]
    assert "python -m threadlisten demo" in blocks[0]
    assert "pip install -e '.[dev]'" in blocks[1]
    assert "python -m pytest" in blocks[1]

"""Fixtures of the schedule explorer's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from threadlisten.debug import clear_errors, reset_lockdep


@pytest.fixture
def lock_checker() -> Iterator[None]:
    """For a test that runs the lock checker on purpose: its records start
    empty, and the errors and lock-order graph it leaves are dropped, so the
    session's own leak-and-error check and later tests do not see them."""
    clear_errors()
    try:
        yield
    finally:
        clear_errors()
        reset_lockdep()

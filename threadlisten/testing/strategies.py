"""Hypothesis strategies for ``threadlisten.testing.lincheck`` scenarios.

Importing this module needs Hypothesis.  Shrinking goes towards fewer calls,
fewer threads, and the calls listed first (``connect`` before the rest).
"""

from __future__ import annotations

import errno

from hypothesis import strategies as st

from threadlisten.testing.lincheck import Call, LinScenario

__all__ = ["calls", "lin_scenarios"]


def calls() -> st.SearchStrategy[Call]:
    """One call: ``connect``, ``enable``, ``disable``, ``set_cb(None|1|2)``,
    ``set_error_cb(1|2)``, ``connect_error(EMFILE|EBADF)`` or ``free``."""
    return st.one_of(
        st.sampled_from([Call("connect"), Call("enable"), Call("disable")]),
        st.builds(Call, st.just("set_cb"), st.sampled_from([2, None, 1])),
        st.builds(Call, st.just("set_error_cb"), st.sampled_from([1, 2])),
        st.builds(Call, st.just("connect_error"), st.sampled_from([errno.EMFILE, errno.EBADF])),
        st.just(Call("free")),
    )


def lin_scenarios(
    *,
    max_threads: int = 3,
    max_calls_per_thread: int = 3,
    max_prefix: int = 2,
    max_suffix: int = 2,
) -> st.SearchStrategy[LinScenario]:
    """Lincheck-shaped scenarios: a prefix, 2..*max_threads* parallel threads of
    1..*max_calls_per_thread* calls, a suffix; ``CLOSE_ON_FREE`` or not.

    The defaults keep a scenario within CHESS's small scope (at most 13 calls
    besides the deliveries), so a run is a few hundred steps.
    """
    thread = st.lists(calls(), min_size=1, max_size=max_calls_per_thread).map(tuple)
    return st.builds(
        LinScenario,
        prefix=st.lists(calls(), max_size=max_prefix).map(tuple),
        parallel=st.lists(thread, min_size=2, max_size=max_threads).map(tuple),
        suffix=st.lists(calls(), max_size=max_suffix).map(tuple),
        close_on_free=st.booleans(),
    )

"""Stress runs for threadlisten: many threads abusing shared THREADSAFE listeners
while real TCP clients on 127.0.0.1 connect as fast as they are allowed, with
every connection, descriptor and thread accounted for.

Run it from the repository root::

    python -m stress --duration 30                      # the CI-sized run
    python -m stress --duration 600 --operations 1000000 --connections 200000

The modules, in the order a reader should take them:

* ``stress.config``    -- the run's parameters (``StressConfig``) and their defaults;
* ``stress.protocol``  -- the checked echo payload the clients send;
* ``stress.fleet``     -- the shared listeners, their callbacks and the checks made inside them;
* ``stress.api``       -- the API threads that hammer the listeners;
* ``stress.clients``   -- client threads or processes; each records every connection's outcome;
* ``stress.workers``   -- the worker pool that echoes payloads;
* ``stress.watchdog``  -- the deadlock watchdog;
* ``stress.invariants``-- what must hold at the end, and why;
* ``stress.report``    -- the final report (printed and JSON);
* ``stress.display``   -- the live display (rich, or plain lines when not a TTY);
* ``stress.runner``    -- the run itself;  ``stress.cli`` -- ``python -m stress``.

``docs/stress.md`` explains each invariant and how to reproduce the reported runs.
"""

from __future__ import annotations

__all__: list[str] = []

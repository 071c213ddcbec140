"""Benchmark servers: one module per peer, each run as its own process.

Run one with ``python -m tlbench.servers.<module>`` with ``benchmarks/`` on
``PYTHONPATH``; the harness does that.  Each accepts in its framework's
idiomatic way and closes every connection at once; ``proto`` is the control
protocol they share.
"""

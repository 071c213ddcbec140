"""The benchmark harness behind ``benchmarks/run.py`` (issue 6).

Small modules, one job each:

====================  ================================================================
``peers``             the servers measured: who they are and how each is started
``peers_env``         the separate venv the third-party peers are installed into
``cbuild``            compiles the C servers and the load generator on demand
``procs``             drives one server process over its control protocol
``machine``           CPU pinning, load average, what the machine is
``burst``             burst mode: fill the backlog, then time the drain
``steady``            steady mode: the C load generator for a fixed time
``latency``           connect-to-callback latency at a fixed rate
``control``           cross-thread enable/disable/set_cb while accepting
``reuseport``         REUSEABLE_PORT over 2 processes against 1
``memory``            memory per idle listener
``accept_profile``    the accept path: batches, allocations, lock acquisitions
``ab``                paired A/B of a modified listener.py against the tree's
``qwatch``            the accept queue's length, from outside (netlink sock_diag)
``memprobe``          idle listeners' memory, in a fresh process (run by ``memory``)
``rounds``            interleaved rounds
``suite``             each mode's rounds and results; the FULL and QUICK presets
``log``               progress lines on stderr
``stats``             medians, percentiles, ratios
``report``            the terminal table, JSON and Markdown
``chart``             the PNG bar chart (matplotlib, the ``bench`` extra)
``servers/``          the server programs (Python); ``csrc/`` the C ones
====================  ================================================================
"""

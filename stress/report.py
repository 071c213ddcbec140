"""The final report of a stress run: a JSON document and its printed summary.

The JSON keys (``REPORT_VERSION`` 1):

* ``ok``, ``exit_code``, ``violations`` (total), ``targets_met``, ``deadlock``;
* ``python``: version, whether the build is free-threaded and the GIL is on,
  the switch interval used;
* ``config``: the ``StressConfig``; ``command``: the command line;
  ``source``: the git commit and whether ``threadlisten/`` had local changes;
* ``elapsed_s``, ``cpu_s`` (user, system), ``loadavg`` at start and end;
* ``operations``: calls made by kind and in total, ``raced_free`` (calls that
  met a listener freed by another thread), and rates;
* ``connections``: attempted, accepted, delivered, echoed_by_workers,
  verified_by_clients, closed_by_listener, refused_after_free,
  reset_after_free, self_connected_after_free, foreign_delivered (requests
  of another run that reached a reused port), failed, and the rate;
* ``listeners``: created, freed by API threads and by their own callbacks,
  destroyed;
* ``max_api_wait_s`` with its operation, ``max_loop_probe_delay_s``, ``peak_refcount``;
* ``descriptors`` and ``threads``: before, after, and what differs;
* ``invariants``: one entry per invariant (name, description, held,
  violations, details).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["REPORT_VERSION", "format_summary", "write_json"]

REPORT_VERSION = 1


def write_json(report: dict[str, Any], path: Path) -> None:
    """Write *report* to *path* (parents created), indented, with a final newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)  # a reader never sees half a report


def format_summary(report: dict[str, Any]) -> str:
    """Return the human-readable summary of a complete report."""
    ops = report["operations"]
    conns = report["connections"]
    lst = report["listeners"]
    py = report["python"]
    lines = [
        "",
        f"threadlisten stress run: {'OK' if report['ok'] else 'FAILED'}"
        f" (exit code {report['exit_code']})",
        f"  source {report['source']['commit']}"
        f" (threadlisten modified: {report['source']['threadlisten_modified']})",
        f"  python {py['version']}  free-threaded={py['free_threaded']}"
        f"  gil_enabled={py['gil_enabled']}  switch_interval={py['switch_interval']}",
        f"  elapsed {report['elapsed_s']:.1f} s, CPU {report['cpu_s']['user']:.1f} s user"
        f" + {report['cpu_s']['system']:.1f} s system; targets met: {report['targets_met']}",
        "  operations: "
        + ", ".join(f"{k} {v:,}" for k, v in ops["by_kind"].items())
        + f"; total {ops['total']:,} ({ops['per_second']:,.0f}/s);"
        f" raced a free {ops['raced_free']:,}",
        f"  connections: attempted {conns['attempted']:,} ({conns['per_second']:,.0f}/s),"
        f" accepted {conns['accepted']:,}, delivered {conns['delivered']:,},"
        f" echoed by workers {conns['echoed_by_workers']:,},"
        f" verified by clients {conns['verified_by_clients']:,},"
        f" closed by the listener {conns['closed_by_listener']:,},"
        f" refused after free {conns['refused_after_free']:,},"
        f" reset after free {conns['reset_after_free']:,},"
        f" self-connected after free {conns['self_connected_after_free']:,},"
        f" foreign {conns['foreign_delivered']:,}, failed {conns['failed']:,}",
        f"  listeners: created {lst['created']:,}, freed by API threads"
        f" {lst['freed_by_api']:,}, freed in their callback {lst['freed_in_callback']:,},"
        f" destroyed {lst['destroyed']:,}",
        f"  longest API wait {report['max_api_wait_s'] * 1000:.1f} ms"
        f" ({report['max_api_wait_op']}); longest loop probe delay"
        f" {report['max_loop_probe_delay_s'] * 1000:.1f} ms; peak refcount"
        f" {report['peak_refcount']}",
        f"  descriptors before/after {report['descriptors']['before']}/"
        f"{report['descriptors']['after']}; threads before/after"
        f" {report['threads']['before']}/{report['threads']['after']}",
        f"  invariants ({report['violations']} violations):",
    ]
    for inv in report["invariants"]:
        mark = "ok  " if inv["held"] else "FAIL"
        lines.append(f"    [{mark}] {inv['name']}: {inv['violations']}")
        lines.extend(f"           - {d}" for d in inv["details"][:5])
    return "\n".join(lines)

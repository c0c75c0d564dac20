"""Shared helpers of scripts/bench: run a child, measure it, summarise runs, print a table.

Every figure is measured in a child process reaped with ``os.wait4`` by a tiny launcher
(LAUNCHER below), which gives that child's own wall time, user+system CPU time and peak
RSS (the kernel's ru_maxrss), so one measurement never inherits another's memory.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
"""The project's environment: scripts/bench re-executes itself there before importing this."""


@dataclass
class Sample:
    """One measured child process."""

    wall: float
    cpu: float
    rss_mb: float
    out: dict[str, Any] = field(default_factory=dict)
    """What the child printed as JSON on its last stdout line (its own inner timings)."""


# The measured program is started by this small launcher, not forked from the benchmark
# itself: Linux carries a process's peak RSS across exec (ru_maxrss keeps the forked
# image's), so a child forked from a benchmark holding a test server would report the
# benchmark's memory. The launcher is tiny (python -S); it forks, execs the command,
# reaps it with wait4 and writes wall seconds, CPU seconds and peak RSS (KiB).
LAUNCHER = r"""
import json, os, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, ru = os.wait4(pid, 0)
with open(sys.argv[1], "w") as fh:
    json.dump([time.perf_counter() - t0, ru.ru_utime + ru.ru_stime, ru.ru_maxrss], fh)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_child(cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path = ROOT,
              stdin: bytes | None = None, check: bool = True, timeout: float = 900
              ) -> Sample:
    """Run ``cmd`` to completion; wall, CPU (user+sys) and peak RSS of that process alone."""
    import tempfile

    with tempfile.NamedTemporaryFile(prefix="bench-usage-", suffix=".json") as usage_file:
        proc = subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER, usage_file.name,
                                 *cmd], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE,
                                stdin=subprocess.PIPE if stdin else None)
        out, err = _communicate(proc, stdin, timeout)
        proc.wait()
        try:
            wall, cpu, maxrss_kib = json.loads(Path(usage_file.name).read_text())
        except ValueError:
            wall = cpu = maxrss_kib = 0.0
    if check and proc.returncode:
        sys.stderr.write(err.decode(errors="replace")[-4000:])
        raise SystemExit(f"bench: {' '.join(cmd[:4])} ... exited {proc.returncode}")
    text = out.decode(errors="replace")
    parsed: dict[str, Any] = {}
    try:
        whole = json.loads(text)              # a program that prints one JSON document
        parsed = {"document": whole} if not isinstance(whole, dict) else whole
    except ValueError:
        lines = [ln for ln in text.splitlines() if ln.startswith("{")]
        parsed = json.loads(lines[-1]) if lines else {}
    parsed.setdefault("stdout", text[-2000:])
    return Sample(wall, cpu, maxrss_kib / 1024, parsed)


def _communicate(proc: subprocess.Popen[bytes], stdin: bytes | None, timeout: float
                 ) -> tuple[bytes, bytes]:
    """Read stdout/stderr until EOF without reaping the child (wait4 does that)."""
    import threading

    chunks: dict[str, list[bytes]] = {"out": [], "err": []}

    def pump(name: str, stream: Any) -> None:
        for block in iter(lambda: stream.read(65536), b""):
            chunks[name].append(block)

    threads = [threading.Thread(target=pump, args=("out", proc.stdout), daemon=True),
               threading.Thread(target=pump, args=("err", proc.stderr), daemon=True)]
    for t in threads:
        t.start()
    if stdin is not None and proc.stdin is not None:
        proc.stdin.write(stdin)
        proc.stdin.close()
    for t in threads:
        t.join(timeout)
    return b"".join(chunks["out"]), b"".join(chunks["err"])


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of a series (the figure a table shows is the median)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": len(values)}


def summarise(samples: Sequence[Sample], inner: Sequence[str] = ()) -> dict[str, Any]:
    """Wall/CPU/RSS summaries of several runs, plus the named inner timings the child gave."""
    out: dict[str, Any] = {
        "wall_s": summary([s.wall for s in samples]),
        "cpu_s": summary([s.cpu for s in samples]),
        "rss_mb": summary([s.rss_mb for s in samples]),
    }
    for key in inner:
        vals = [float(s.out[key]) for s in samples if key in s.out]
        if vals:
            out[key] = summary(vals)
    return out


def repeat(n: int, fn: Callable[[], Sample]) -> list[Sample]:
    return [fn() for _ in range(n)]


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    """What the figures were measured on (they depend on the box and on its load)."""
    import platform

    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "load_at_start": load()}


def fmt(stat: dict[str, float] | None, unit: str = "s", digits: int = 2) -> str:
    """``median [min-max]``."""
    if not stat:
        return "-"
    return (f"{stat['median']:.{digits}f}{unit} [{stat['min']:.{digits}f}-"
            f"{stat['max']:.{digits}f}]")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg} (load {load()[0]})", file=sys.stderr,
          flush=True)

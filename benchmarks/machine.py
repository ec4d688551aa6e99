"""What the figures were measured on, and how busy the machine was meanwhile."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from typing import Any, Dict, List, Sequence, Type

import psutil

from .peers import Peer

ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONHASHSEED")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def describe(peers: Sequence[Type[Peer]], workers: int) -> Dict[str, Any]:
    import numpy

    versions = {}
    for cls in peers:
        versions[cls.module or cls.name] = cls.version() if cls.missing() is None else "not installed"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": psutil.virtual_memory().total / 1e9,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "versions": versions,
        "env": {k: os.environ[k] for k in ENV_VARS if k in os.environ},
        "commit": _git_commit(),
        "workers": workers,
    }


class LoadWatch:
    """How much CPU other processes used while we measured (core-seconds), and the load average."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.busy0 = self._busy()
        self.own0 = self._own()
        self.marks: List[Dict[str, Any]] = []
        self.mark("start")

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0) + getattr(t, "steal", 0)

    @staticmethod
    def _own() -> float:
        """This process and its (waited-for or live) descendants."""
        t = os.times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in psutil.Process().children(recursive=True):
            try:
                ct = child.cpu_times()
                total += ct.user + ct.system
            except psutil.Error:
                pass
        return total

    def mark(self, label: str) -> None:
        self.marks.append({"label": label, "loadavg": os.getloadavg(), "at": time.monotonic() - self.t0})

    def finish(self) -> Dict[str, Any]:
        self.mark("end")
        wall = time.monotonic() - self.t0
        other = max(0.0, (self._busy() - self.busy0) - (self._own() - self.own0))
        return {
            "wall": wall,
            "other_core_seconds": other,
            "other_cores": other / wall if wall else 0.0,
            "loadavg_max": max(m["loadavg"][0] for m in self.marks),
            "loadavg_start": self.marks[0]["loadavg"],
            "marks": self.marks,
        }

"""The machine, kernel, Python and package versions that a report's header shows."""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from .cbuild import compiler, compiler_version
from .transport import Transport

#: Distributions whose versions matter to the figures.
PACKAGES = (
    "unixipc",
    "pyzmq",
    "faster-fifo",
    "posix-ipc",
    "sysv-ipc",
    "iceoryx2",
    "matplotlib",
)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def describe_environment(transports: Sequence[Transport] = ()) -> dict[str, Any]:
    """Everything needed to interpret, or reproduce, the figures."""
    cc = compiler()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "compiler": compiler_version(cc) if cc else "none",
        "packages": package_versions(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
    }

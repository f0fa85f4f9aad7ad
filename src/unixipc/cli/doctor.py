"""``unixipc doctor``: what on this machine will break IPC, and what to do about it.

Each check gives ``ok``, ``warning`` (works, with a catch) or ``error`` (some
facility will fail); the exit status is 1 when any check is an error.
"""

from __future__ import annotations

import argparse
import glob
import os
import resource
from typing import Any

from .. import inspect, posix_mq
from ._common import emit
from .ls import table

_MIB = 1 << 20


def register(commands: Any) -> None:
    commands.add_parser(
        "doctor",
        help="check /dev/shm, logind RemoveIPC, the mqueue mount, IPC limits, namespaces "
        "and stale leftovers; say what to do",
    ).set_defaults(func=run)


def _check(name: str, status: str, found: str, advice: str = "") -> dict[str, str]:
    return {"check": name, "status": status, "found": found, "advice": advice}


def _read(path: str) -> str | None:
    try:
        with open(path) as file:
            return file.read().strip()
    except OSError:
        return None


def _dev_shm() -> dict[str, str]:
    try:
        fs = os.statvfs("/dev/shm")
    except OSError:
        return _check(
            "/dev/shm",
            "error",
            "missing: POSIX shared memory, semaphores, rings and shm:// channels fail",
            "mount -t tmpfs -o mode=1777 tmpfs /dev/shm",
        )
    size, free = fs.f_blocks * fs.f_frsize, fs.f_bavail * fs.f_frsize
    found = f"{size // _MIB} MiB, {free // _MIB} MiB free"
    if not os.access("/dev/shm", os.W_OK):
        return _check("/dev/shm", "error", found + ", not writable", "chmod 1777 /dev/shm")
    if free < 4 * _MIB:
        return _check(
            "/dev/shm",
            "error",
            found + ": a ring or segment of a few MiB will not fit",
            "remove leftovers (unixipc rm --stale) or enlarge it: "
            "mount -o remount,size=1G /dev/shm (docker: --shm-size=1g)",
        )
    if size < 256 * _MIB:
        return _check(
            "/dev/shm",
            "warning",
            found + " (containers default to 64 MiB)",
            "enlarge it for big rings or segments: docker --shm-size=1g, or "
            "mount -o remount,size=1G /dev/shm",
        )
    return _check("/dev/shm", "ok", found)


def _remove_ipc() -> dict[str, str]:
    setting = "yes (the default)"
    files = ["/etc/systemd/logind.conf", *sorted(glob.glob("/etc/systemd/logind.conf.d/*.conf"))]
    for path in files:
        for line in (_read(path) or "").splitlines():
            key, _, value = line.strip().partition("=")
            if key.strip() == "RemoveIPC":
                setting = value.strip()
    logind = os.path.exists("/run/systemd/seats") or os.path.exists("/run/systemd/users")
    if not logind:
        return _check("logind RemoveIPC", "ok", "systemd-logind is not running here")
    if setting.lower() in ("no", "false", "0", "off"):
        return _check("logind RemoveIPC", "ok", "RemoveIPC=no")
    if os.geteuid() < 1000:
        return _check(
            "logind RemoveIPC",
            "ok",
            f"RemoveIPC={setting}: applies to regular users (uid >= 1000), not this uid",
        )
    return _check(
        "logind RemoveIPC",
        "warning",
        f"RemoveIPC={setting}: this user's shared memory, queues and semaphores are "
        "removed when its last session logs out",
        "set RemoveIPC=no in /etc/systemd/logind.conf, or run services as a system user",
    )


def _mqueue() -> dict[str, str]:
    mount_point = posix_mq.mqueue_mount_point()
    if mount_point is not None:
        return _check("mqueue filesystem", "ok", f"mounted on {mount_point}")
    return _check(
        "mqueue filesystem",
        "warning",
        "not mounted: posix_mq.list_names() fails (queues work; unixipc ls lists them "
        "only as root, through a private mount)",
        "mkdir -p /dev/mqueue && mount -t mqueue none /dev/mqueue",
    )


def _rlimit_msgqueue() -> dict[str, str]:
    soft, _hard = resource.getrlimit(resource.RLIMIT_MSGQUEUE)
    if soft == resource.RLIM_INFINITY:
        return _check("RLIMIT_MSGQUEUE", "ok", "unlimited")
    msg_max = int(_read("/proc/sys/fs/mqueue/msg_default") or 10)
    msgsize = int(_read("/proc/sys/fs/mqueue/msgsize_default") or 8192)
    per_queue = msg_max * (msgsize + 48)  # the kernel's charge, roughly
    found = f"{soft} bytes: about {soft // per_queue} default queues per user"
    if soft < per_queue:
        return _check("RLIMIT_MSGQUEUE", "error", found, "ulimit -q 8192000 (or limits.conf)")
    if soft // per_queue < 16:
        return _check(
            "RLIMIT_MSGQUEUE",
            "warning",
            found + " (each mq:// connection takes two)",
            "raise it: ulimit -q 8192000, or LimitMSGQUEUE= in a systemd unit",
        )
    return _check("RLIMIT_MSGQUEUE", "ok", found)


def _limits() -> list[dict[str, str]]:
    """Kernel limits, and how close the objects that exist are to the counts."""
    sysctl = {
        name: _read(f"/proc/sys/{name.replace('.', '/')}")
        for name in (
            "fs.mqueue.queues_max",
            "fs.mqueue.msg_max",
            "fs.mqueue.msgsize_max",
            "kernel.msgmax",
            "kernel.msgmnb",
            "kernel.msgmni",
            "kernel.sem",
            "kernel.shmmax",
            "kernel.shmall",
            "kernel.shmmni",
        )
    }
    shown = ", ".join(
        f"{name}={' '.join((value or '?').split())}" for name, value in sysctl.items()
    )
    checks = [_check("IPC limits", "ok", shown)]
    sem = (sysctl["kernel.sem"] or "").split()
    counts = {
        "System V queues (kernel.msgmni)": ("msg", sysctl["kernel.msgmni"]),
        "System V semaphore sets (kernel.sem SEMMNI)": ("sem", sem[3] if len(sem) == 4 else None),
        "System V segments (kernel.shmmni)": ("shm", sysctl["kernel.shmmni"]),
    }
    for label, (table_name, limit) in counts.items():
        if limit is None:
            continue
        used = _count(table_name)
        status = "error" if used >= int(limit) else "warning" if used >= int(limit) * 0.9 else "ok"
        if status != "ok":
            checks.append(
                _check(label, status, f"{used} of {limit} in use", "remove leftovers: unixipc ls")
            )
    if int(sysctl["kernel.msgmnb"] or 16384) < 16384:
        checks.append(
            _check(
                "kernel.msgmnb",
                "warning",
                f"{sysctl['kernel.msgmnb']} bytes per System V queue",
                "sysctl -w kernel.msgmnb=65536",
            )
        )
    return checks


def _count(table_name: str) -> int:
    text = _read(f"/proc/sysvipc/{table_name}")
    return max(len((text or "").splitlines()) - 1, 0)


def _namespaces() -> dict[str, str]:
    found = []
    container = (
        os.path.exists("/.dockerenv")
        or os.path.exists("/run/.containerenv")
        or "container" in os.environ
        or any(word in (_read("/proc/1/cgroup") or "") for word in ("docker", "kubepods", "lxc"))
    )
    if container:
        found.append("a container")
    for kind in ("ipc", "pid", "mnt"):
        try:
            if os.readlink(f"/proc/self/ns/{kind}") != os.readlink(f"/proc/1/ns/{kind}"):
                found.append(f"a {kind} namespace of its own (not PID 1's)")
        except OSError:
            pass
    if not found:
        return _check("namespaces", "ok", "the host's IPC and PID namespaces")
    return _check(
        "namespaces",
        "warning",
        "this is " + " and ".join(found),
        "processes that must meet need the same IPC namespace (docker: --ipc=host or "
        "--ipc=container:NAME) and, for pids shown by ls, the same PID namespace",
    )


def _stale() -> dict[str, str]:
    stale = [item for item in inspect.find() if item.state == "stale"]
    mine = [item for item in stale if inspect.stale_removable(item)]
    if not stale:
        return _check("stale leftovers", "ok", "none")
    names = ", ".join(f"{item.kind} {item.name}" for item in stale[:5])
    more = f" and {len(stale) - 5} more" if len(stale) > 5 else ""
    return _check(
        "stale leftovers",
        "warning",
        f"{len(stale)} stale ({len(mine)} removable by you): {names}{more}",
        "unixipc ls --state stale; unixipc rm --stale --dry-run, then unixipc rm --stale",
    )


def run(args: argparse.Namespace) -> int:
    checks = [_dev_shm(), _remove_ipc(), _mqueue(), _rlimit_msgqueue(), *_limits(), _namespaces()]
    checks.append(_stale())
    rows = [("CHECK", "STATUS", "FOUND")]
    advice = []
    for check in checks:
        rows.append((check["check"], check["status"], check["found"]))
        if check["advice"] and check["status"] != "ok":
            advice.append(f"- {check['check']}: {check['advice']}")
    text = table(rows) + ("\n\nWhat to do:\n" + "\n".join(advice) if advice else "")
    emit(args, checks, text)
    return 1 if any(check["status"] == "error" for check in checks) else 0

"""How much memory this process may still allocate: MemAvailable of /proc/meminfo and, in a
container, the room left under the limit of its memory cgroup (v1 or v2), whichever is smaller.

The cgroup figure is the limit minus the current usage, not counting the inactive (reclaimable)
page cache, for the process's own group and each ancestor visible in this mount namespace.
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

UNLIMITED = 2**60  # cgroup limits at or above this mean "no limit"


def _read_text(path: str) -> Optional[str]:
    """The text of a small system file, None when it cannot be read (plain ``open``: pathlib's layers
    cost more than the read, and every solve reads these files)."""
    try:
        with open(path) as fh:
            return fh.read()
    except (OSError, ValueError):
        return None


def _read_int(path: str) -> Optional[int]:
    text = _read_text(path)
    if text is None or text.strip() == "max":
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _stat_value(path: str, keys: Tuple[str, ...]) -> int:
    text = _read_text(path)
    if text is None:
        return 0
    values = dict(line.split()[:2] for line in text.splitlines() if len(line.split()) >= 2)
    for key in keys:
        if key in values:
            try:
                return int(values[key])
            except ValueError:
                pass
    return 0


def _meminfo_available(meminfo: str) -> Optional[int]:
    text = _read_text(meminfo)
    if text is None:
        return None
    try:
        for line in text.splitlines():
            if line.startswith("MemAvailable:"):
                parts = line.split()
                return int(parts[1]) * (1024 if len(parts) < 3 or parts[2].lower() == "kb" else 1)
    except (ValueError, IndexError):
        return None
    return None


def _cgroup_available(proc_cgroup: str, root: str) -> Optional[int]:
    """Limit minus usage (page cache that can be dropped not counted) of this process's memory cgroup
    and its ancestors, the smallest; None when no limit is set or nothing can be read."""
    text = _read_text(proc_cgroup)
    if text is None:
        return None
    best: Optional[int] = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if controllers == "":  # cgroup v2
            base, limit_file, usage_file, stat_keys = root, "memory.max", "memory.current", ("inactive_file",)
        elif "memory" in controllers.split(","):  # cgroup v1
            base = os.path.join(root, "memory")
            limit_file, usage_file = "memory.limit_in_bytes", "memory.usage_in_bytes"
            stat_keys = ("total_inactive_file", "inactive_file")
        else:
            continue
        # the process's own group (when visible in this mount namespace) and its ancestors
        names = [name for name in rel.split("/") if name and name != "."]
        for depth in range(len(names), -1, -1):
            folder = os.path.join(base, *names[:depth])
            limit = _read_int(os.path.join(folder, limit_file))
            if limit is None or limit >= UNLIMITED:
                continue
            usage = _read_int(os.path.join(folder, usage_file)) or 0
            usage -= min(usage, _stat_value(os.path.join(folder, "memory.stat"), stat_keys))
            free = max(limit - usage, 0)
            best = free if best is None else min(best, free)
    return best


def available_memory(meminfo: str = "/proc/meminfo", proc_cgroup: str = "/proc/self/cgroup",
                     cgroup_root: str = "/sys/fs/cgroup") -> Optional[Tuple[int, str]]:
    """(bytes available, where the figure comes from), or None where nothing can be read (not Linux).

    The smaller of MemAvailable and the room left under a memory cgroup limit (containers)."""
    found = []
    mem = _meminfo_available(str(meminfo))
    if mem is not None:
        found.append((mem, "MemAvailable in /proc/meminfo"))
    cg = _cgroup_available(str(proc_cgroup), str(cgroup_root))
    if cg is not None:
        found.append((cg, "memory cgroup limit minus usage"))
    return min(found) if found else None

"""How much memory this process may still allocate: MemAvailable of /proc/meminfo and, in a
container, the room left under the limit of its memory cgroup (v1 or v2), whichever is smaller.

The cgroup figure is the limit minus the current usage, not counting the inactive (reclaimable)
page cache, for the process's own group and each ancestor visible in this mount namespace.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

UNLIMITED = 2**60  # cgroup limits at or above this mean "no limit"


def _read_int(path: Path) -> Optional[int]:
    try:
        text = path.read_text().strip()
    except (OSError, ValueError):
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _stat_value(path: Path, keys: Tuple[str, ...]) -> int:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return 0
    values = dict(line.split()[:2] for line in lines if len(line.split()) >= 2)
    for key in keys:
        if key in values:
            try:
                return int(values[key])
            except ValueError:
                pass
    return 0


def _meminfo_available(meminfo: Path) -> Optional[int]:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                parts = line.split()
                return int(parts[1]) * (1024 if len(parts) < 3 or parts[2].lower() == "kb" else 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available(proc_cgroup: Path, root: Path) -> Optional[int]:
    """Limit minus usage (page cache that can be dropped not counted) of this process's memory cgroup
    and its ancestors, the smallest; None when no limit is set or nothing can be read."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    best: Optional[int] = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if controllers == "":  # cgroup v2
            base, limit_file, usage_file, stat_keys = root, "memory.max", "memory.current", ("inactive_file",)
        elif "memory" in controllers.split(","):  # cgroup v1
            base = root / "memory"
            limit_file, usage_file = "memory.limit_in_bytes", "memory.usage_in_bytes"
            stat_keys = ("total_inactive_file", "inactive_file")
        else:
            continue
        # the process's own group (when visible in this mount namespace) and its ancestors
        rel_path = Path(rel.lstrip("/"))
        candidates = [base / rel_path] + [base / p for p in rel_path.parents]
        for folder in candidates:
            limit = _read_int(folder / limit_file)
            if limit is None or limit >= UNLIMITED:
                continue
            usage = _read_int(folder / usage_file) or 0
            usage -= min(usage, _stat_value(folder / "memory.stat", stat_keys))
            free = max(limit - usage, 0)
            best = free if best is None else min(best, free)
    return best


def available_memory(meminfo: str = "/proc/meminfo", proc_cgroup: str = "/proc/self/cgroup",
                     cgroup_root: str = "/sys/fs/cgroup") -> Optional[Tuple[int, str]]:
    """(bytes available, where the figure comes from), or None where nothing can be read (not Linux).

    The smaller of MemAvailable and the room left under a memory cgroup limit (containers)."""
    found = []
    mem = _meminfo_available(Path(meminfo))
    if mem is not None:
        found.append((mem, "MemAvailable in /proc/meminfo"))
    cg = _cgroup_available(Path(proc_cgroup), Path(cgroup_root))
    if cg is not None:
        found.append((cg, "memory cgroup limit minus usage"))
    return min(found) if found else None

"""Units for people: the one byte formatter of sparselm (reports, errors, progress lines)."""
from __future__ import annotations


def format_bytes(n: float) -> str:
    """Binary units with three significant digits: '31.2 GiB', '512 MiB', '980 B'."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024.0 or unit == "TiB":
            if unit == "B":
                return f"{n:.0f} B"
            return f"{n:.3g} {unit}" if abs(n) >= 100 else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} TiB"  # pragma: no cover

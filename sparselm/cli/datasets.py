"""``sparselm datasets list|fetch``: the official BAL problems (:mod:`sparselm.bal.registry`) and which are
found locally; downloading one into the cache, sha256 verified."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from sparselm.bal import registry
from sparselm.cli.common import EXIT_OK, CLIError, HelpFormatter, isatty, one_line, usage
from sparselm.util.units import format_bytes


def register(subparsers) -> None:
    """Add the ``datasets`` command (list, fetch)."""
    p = subparsers.add_parser(
        "datasets", formatter_class=HelpFormatter, help="list or download the official BAL problems",
        description="The official problems of 'Bundle Adjustment in the Large'. Files are looked for\n"
                    "under $SPARSELM_DATA (searched recursively) and in the download cache\n"
                    "($SPARSELM_CACHE/bal, default ~/.cache/sparselm/bal).")
    sub = p.add_subparsers(dest="datasets_command", metavar="ACTION")
    lst = sub.add_parser("list", formatter_class=HelpFormatter, help="list the official problems",
                         description="List the official BAL problems: name, family, cameras, points, and\n"
                                     "whether the file is found locally ($SPARSELM_DATA or the cache).")
    lst.add_argument("--family", metavar="F", help="only this family (dubrovnik, ladybug, trafalgar, venice)")
    lst.add_argument("--paths", action="store_true", help="show the local path of each file found")
    lst.set_defaults(func=cmd_datasets_list)
    fetch = sub.add_parser("fetch", formatter_class=HelpFormatter, help="download a problem into the cache",
                           description="Download an official BAL problem into the cache, verify its sha256,\n"
                                       "and print where it is. An existing download is kept unless --force.")
    fetch.add_argument("name", metavar="NAME", help="problem name, e.g. problem-16-22106-pre")
    fetch.add_argument("--force", action="store_true", help="download again even if the file is in the cache")
    fetch.add_argument("--url", help="download from this URL instead (a mirror; file:// works too)")
    fetch.set_defaults(func=cmd_datasets_fetch)
    p.set_defaults(func=lambda args: usage(p))



def _local_folders() -> List[Path]:
    folders = [Path(p).expanduser() for p in os.environ.get("SPARSELM_DATA", "").split(os.pathsep) if p]
    folders.append(registry.cache_dir() / "bal")
    return [f for f in folders if f.is_dir()]


def local_files() -> Dict[str, Path]:
    """{dataset name: path} of the official problems found under $SPARSELM_DATA and in the cache.

    One walk per folder; per folder ``<name>.txt.bz2`` wins over ``<name>.txt`` over ``<name>``,
    and earlier folders over later ones (the order of :func:`sparselm.bal.registry.resolve`).
    """
    names = {d.name for d in registry.list_datasets()}
    found: Dict[str, Path] = {}
    for folder in _local_folders():
        per_folder: Dict[str, tuple] = {}
        for path in sorted(folder.rglob("*")):
            base = path.name
            for rank, suffix in enumerate((".txt.bz2", ".txt", "")):
                if suffix and not base.endswith(suffix):
                    continue
                name = base[:-len(suffix)] if suffix else base
                if name in names and path.is_file() and (name not in per_folder or per_folder[name][0] > rank):
                    per_folder[name] = (rank, path)
                break
        for name, (_, path) in per_folder.items():
            found.setdefault(name, path)
    return found


def cmd_datasets_list(args) -> int:
    """``sparselm datasets list``: the registry with a local/not-local column."""
    datasets = registry.list_datasets()
    families = sorted({d.family for d in datasets})
    if args.family is not None:
        if args.family not in families:
            raise CLIError(f"unknown family {args.family!r}; choose one of {', '.join(families)}")
        datasets = [d for d in datasets if d.family == args.family]
    local = local_files()
    width = max([len(d.name) for d in datasets] + [4])
    print(f"{'name':<{width}}  {'family':<10} {'cameras':>8} {'points':>8}  local")
    n_local = 0
    for d in datasets:
        path = local.get(d.name)
        n_local += path is not None
        where = (str(path) if args.paths else "yes") if path is not None else "-"
        print(f"{d.name:<{width}}  {d.family:<10} {d.n_cameras:>8} {d.n_points:>8}  {where}")
    searched = [f"$SPARSELM_DATA={os.environ['SPARSELM_DATA']}" if os.environ.get("SPARSELM_DATA")
                else "$SPARSELM_DATA (not set)", f"the cache {registry.cache_dir() / 'bal'}"]
    print(f"{len(datasets)} problems, {n_local} found locally (searched {' and '.join(searched)}); "
          f"download one with: sparselm datasets fetch NAME")
    return EXIT_OK


def cmd_datasets_fetch(args) -> int:
    """``sparselm datasets fetch``: download into the cache with progress, checksum verified."""
    info = registry.dataset_info(args.name)
    url = args.url or info.url
    err = sys.stderr
    tty = isatty(err)
    state = {"calls": 0, "last": 0.0, "width": 0}

    def progress(done: int, total: Optional[int]) -> None:
        state["calls"] += 1
        if state["calls"] == 1:
            print(f"downloading {info.name} from {url}", flush=True)
        now = time.monotonic()
        finished = total is not None and done >= total
        if tty and (now - state["last"] >= 0.2 or finished):
            state["last"] = now
            pct = f" ({100.0 * done / total:.0f}%)" if total else ""
            of = f" of {format_bytes(total)}" if total else ""
            text = f"downloading {info.name}: {format_bytes(done)}{of}{pct}"
            err.write("\r" + text.ljust(state["width"]))
            err.flush()
            state["width"] = max(state["width"], len(text))

    try:
        path = registry.fetch(info.name, force=args.force, progress=progress, url=args.url)
    except OSError as e:
        reason = getattr(e, "reason", None) or one_line(e)
        raise CLIError(f"could not download {info.name} from {url}: {reason}") from None
    finally:
        if tty and state["width"]:
            err.write("\n")
            err.flush()
    if state["calls"] == 0 and not args.force:
        print(f"{info.name} is already in the cache: {path} (use --force to download it again)")
    else:
        print(f"fetched {info.name}: {path} ({format_bytes(path.stat().st_size)}, sha256 verified)")
    return EXIT_OK

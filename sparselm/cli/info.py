"""``sparselm info``: statistics of a problem without solving it, as text or JSON (the format's
:attr:`~sparselm.formats.InputFormat.statistics`)."""
from __future__ import annotations

import json

from sparselm.cli.common import BUILT_IN, EXIT_OK, HelpFormatter, add_input_argument, json_clean, load_input


def register(subparsers) -> None:
    """Add the ``info`` command."""
    p = subparsers.add_parser(
        "info", formatter_class=HelpFormatter,
        help="describe a BAL problem or a g2o pose graph (sizes, tracks or degrees, cost)",
        description="Describe a BAL problem without solving it: sizes (cameras, points, observations,\n"
                    "parameters, residuals), observations per camera and per point (track length),\n"
                    "the camera co-visibility graph (cameras sharing at least one point), and the\n"
                    "initial cost and RMS reprojection error. For a g2o pose graph: vertices, edges,\n"
                    "loop closures (vertex ids more than 1 apart), degrees, components, initial error.")
    add_input_argument(p)
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    p.set_defaults(func=cmd_info)



def cmd_info(args) -> int:
    """``sparselm info``: statistics of a problem, as text or JSON."""
    fmt, data, input_desc = load_input(args.problem)
    stats = {"input": input_desc, **fmt.statistics(data)}
    if args.json:
        print(json.dumps(json_clean(stats), indent=1))
        return EXIT_OK
    if input_desc == BUILT_IN:
        print("sparselm: no file given: describing the built-in synthetic problem")
    print("\n".join([f"{input_desc}"] + fmt.statistics_lines(stats)))
    return EXIT_OK

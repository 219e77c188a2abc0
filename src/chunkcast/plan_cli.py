"""``chunkcast plan``: the plan of a live event as a table (or JSON), every figure with the
inputs it came from and every input with its source."""

import argparse
import json
import sys
from pathlib import Path

from chunkcast.domain.errors import InvalidInput
from chunkcast.domain.plan import Plan
from chunkcast.services.planning import OPTIONS, RESULTS_DIR, make_plan, to_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for option in OPTIONS:
        default = "" if option.default is None else f" (default {option.default:g})"
        parser.add_argument(option.flag, dest=option.name, metavar=option.unit.upper()
                            .replace(" ", "_").replace("/", "_PER_"),
                            help=option.help + default)
    parser.add_argument("--results", type=Path, default=RESULTS_DIR,
                        help="folder of the capacity files benchmarks write (default "
                        f"{RESULTS_DIR})")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")


def cmd_plan(args: argparse.Namespace) -> int:
    given = {o.name: getattr(args, o.name) for o in OPTIONS
             if getattr(args, o.name) is not None}
    try:
        plan, _ = make_plan(given, args.results)
    except InvalidInput as exc:
        print(f"chunkcast plan: {exc.message}", file=sys.stderr)
        return 2
    print(json.dumps(to_json(plan), indent=2) if args.json else render(plan))
    return 0


def amount(value: float, unit: str) -> str:
    """``value`` for people: Gbps above 1,000 as Tbps, whole numbers with separators."""
    if unit == "Gbps" and value >= 1000:
        value, unit = value / 1000, "Tbps"
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,} {unit}"
    if abs(value) >= 100:
        return f"{value:,.1f} {unit}"
    return f"{value:.3g} {unit}"


def render(plan: Plan) -> str:
    """The plan as a table, then every input once with its source."""
    rows = [("figure", "value", "")]
    inputs: dict[str, tuple[str, str]] = {}
    for line in plan.lines:
        rows.append((line.label, amount(line.value, line.unit), ""))
        rows += [(f"  {name.replace('_', ' ')}", amount(value, line.unit), "")
                 for name, value in line.parts.items()]
        rows.append(("", "", f"  = {line.formula}"))
        for name, given in line.inputs.items():
            if not given.source.startswith("computed:"):
                inputs.setdefault(name, (amount(given.value, given.unit), given.source))
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    out = [c if c else f"{a:<{width[0]}}  {b:>{width[1]}}" for a, b, c in rows]
    out += ["", "assumptions (the inputs above and their sources)"]
    name_w = max(len(n) for n in inputs)
    value_w = max(len(v) for v, _ in inputs.values())
    out += [f"  {n:<{name_w}}  {v:>{value_w}}  {s}" for n, (v, s) in inputs.items()]
    return "\n".join(out)

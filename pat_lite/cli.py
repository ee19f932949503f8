"""`pat-lite` command line: train, demo, eval, bench (each sub-command lives with its module)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    from pat_lite.bench import inference, training_cost
    from pat_lite.evaluation import lmeval
    from pat_lite.study import demo
    from pat_lite.training import trainer

    parser = argparse.ArgumentParser(prog="pat-lite", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (trainer, demo, lmeval, inference, training_cost):
        module.register_cli(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = args.handler(args)
    if isinstance(result, dict):
        print(json.dumps(result, indent=2, default=str))
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())

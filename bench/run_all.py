"""Run every benchmark module of ``bench/`` (``make bench``); arguments such as
``--quick`` are passed to each. A benchmark module is one with a ``main(argv)``."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import bench

NOT_BENCHMARKS = {"run_all", "ledger_data"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    status = 0
    for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda m: m.name):
        if info.name in NOT_BENCHMARKS:
            continue
        module = importlib.import_module(f"bench.{info.name}")
        if callable(getattr(module, "main", None)):
            print(f"== bench.{info.name}", flush=True)
            status |= int(module.main(list(argv)) or 0)
    return status


if __name__ == "__main__":
    raise SystemExit(main())

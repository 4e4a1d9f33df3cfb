"""``python -m bench`` (``make bench``): run the benchmarks and print their figures.

To add a benchmark, add a module that defines ``BENCHMARK = Benchmark(...)`` (a name, a
summary, ``run(ctx) -> Result`` and optionally its own flags) and list it in ``BENCHMARKS``.
``--only NAME`` runs one of them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from bench.core import BenchError, Benchmark, Context, machine
from bench.report import format_result

# Run in this order: a later benchmark may compare itself with an earlier one's figures
# (ctx.results), as the import does with the live event path.
BENCHMARKS: tuple[str, ...] = (
    "bench.order_events",
    "bench.importing",
    "bench.scan",
    "bench.sends",
    "bench.memory",
    "bench.member_page",
)


def registry() -> dict[str, Benchmark]:
    found: dict[str, Benchmark] = {}
    for module_name in BENCHMARKS:
        benchmark: Benchmark = importlib.import_module(module_name).BENCHMARK
        found[benchmark.name] = benchmark
    return found


def parser_for(benchmarks: dict[str, Benchmark]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmarks of the loyalty engine; every figure "
        "comes with a baseline measured in the same run.",
        epilog="benchmarks: " + "; ".join(f"{b.name}: {b.summary}" for b in benchmarks.values()))
    parser.add_argument("--only", action="append", choices=sorted(benchmarks), metavar="NAME",
                        help="run only this benchmark (repeatable): "
                             + ", ".join(benchmarks))
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the machine and the figures to FILE")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the worker and API logs (always kept on failure)")
    workers = parser.add_argument_group("Celery workers (every benchmark that starts some)")
    workers.add_argument("--workers", type=int, default=1,
                         help="worker processes (default %(default)s)")
    workers.add_argument("--concurrency", type=int, default=2,
                         help="prefork pool processes per worker (default %(default)s)")
    workers.add_argument("--worker-loglevel", default="info",
                         help="celery worker --loglevel (default %(default)s, as ops run it)")
    for benchmark in benchmarks.values():
        if benchmark.add_arguments:
            benchmark.add_arguments(parser)
    return parser


def _stop_on_signal(signum: int, _frame: FrameType | None) -> None:
    # SystemExit unwinds through every `with`, so the children are stopped and the
    # databases dropped when the run is killed with SIGTERM or its terminal goes away.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    benchmarks = registry()
    args = parser_for(benchmarks).parse_args(argv)
    if args.list:
        for benchmark in benchmarks.values():
            print(f"{benchmark.name:<16} {benchmark.summary}")
        return 0
    selected = [benchmarks[name] for name in (args.only or benchmarks)]
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_on_signal)

    began = time.monotonic()
    host = machine()
    print(f"machine: {host['cpus']} CPUs ({host['cpu_model']}), {host['memory_gib']} GiB RAM, "
          f"PostgreSQL {host['postgresql']}, Redis {host['redis']}, Celery {host['celery']}, "
          f"Python {host['python']}; load average {_load(host['load_average'])}", flush=True)
    try:
        with Context(args) as ctx:
            for benchmark in selected:
                print(f"\nrunning {benchmark.name} …", flush=True)
                started = time.monotonic()
                result = benchmark.run(ctx)
                ctx.results[benchmark.name] = result
                print(format_result(result))
                print(f"  ({benchmark.name} took {time.monotonic() - started:.0f} s)", flush=True)
    except BenchError as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - began
    print(f"\ntotal {elapsed:.0f} s; load average now {_load(machine()['load_average'])}")
    if args.json:
        args.json.write_text(json.dumps({
            "machine": host, "seconds": round(elapsed, 1),
            "results": [result.to_json() for result in ctx.results.values()]},
            ensure_ascii=False, indent=2) + "\n")
    return 0


def _load(values: tuple[float, float, float]) -> str:
    return " ".join(f"{value:.2f}" for value in values)


if __name__ == "__main__":
    sys.exit(main())

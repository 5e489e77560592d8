"""``tridsa fuzz``: the command line of the differential fuzzer (:mod:`tridsa.sw.fuzz`), locally or on Ray
workers (:mod:`tridsa.sw.fuzz_ray`)."""
from __future__ import annotations

import sys

from ..sim.backend import SIMULATION_BACKENDS
from .fuzz import MAX_COST, fuzz
from .fuzz_ray import fuzz_ray

__all__ = ["main"]


def main(argv=None) -> int:
    """``tridsa fuzz``: exit 0 if every Program matched, 1 if one failed, 2 on a usage error."""
    from .cli import CliError, Parser, config_from_args
    parser = Parser(prog="tridsa fuzz", description=(
        "Differential fuzzing: random Programs on the golden model and a gateware backend, memory image and "
        "status compared bit for bit. Failing Programs are shrunk and saved for `tridsa run FILE --check`."))
    parser.add_argument("--backend", default="verilator", choices=SIMULATION_BACKENDS)
    parser.add_argument("--n", type=int, default=100, metavar="N", help="number of Programs (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="campaign seed (default: %(default)s)")
    parser.add_argument("--start", type=int, default=0, metavar="I",
                        help="index of the first Program (replay Program I of seed S with --start I --n 1)")
    parser.add_argument("--out", metavar="DIR", help="save failing Programs (original and shrunk) here")
    parser.add_argument("--instructions", type=int, default=8, metavar="K",
                        help="at most K instructions run per Program (default: %(default)s)")
    parser.add_argument("--max-cost", type=int, default=MAX_COST, metavar="CYCLES",
                        help="bound on the estimated cycles of one Program (default: %(default)s)")
    parser.add_argument("--config", metavar="FILE.json", help="Config as JSON (default: Config())")
    parser.add_argument("--ray", action="store_true",
                        help="run on Ray workers (the same Programs and report; tridsa.sw.fuzz_ray)")
    parser.add_argument("--workers", type=int, metavar="N", help="with --ray: tasks in flight (default: all CPUs)")
    parser.add_argument("--address", metavar="HOST:PORT",
                        help="with --ray: join this Ray cluster (default: a local instance; docs/multichip.md)")
    for name in ("rows", "cols", "mem_width", "mem_depth", "mem_latency"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, metavar="N", dest=name, help=f"Config.{name}")
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        if ns.n < 0 or ns.instructions < 1 or ns.start < 0:
            raise CliError("--n and --start must be >= 0 and --instructions >= 1")
        if (ns.workers is not None or ns.address is not None) and not ns.ray:
            raise CliError("--workers and --address need --ray")
        if ns.workers is not None and ns.workers < 1:
            raise CliError("--workers must be >= 1")
        config = config_from_args(ns)
    except CliError as exc:
        print(f"tridsa fuzz: error: {exc}", file=sys.stderr)
        return 2
    from .cluster import ClusterError
    from .progress import Progress
    with Progress(ns.n, "fuzz") as bar:
        step = lambda rep, total: bar.step(f"{len(rep.failures)} failing")
        if ns.ray:
            try:
                report = fuzz_ray(config, ns.backend, ns.n, ns.seed, ns.out, ns.instructions, ns.max_cost,
                                  progress=step, start=ns.start, workers=ns.workers, address=ns.address)
            except ClusterError as exc:
                print(f"tridsa fuzz: error: {exc}", file=sys.stderr)
                return 2
        else:
            report = fuzz(config, ns.backend, ns.n, ns.seed, ns.out, ns.instructions, ns.max_cost,
                          progress=step, start=ns.start)
    print(report.summary())
    if report.failures and not ns.out:
        print("rerun with --out DIR to save shrunk failing Programs", file=sys.stderr)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``tridsa`` command line: a thin layer over the driver, the gateware and the benchmarks.

Subcommands: ``verilog`` (Verilog of the top level for a Config), ``run`` (replay a saved Program on a
backend), ``bench`` (cycle-level benchmarks from ``benchmarks/``), ``build`` (FPGA bitstream and report,
:mod:`tridsa.sw.build`), ``demo`` (:mod:`tridsa.sw.demo`) and ``fuzz`` (:mod:`tridsa.sw.fuzz_cli`).

Contract: a user error (bad Config, missing file, unknown backend, missing simulator, a feature whose
module is not there yet) prints one line ``tridsa <command>: error: ...`` on stderr and exits with 2,
never a traceback (``tridsa --debug ...`` shows one). An accelerator error status, a result mismatch or a
failed simulation exits with 1. Commands that are implemented by other modules are found with
:func:`importlib.util.find_spec` when they run, so they work as soon as the module exists.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import sys
import time
from pathlib import Path

from ..spec.config import Config

__all__ = ["main", "CliError", "Parser", "config_from_args"]

_CONFIG_FLAGS = ("rows", "cols", "mem_width", "mem_depth", "mem_latency")
_BENCHES = {
    "gemm": "GEMM engine: cycles and MAC utilization of matmuls and a ResNet-style conv stack, INT8 and INT4",
    "gather": "gather engine: embedding_bag on synthetic DLRM traffic (benchmarks/bench_gather.py)",
    "rng": "sketch engine: random bits per cycle and sketch multiplies (benchmarks/bench_rng.py)",
    "models": "end-to-end workloads (benchmarks/bench_models.py)",
    "multichip": "DLRM sharded over N accelerators (Ray actors): bit-exact check, per-chip figures, all-to-all "
                 "bytes and a 1-64 chip scaling model (benchmarks/bench_multichip.py)",
    "ray": "wall-clock time of a sweep and a fuzz campaign on Ray with 1 and 2 workers (benchmarks/bench_ray.py)",
    "onnx": "quantized ONNX models (torch.onnx + onnxruntime quantize_static) through the ONNX backend "
            "(benchmarks/bench_onnx.py)",
    "sim": "simulation speed per backend: fixed cost per call and marginal cycles/s (benchmarks/bench_sim.py)",
    "zoo": "the model zoo at full size: ResNet-50, MobileNetV2, BERT-base layer, LSTM, DLRM (benchmarks/bench_zoo.py)",
    "cycles": "the cycle model against the RTL cycle counter: error distribution per engine "
              "(benchmarks/bench_cycles.py)",
}


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


class _Failure(Exception):
    """The command ran but its result is bad (error status, mismatch): printed as one line, exit code 1."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``prog: error: message``, no usage block) and exit code 2; every
    ``tridsa`` command parses with it."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- helpers -----------------------------------------------------------------------------------------
def _add_config_args(parser) -> None:
    group = parser.add_argument_group("configuration (default Config(); flags override --config)")
    group.add_argument("--config", metavar="FILE.json", help="Config as JSON (Config.to_json / Config.from_json)")
    for name in _CONFIG_FLAGS:
        group.add_argument("--" + name.replace("_", "-"), type=int, metavar="N", dest=name,
                           help=f"Config.{name}")


def config_from_args(ns, base: Config | None = None) -> Config:
    """The Config of ``--config FILE.json`` (its fields over ``base``, or ``Config()``) with the individual
    flags applied.

    Raises :class:`CliError` with one line for a missing or malformed file and for invalid values.
    """
    data = base.to_dict() if base is not None else {}
    if getattr(ns, "config", None):
        path = Path(ns.config)
        if not path.is_file():
            raise CliError(f"--config: no such file {path}")
        try:
            loaded = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CliError(f"--config: {path} is not valid JSON ({exc})") from None
        if not isinstance(loaded, dict):
            raise CliError(f"--config: {path} must hold a JSON object of Config fields")
        data.update(loaded)
    data.update({name: getattr(ns, name) for name in _CONFIG_FLAGS if getattr(ns, name, None) is not None})
    try:
        return Config.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc)) from None


def _module_available(name: str) -> bool:
    """True if module ``name`` exists (its parent packages must import; the module itself is not run)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:       # a parent package is missing
        return False


def _require(module: str, path_hint: str):
    """Import ``module`` or raise a one-line "not available yet" error."""
    if not _module_available(module):
        raise CliError(f"not available yet: {module} missing ({path_hint})")
    return importlib.import_module(module)


def _repo_root() -> Path:
    """The source checkout holding ``benchmarks/`` (the tridsa package folder is the repo root)."""
    import tridsa
    return Path(tridsa.__file__).resolve().parent


def _bench_module(name: str):
    """``benchmarks.bench_<name>`` from the repo root, which goes on ``sys.path`` only here."""
    root = _repo_root()
    folder = root / "benchmarks"
    if not (folder / "__init__.py").is_file():
        raise CliError(f"the benchmarks need a source checkout: {folder} is missing "
                       "(clone the repository and `pip install -e .`)")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module = f"benchmarks.bench_{name}"
    spec = importlib.util.find_spec(module) if _module_available(module) else None
    if spec is None:
        raise CliError(f"not available yet: {module} missing ({folder / f'bench_{name}.py'})")
    if spec.origin and Path(spec.origin).resolve().parent != folder:
        raise CliError(f"{module} resolves to {spec.origin}, not to {folder}: another 'benchmarks' "
                       "package shadows tridsa's")
    return importlib.import_module(module)


def _positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return value


def _positive_list(text: str) -> tuple:
    """argparse type: comma-separated integers >= 1."""
    return tuple(_positive(part) for part in text.split(","))


def _add_address_arg(parser) -> None:
    parser.add_argument("--address", metavar="HOST:PORT",
                        help="join the Ray cluster there (HOST:PORT, ray://HOST:PORT or auto; default: a local "
                             "Ray instance; see docs/multichip.md)")


# -- subcommands -------------------------------------------------------------------------------------
def _cmd_verilog(ns, extra) -> int:
    from amaranth.back import verilog
    from ..hw.top import Top
    config = config_from_args(ns)
    start = time.perf_counter()
    print(f"generating the Verilog of a {config.rows}x{config.cols} tridsa with Amaranth and Yosys ...",
          file=sys.stderr, flush=True)
    text = verilog.convert(Top(config, storage="amaranth"), name=ns.name, emit_src=False)
    print(f"generated in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    if ns.output == "-":
        sys.stdout.write(text)
    else:
        out = Path(ns.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}: module {ns.name}, {text.count(chr(10))} lines, "
              f"{config.rows}x{config.cols} array, {config.mem_depth} x {config.mem_width} B memory",
              file=sys.stderr)
    return 0


def _run_onnx(ns, path: Path) -> int:
    """``tridsa run model.onnx``: run an ONNX model through :mod:`tridsa.sw.onnx_backend`."""
    import numpy as np
    import onnx
    from .onnx_backend import backend

    if ns.waves or ns.out:
        raise CliError("--waves and --out are for saved Programs; an ONNX model takes --output Y.npy")
    arrays = []
    for name in ns.input or []:
        if not Path(name).is_file():
            raise CliError(f"--input: no such file {name}")
        try:
            arrays.append(np.load(name, allow_pickle=False))
        except (OSError, ValueError) as exc:
            raise CliError(f"--input: {name} is not a .npy array ({exc})") from None
    config = config_from_args(ns)
    try:
        model = onnx.load(path)
        rep = backend(ns.backend, config, strict=ns.strict).prepare(model)
    except onnx.checker.ValidationError as exc:
        raise CliError(f"{path}: {str(exc).strip().splitlines()[0]}") from None
    if len(arrays) != len(rep.plan.inputs):
        raise CliError(f"{path} has {len(rep.plan.inputs)} input(s) ({', '.join(rep.plan.inputs)}): "
                       f"give one --input FILE.npy for each, in this order (got {len(arrays)})")
    outputs = rep.run(arrays)
    print(rep.report(f"model: {path} on {ns.backend}, {config.rows}x{config.cols} array"))
    for name, value in zip(rep.plan.outputs, outputs):
        print(f"output {name}: {value.dtype} {value.shape}")
    failed = False
    if ns.check and ns.backend != "golden":
        expected = backend("golden", config).prepare(model).run(arrays)
        same = all(np.array_equal(a, b) for a, b in zip(outputs, expected))
        print("check: outputs equal the golden backend's bit for bit" if same else "check: MISMATCH against golden")
        failed = not same
    if ns.output:
        out = Path(ns.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        if len(outputs) == 1:
            np.save(out, outputs[0])
        else:
            np.savez(out, **dict(zip(rep.plan.outputs, outputs)))
        print(f"wrote {out}")
    return 1 if failed else 0


def _cmd_run(ns, extra) -> int:
    import numpy as np
    from ..spec import isa
    from ..sim.backend import get_backend
    from .program import Program

    path = Path(ns.file)
    if not path.is_file():
        raise CliError(f"no such {'ONNX model' if path.suffix == '.onnx' else 'Program'} file: {path}")
    if path.suffix == ".onnx":
        return _run_onnx(ns, path)
    if ns.input or ns.output or ns.strict or ns.config or any(getattr(ns, n) is not None for n in _CONFIG_FLAGS):
        raise CliError("--input, --output, --strict and the Config options are for ONNX models (FILE.onnx); "
                       "a saved Program carries its Config")
    try:
        program = Program.load(path)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    try:
        backend = get_backend(ns.backend, program.config, waves=ns.waves)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    cfg = program.config
    print(f"program: {path} ({len(program.instructions)} instructions, {cfg.rows}x{cfg.cols} array, "
          f"{cfg.mem_depth} x {cfg.mem_width} B memory)")
    result = backend.run(program)
    print(f"status: {result.error_name} (code {result.error})"
          + (f" at instruction {result.error_pc}" if result.error else ""))
    counters = dict(result.counters)
    wall = counters.pop("wall_seconds", None)
    print("counters:")
    for name, value in counters.items():
        print(f"  {name}: {'-' if value is None else value}")
    if wall:
        speed = f", {counters['cycles'] / wall:,.0f} cycles/s" if counters.get("cycles") else ""
        print(f"simulator: {wall:.2f} s wall clock{speed}")
    if ns.waves:
        print(f"waves: {ns.waves}")
    print("outputs:")
    for name, region in program.outputs.items():
        print(f"  {name}: {region.words} words = {region.words * cfg.mem_width} bytes at word {region.addr}")
    failed = bool(result.error)
    if ns.check and ns.backend != "golden":
        reference = get_backend("golden", cfg).run(program)
        diff = np.nonzero((reference.memory != result.memory).any(axis=1))[0]
        same_status = (reference.error, reference.error_pc) == (result.error, result.error_pc)
        if len(diff) or not same_status:
            where = f"{len(diff)} memory words differ (first at word {diff[0]})" if len(diff) else "memory matches"
            print(f"check: MISMATCH against golden: {where}; golden status "
                  f"{isa.ERROR_NAMES.get(reference.error, reference.error)} at {reference.error_pc}")
            failed = True
        else:
            print("check: memory image and status match the golden model bit for bit")
    if ns.out:
        out = Path(ns.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "wb") as f:
            np.savez_compressed(f, memory=result.memory, error=result.error, error_pc=result.error_pc,
                                counters=np.frombuffer(json.dumps(result.counters).encode(), np.uint8))
        print(f"wrote {out}")
    return 1 if failed else 0


def _cmd_bench(ns, extra) -> int:
    config = config_from_args(ns)
    module = _bench_module(ns.bench)
    kwargs = {}
    params = inspect.signature(module.run).parameters
    if ns.quick:
        if "quick" in params:
            kwargs["quick"] = True
        else:
            print(f"note: bench {ns.bench} has no quick mode; running it in full", file=sys.stderr)
    if ns.bench == "sim":
        kwargs.update(backends=ns.backends.split(",") if ns.backends else None, flags=ns.flags)
    if ns.bench == "gemm":
        if ns.shapes:
            kwargs["shapes"] = module.parse_shapes(ns.shapes)
        kwargs.update(conv=not ns.no_conv, precisions=tuple(ns.precision or ("int8", "int4")), seed=ns.seed,
                      publish=ns.publish, instructions=ns.stream)
    if ns.bench == "multichip":
        kwargs.update(chips=ns.chips, strategy=ns.strategy, batch=ns.batch,
                      link_bytes_per_cycle=ns.link_bandwidth)
    if ns.bench in ("multichip", "ray"):
        kwargs.update(address=ns.address, publish=ns.publish)
    if ns.bench in ("gather", "cycles"):
        kwargs.update(publish=ns.publish)
    if ns.bench == "models":
        kwargs.update(publish=ns.publish, batches=ns.batches)
    if ns.bench == "zoo":
        kwargs.update(models=ns.models.split(",") if ns.models else None, publish=ns.publish)
    report = module.run(config, ns.backend, ns.out, **kwargs)
    summary = report.get("summary") if isinstance(report, dict) else None
    summary = summary if isinstance(summary, dict) else {}          # bench models: a list of workloads
    if summary.get("all_exact") is False or (isinstance(report, dict) and report.get("ok") is False):
        raise _Failure("some results differ from the golden model (see the table)")
    return 0


def _cmd_build(ns, extra) -> int:
    build = _require("tridsa.sw.build", "sw/build.py")
    from ..hw.fpga_top import BOARDS
    board = BOARDS.get(ns.board)              # an unknown name: build() says which boards exist
    config = config_from_args(ns, board.config if board else None)
    report = build.build(ns.board, config, ns.out, baud=ns.baud, seeds=ns.seeds,
                         frequency=None if ns.mhz is None else ns.mhz * 1e6)
    for key, value in (report or {}).items():
        print(f"{key}: {value}")
    if ns.publish:
        from .fpga_results import publish
        print(f"published: {publish(report)} and the FPGA tables of README.md, docs/fpga.md")
    if not report["timing_met"]:
        raise _Failure(str(build.TimingNotMet(report)))
    return 0


def _forward(module: str, path_hint: str, parser):
    """A subcommand implemented by ``module.main(args) -> int``; ``args`` are the remaining words."""
    def handler(ns, extra):
        if not _module_available(module):
            if any(a in ("-h", "--help") for a in extra):
                parser.print_help()
                return 0
            raise CliError(f"not available yet: {module} missing ({path_hint})")
        return int(importlib.import_module(module).main(list(extra)) or 0)
    return handler


# -- parser ------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    from .. import __version__
    parser = Parser(prog="tridsa", description="tridsa: an open INT4/INT8 GEMM, embedding-gather and Philox "
                     "sketch accelerator. Every subcommand has --help.")
    parser.add_argument("--version", action="version", version=f"tridsa {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    p = sub.add_parser("verilog", help="write Verilog of the top level for a Config",
                       description="Write synthesizable Verilog (amaranth.back.verilog) of tridsa.hw.top.Top for a "
                       "Config; the memory is an inferable RAM (storage='amaranth').")
    _add_config_args(p)
    p.add_argument("-o", "--output", default="-", metavar="OUT.v", help="output file (default: stdout)")
    p.add_argument("--name", default="tridsa_top", help="Verilog module name (default: %(default)s)")
    p.set_defaults(handler=_cmd_verilog)

    from ..sim.backend import BACKENDS
    p = sub.add_parser("run", help="replay a saved Program, or run an ONNX model, on a backend",
                       description="Load a Program saved with Program.save, run it, print the status, counters "
                       "and output regions (exit code 1 if the status register reports an error); or run an "
                       "ONNX model (FILE.onnx, docs/onnx.md) on inputs from .npy files and print which engine ran "
                       "each node, its cycles and MAC utilization.")
    p.add_argument("file", metavar="FILE", help="Program file (.npz written by Program.save) or ONNX model (.onnx)")
    p.add_argument("--input", action="append", metavar="X.npy",
                   help="ONNX: an input array, once per model input in order")
    p.add_argument("--output", metavar="Y.npy", help="ONNX: save the output (several outputs: an .npz by name)")
    p.add_argument("--strict", action="store_true",
                   help="ONNX: fail, naming the node, instead of running a compute node on the host")
    _add_config_args(p)
    p.add_argument("--backend", default="golden", choices=BACKENDS, metavar="B",
                   help=f"one of {', '.join(BACKENDS)} (default: %(default)s)")
    p.add_argument("--out", metavar="RESULT.npz", help="save the final memory image, status and counters")
    p.add_argument("--check", action="store_true",
                   help="also run the golden model and compare memory image and status (ONNX: the outputs) bit "
                   "for bit (exit 1 if not)")
    p.add_argument("--waves", metavar="FILE", help="dump the run's waveforms (.fst from verilator and icarus, "
                   ".vcd from amaranth)")
    p.set_defaults(handler=_cmd_run)

    p = sub.add_parser("bench", help="cycle-level benchmarks (needs a source checkout)",
                       description="Benchmarks from the repository's benchmarks/ folder: Markdown table on "
                       "stdout, progress on stderr, JSON and PNG files in --out.")
    bench = p.add_subparsers(dest="bench", metavar="NAME", parser_class=Parser, required=True)
    for name, text in _BENCHES.items():
        b = bench.add_parser(name, help=text, description=text)
        b.add_argument("--backend", default="golden" if name == "ray" else "verilator", choices=BACKENDS,
                       metavar="B", help=f"one of {', '.join(BACKENDS)} (default: %(default)s; amaranth is far too slow)")
        b.add_argument("--out", default="benchmarks/out", metavar="DIR", help="output folder (default: %(default)s)")
        b.add_argument("--quick", action="store_true", help="a subset that runs in about two minutes")
        _add_config_args(b)
        if name == "gemm":
            b.add_argument("--shapes", metavar="MxKxN,...", help="matmul shapes instead of the built-in sweep")
            b.add_argument("--no-conv", action="store_true", help="skip the ResNet-style conv stack")
            b.add_argument("--precision", action="append", choices=("int8", "int4"),
                           help="run only this precision (repeatable; default both)")
            b.add_argument("--seed", type=int, default=0, help="seed of the random operands (default: 0)")
            b.add_argument("--stream", type=int, default=1, metavar="N",
                           help="run every matmul shape as a Program of N independent same-size GEMM "
                                "instructions (default: 1, a single instruction)")
            b.add_argument("--publish", action="store_true",
                           help="also write the table into README.md (section bench-gemm)")
        if name == "gather":
            b.add_argument("--publish", action="store_true",
                           help="also write the hit-rate, memory-port and latency tables into README.md (sections "
                           "bench-gather-hits, bench-gather-port, bench-gather-latency)")
        if name == "cycles":
            b.add_argument("--publish", action="store_true",
                           help="also write the table into docs (section bench-cycles) and the histogram into docs/img")
        if name == "models":
            b.add_argument("--batches", type=_positive_list, default=(1, 2, 4, 8, 16, 32), metavar="A,B",
                           help="batches of the utilization-against-batch sweep (default: 1,2,4,8,16,32)")
            b.add_argument("--publish", action="store_true",
                           help="also write the tables into README.md and docs (sections bench-models, "
                           "bench-models-layers, bench-models-batch) and the plots into docs/img")
        if name == "multichip":
            from .sharding import STRATEGIES
            b.add_argument("--chips", type=_positive, default=2, metavar="N", help="accelerators (default: %(default)s)")
            b.add_argument("--strategy", default="auto", choices=STRATEGIES,
                           help="table sharding: auto (planner), table (table-wise), row (row-wise) (default: %(default)s)")
            b.add_argument("--batch", type=_positive, default=64, metavar="B", help="global batch (default: %(default)s)")
            b.add_argument("--link-bandwidth", type=float, default=16.0, metavar="BYTES",
                           help="bytes per cycle of a chip's link in the scaling model (default: %(default)s)")
        if name in ("multichip", "ray"):
            _add_address_arg(b)
            b.add_argument("--publish", action="store_true",
                           help="also write the tables into docs/multichip.md (between its bench markers)")
        if name == "sim":
            b.add_argument("--backends", metavar="A,B", help="backends to measure (default: verilator, "
                           "cocotb-verilator, icarus, amaranth; --backend is not used)")
            b.add_argument("--flags", action="store_true",
                           help="also build the fast model with each compiler option alone and measure it")
        if name == "zoo":
            b.add_argument("--models", metavar="A,B", help="zoo models to run (default: all of resnet50, mobilenetv2, "
                           "bert, lstm, dlrm)")
            b.add_argument("--publish", action="store_true", help="also write the summary table into README.md and "
                           "docs (section bench-zoo-<backend>) and the roofline into docs/img")
        b.set_defaults(handler=_cmd_bench)

    p = sub.add_parser("build", help="FPGA bitstream with timing and resource report (sw/build.py)",
                       description="Build the top level for a board with the open FPGA flow and print the "
                       "timing/resource report (tridsa.sw.build.build). --config and the Config flags change "
                       "the board's own Config (hw/fpga_top.py BOARDS).")
    p.add_argument("--board", required=True, metavar="NAME", help="board name, e.g. icebreaker or ulx3s-85f")
    p.add_argument("--out", default="build", metavar="DIR", help="build folder (default: %(default)s)")
    p.add_argument("--mhz", type=float, default=None, metavar="F",
                   help="clock to build for, in MHz (default: the board's target; use one the report's Fmax meets)")
    p.add_argument("--baud", type=int, default=115200, metavar="N", help="UART baud rate (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="place and route with N nextpnr seeds and report the Fmax spread (default: %(default)s)")
    p.add_argument("--publish", action="store_true",
                   help="store the report as benchmarks/fpga/BOARD.json and rewrite the FPGA tables of README.md "
                   "and docs/fpga.md")
    _add_config_args(p)
    p.set_defaults(handler=_cmd_build)

    for name, module, hint, text in (
            ("demo", "tridsa.sw.demo", "sw/demo.py", "run the end-to-end demo (arguments go to tridsa.sw.demo)"),
            ("fuzz", "tridsa.sw.fuzz_cli", "sw/fuzz_cli.py",
             "cross-backend random testing (arguments go to tridsa.sw.fuzz_cli)"),
            ("sweep", "tridsa.sw.sweep", "sw/sweep.py",
             "design-space sweep of Configs x workloads on Ray (arguments go to tridsa.sw.sweep)")):
        p = sub.add_parser(name, help=text, description=text + "; --help shows its own options once it exists.",
                           add_help=False)
        p.set_defaults(handler=_forward(module, hint, p), forwards=True)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``tridsa`` console script; returns the exit code."""
    parser = _parser()
    ns, extra = parser.parse_known_args(argv)
    if ns.command is None:
        parser.print_help(sys.stderr)
        return 2
    prog = " ".join(["tridsa", ns.command] + ([ns.bench] if ns.command == "bench" else []))
    if extra and not getattr(ns, "forwards", False):
        print(f"{prog}: error: unrecognized arguments: {' '.join(extra)} (see {prog} --help)", file=sys.stderr)
        return 2
    from ..sim.toolchain import SimulatorMissing
    from .builder import ProblemTooLarge
    from .cluster import ClusterError
    try:
        return ns.handler(ns, extra)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (CliError, ClusterError, SimulatorMissing, ProblemTooLarge, ValueError, TypeError, IndexError,
            FileNotFoundError) as exc:
        if ns.debug:
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except (_Failure, RuntimeError, AssertionError) as exc:
        # AcceleratorError (error status), a failed simulator run (CocotbFailure), a result mismatch
        if ns.debug:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"{prog}: failed: {first}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

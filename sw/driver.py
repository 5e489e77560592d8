"""The Accelerator: the public driver that offloads layers to a backend.

Each call validates its arguments, builds a :class:`~tridsa.sw.program.Program`, runs it on the backend
and reads the results back; ``last_run`` holds the counters of the call.
"""
from __future__ import annotations

import dataclasses

from ..spec import isa
from .builder import ProgramBuilder
from ..spec.config import Config
from .conv import conv2d_gemms
from .gemm_ops import gemm_problems
from .operands import integer_matrix
from .requant import Requant
from .tiling import run_gemm

__all__ = ["Accelerator", "AcceleratorError", "RunStats"]


class AcceleratorError(RuntimeError):
    """The accelerator reported an error in its status register."""

    def __init__(self, code, pc):
        self.code, self.pc = code, pc
        super().__init__(f"accelerator error {isa.ERROR_NAMES.get(code, code)} at instruction {pc}")


@dataclasses.dataclass
class RunStats:
    """Counters of one driver call, summed over its Programs (on the golden backend ``cycles`` is the
    cycle model's, :mod:`tridsa.sw.cycle_model`).

    ``programs`` and ``host_bytes`` show how the call was split over the accelerator memory: Programs
    run, bytes moved between host and accelerator memory (:attr:`Program.host_bytes`).
    ``counters`` holds the hardware counters by name (``gemm_busy``, ``gemm_feed``, ...).
    """
    backend: str
    instructions: int
    cycles: int | None
    macs: int
    peak_macs_per_cycle: int
    wall_seconds: float | None = None
    programs: int = 1
    host_bytes: int = 0
    counters: dict = dataclasses.field(default_factory=dict)

    def __getattr__(self, name):
        counters = self.__dict__.get("counters", {})
        if name in counters:
            return counters[name]
        raise AttributeError(name)

    @property
    def cycles_per_second(self) -> float | None:
        """Simulated cycles per wall-clock second (simulation speed)."""
        if not self.cycles or not self.wall_seconds:
            return None
        return self.cycles / self.wall_seconds

    @property
    def utilization(self) -> float | None:
        """MACs done / (peak MACs per cycle x cycles)."""
        if not self.cycles:
            return None
        return self.macs / (self.peak_macs_per_cycle * self.cycles)

    def as_dict(self) -> dict:
        result = {k: v for k, v in dataclasses.asdict(self).items() if k != "counters"}
        return dict(result, **self.counters, utilization=self.utilization)


class Accelerator:
    """tridsa driver.

    Parameters
    ----------
    backend:
        ``"golden"`` (NumPy), ``"amaranth"`` (Python simulation of the gateware), ``"verilator"`` (the
        compiled Verilator model, the fast path), ``"cocotb-verilator"`` or ``"icarus"`` (cocotb on the
        generated Verilog), ``"fpga"`` (a board over a serial port, needs ``port=``) or ``"uart-sim"``
        (the FPGA gateware and its UART link in a simulator).
    config:
        The :class:`Config` (default ``Config()``).
    waves:
        A file name: dump the waveforms of every Program run (FST from ``verilator`` and ``icarus``, VCD
        from ``amaranth``; later runs add ``-1``, ``-2``, ... to the name).
    keep_programs:
        Keep the Programs of the last call in ``last_programs`` (to save one with ``Program.save`` and
        replay it with ``tridsa run``). Off by default: a large layer runs many Programs, each holding a
        whole memory image.
    **options:
        Backend options, e.g. ``port="/dev/ttyUSB1"``, ``baud=115200`` (see :mod:`tridsa.sw.fpga`).
    """

    def __init__(self, backend: str = "golden", config: Config | None = None, waves=None,
                 keep_programs: bool = False, **options):
        from ..sim.backend import get_backend
        if config is None:
            config = Config()
        if not isinstance(config, Config):
            raise TypeError(f"config must be a tridsa.Config, got {type(config).__name__}")
        self.config = config
        self.backend = get_backend(backend, config, waves=waves, **options)
        self.last_run: RunStats | None = None
        self.keep_programs = keep_programs
        self.last_programs: list | None = None

    def run(self, program):
        """Run a Program; raise :class:`AcceleratorError` if the status register reports an error."""
        result = self.backend.run(program)
        if result.error:
            raise AcceleratorError(result.error, result.error_pc)
        return result

    def _stats(self, results, programs, macs, peak):
        """Set ``last_run`` from one result (or lists of results and programs, summed)."""
        if not isinstance(results, list):
            results, programs = [results], [programs]
        self.last_programs = list(programs) if self.keep_programs else None
        totals = {}
        for result in results:
            for name, value in result.counters.items():
                totals[name] = None if value is None or totals.get(name, 0) is None else totals.get(name, 0) + value
        self.last_run = RunStats(backend=self.backend.name,
                                 instructions=sum(len(p.instructions) - 1 for p in programs),
                                 cycles=totals.pop("cycles", None), macs=macs, peak_macs_per_cycle=peak,
                                 wall_seconds=totals.pop("wall_seconds", None), programs=len(programs),
                                 host_bytes=sum(p.host_bytes for p in programs), counters=totals)

    def _peak(self, precision):
        return self.config.peak_macs_int8 * (2 if precision == "int4" else 1)

    def matmul(self, a, b, bias=None, requant=None, relu=False, precision="int8", out_dtype=None):
        """``requant(a @ b + bias)`` with int32 accumulation, any size (split over the memory by
        :mod:`tridsa.sw.tiling`); arguments as :func:`tridsa.sw.gemm_ops.emit_gemm`."""
        a, b = integer_matrix(a, "a"), integer_matrix(b, "b")
        if a.shape[1] != b.shape[0]:
            raise ValueError(f"a is {a.shape} and b is {b.shape}: a.shape[1] must equal b.shape[0]")
        if requant is not None and not isinstance(requant, Requant):
            raise TypeError(f"requant must be a tridsa.Requant or None, got {type(requant).__name__}")
        return self.matmul_batch(a[None], b[None], bias, requant, relu, precision, out_dtype)[0]

    def matmul_batch(self, a, b, bias=None, requant=None, relu=False, precision="int8", out_dtype=None):
        """``batch`` independent same-shape matmuls as batched GEMM instructions (one fixed cost for as
        many problems as fit the memory; larger problems are tiled).

        ``a`` (batch, M, K), ``b`` (batch, K, N) -> (batch, M, N); ``bias`` and ``requant`` shared or one
        per problem, see :func:`tridsa.sw.gemm_ops.emit_gemm_batch`.
        """
        problems = gemm_problems(self.config, a, b, bias, requant, relu, precision, out_dtype)
        values, runs = run_gemm(self.config, self.run, problems)
        self._stats_runs(runs, problems.macs, self._peak(precision))
        return values

    def _stats_runs(self, runs, macs, peak):
        self._stats([result for _, result in runs], [program for program, _ in runs], macs, peak)

    def conv2d(self, x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, requant=None, relu=False,
               precision="int8", out_dtype=None):
        """2-D convolution (NCHW input, OIHW weights) lowered to GEMMs by banded im2col (:mod:`tridsa.sw.conv`).

        ``last_run.macs`` counts the useful MACs of the convolution, not the GEMMs' zero products.
        """
        jobs, finish, macs = conv2d_gemms(self.config, x, w, bias, stride, padding, dilation, groups,
                                          requant, relu, precision, out_dtype)
        values, runs = [], []
        for job in jobs:
            job_values, job_runs = run_gemm(self.config, self.run, job)
            values.append(job_values)
            runs += job_runs
        self._stats_runs(runs, macs, self._peak(precision))
        return finish(values)

    def embedding_bag(self, table, indices, offsets=None, mode="sum", per_sample_weights=None,
                      include_last_offset=False, padding_idx=None, cache_hints=True, out_shift=None):
        """``torch.nn.functional.embedding_bag`` on an int8/int32 table in the gather engine -> int32.

        Semantics (integer sums wrap, ``mean`` rounding, errors) are
        :func:`tridsa.sw.embedding.embedding_bag`'s; lowering in :func:`tridsa.sw.gather_ops.emit_gather`.
        Any table size: a table larger than the accelerator memory is staged row by row as the call
        touches it (:func:`tridsa.sw.gather_ops.run_gather`).
        ``last_run`` holds the row cache counters (``gather_hits``, ...; the cache model's on golden).
        ``cache_hints``: True keeps the row cache for the call's most frequent rows (profiled here, see
        docs/gather.md), False uses plain LRU, a :class:`~tridsa.sw.cache_hints.HotPlan` (e.g. profiled on the
        previous batch) is used as it is; the result is the same.
        ``out_shift`` (0-31, modes sum and max): a quantized output of the table's type instead of int32,
        every element ``round(x / 2**out_shift)`` (ties up) saturated, narrowed in the engine
        (:func:`tridsa.sw.gather_golden.narrowed`): a quarter of the port bytes of int32 for int8 tables.
        """
        from .gather_ops import run_gather
        return self._gather(*run_gather(self.config, self.run, table, indices, offsets, mode, per_sample_weights,
                                        include_last_offset, padding_idx, cache_hints=cache_hints,
                                        out_shift=out_shift))

    def _gather(self, out, runs, golden_counters):
        """``last_run`` of gather Programs: the row cache counters (the cache model's on golden)."""
        self._stats_runs(runs, 0, self._peak("int8"))
        if self.backend.name == "golden":
            self.last_run.counters.update(golden_counters)
        return out

    def embedding_bags(self, tables, indices_list, offsets_list, mode="sum", per_sample_weights=None,
                       include_last_offset=False, cache_hints=True, out_shift=None):
        """embedding_bag of several same-width tables (one bag per sample each) in ONE gather call.

        Table-batched as FBGEMM's TBE (:class:`tridsa.sw.gather_ops.TableBatch`): returns
        ``(batch, len(tables), dim)`` int32, ``[:, t]`` equal to ``embedding_bag(tables[t], indices_list[t],
        offsets_list[t], mode)``. ``per_sample_weights``: None or one array per table; ``out_shift`` as
        :meth:`embedding_bag`.
        """
        from .gather_ops import TableBatch
        return TableBatch(tables)(self, indices_list, offsets_list, mode, per_sample_weights, include_last_offset,
                                  cache_hints=cache_hints, out_shift=out_shift)

    def embedding_bag_rowwise(self, qtable, bits, indices, offsets=None, mode="sum", per_sample_weights=None,
                              include_last_offset=False, cache_hints=True):
        """embedding_bag on an FBGEMM rowwise-quantized table -> float32, bit-exact with FBGEMM.

        The gather engine fetches the quantized rows through the row cache (GATHER mode copy: the
        memory-bound part, counters in ``last_run``); the host dequantizes and pools them with FBGEMM's
        float32 arithmetic (:func:`tridsa.sw.gather_ops.rowwise_gather`, docs/gather.md).
        """
        from .gather_ops import rowwise_gather
        return self._gather(*rowwise_gather(self.config, self.run, qtable, bits, indices, offsets, mode,
                                            per_sample_weights, include_last_offset, cache_hints))

    def random_uint32(self, key, counter, n):
        """The first ``n`` uint32 words of the Philox4x32-10 stream of ``(key, counter)`` (docs/rng.md)."""
        from .sketch_ops import rng_program
        program, finish = rng_program(self.config, key, counter, n)
        result = self.run(program)
        self._stats(result, program, 0, self.config.rows * 4 * self.config.rng_lanes)
        return finish(result.memory)

    def sketch(self, a, k, key, counter=(0, 0, 0, 0), dist="rademacher", transpose=False, **dist_params):
        """``a @ Omega`` (``Omega.T @ a`` if ``transpose``), Omega (K, k) generated in the accelerator.

        ``a`` is int8/uint8-valued, the result int32; Omega is ``tridsa.sw.sketch_dist.omega(key, counter,
        K, k, dist, **dist_params)``. Any size (:func:`tridsa.sw.sketch_ops.run_sketch`); see docs/sketch.md.
        """
        from .sketch_ops import run_sketch
        y, runs, adds = run_sketch(self.config, self.run, a, k, key, counter, dist, transpose, **dist_params)
        self._stats_runs(runs, adds, self.config.rows * 4 * self.config.rng_lanes)
        return y

"""ONNX backend (``onnx.backend.base`` interface) that runs quantized ONNX models on the accelerator.

::

    from tridsa.sw.onnx_backend import backend
    be = backend("verilator")                  # or "golden", "amaranth", "icarus", ...; config=Config(...)
    rep = be.prepare(onnx.load("model.onnx"))  # checks the model, plans the offload
    (y,) = rep.run([x])                        # or rep.run({"input": x})
    print(rep.report())                        # per node: engine, cycles, MAC utilization

    onnx.backend.test.BackendTest(backend("golden"), __name__)   # onnx's own backend test suite

The GEMM engine runs ``QLinearMatMul``, ``QLinearConv``, ``MatMulInteger``, ``ConvInteger``,
``com.microsoft.QGemm`` and the QDQ patterns quantizers emit; the gather engine runs ``Gather`` ->
``ReduceSum``/``ReduceMean`` on integer tables; the rest of the graph runs on the host (onnx's
``ReferenceEvaluator``). Offloaded results are bit-exact with onnx's reference implementation (see
:mod:`tridsa.sw.onnx_requant` and docs/onnx.md). ``strict=True`` raises :class:`OffloadError` naming
the node instead of running a compute node on the host.
"""
from __future__ import annotations

import sys

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

from .onnx_graph import GraphPlan, GraphRun, NodeRecord, format_report
from .onnx_host import HostEvaluators, OffloadError

__all__ = ["backend", "OnnxBackend", "OnnxRep", "OffloadError", "NodeRecord"]


def _print_notice(message: str) -> None:
    print(f"tridsa onnx: notice: {message}", file=sys.stderr)


class OnnxRep(BackendRep):
    """A prepared model bound to one Accelerator; :meth:`run` executes it, :attr:`records` tells how."""

    def __init__(self, plan: GraphPlan, acc, strict: bool = False, notice=_print_notice):
        self.plan, self.acc, self.strict = plan, acc, strict
        self.evaluators = HostEvaluators(plan)
        self.records: list[NodeRecord] = []
        self._noticed = set()
        self._notice = notice

    def _notice_once(self, message: str) -> None:
        if message not in self._noticed:
            self._noticed.add(message)
            self._notice(message)

    def run(self, inputs, **kwargs) -> list:
        """Outputs (a list, in graph output order) for ``inputs``: a sequence in graph input order
        (initializers excluded), a dict by name, or one array for a one-input model."""
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            inputs = list(inputs)
            if len(inputs) > len(self.plan.inputs):
                raise ValueError(f"the model has {len(self.plan.inputs)} inputs "
                                 f"({', '.join(self.plan.inputs)}), got {len(inputs)} arrays")
            feeds = dict(zip(self.plan.inputs, inputs))
        missing = [n for n in self.plan.inputs if n not in feeds and n not in self.plan.initializers]
        if missing:
            raise ValueError(f"missing model input(s): {', '.join(missing)}")
        unknown = [n for n in feeds if n not in self.plan.inputs and n not in self.plan.initializers]
        if unknown:
            raise ValueError(f"unknown model input(s): {', '.join(unknown)} (inputs: {', '.join(self.plan.inputs)})")
        run = GraphRun(self.plan, self.acc, self.strict, self._notice_once, self.evaluators)
        outputs = run.run({k: np.asarray(v) for k, v in feeds.items()})
        self.records = run.records
        return outputs

    def report(self, title: str = "") -> str:
        """Per-node table of the last run (engine, cycles, MACs, utilization)."""
        return format_report(self.records, title)


class OnnxBackend(Backend):
    """onnx.backend.base.Backend bound to one accelerator backend (``golden``, ``verilator``, ...).

    One :class:`~tridsa.sw.driver.Accelerator` is built lazily and shared by every model it prepares.
    """

    def __init__(self, name: str = "golden", config=None, strict: bool = False, notice=_print_notice, **options):
        from ..sim.backend import BACKENDS
        if name not in BACKENDS:
            raise ValueError(f"unknown backend {name!r}: expected one of {', '.join(BACKENDS)}")
        self.name, self.config, self.options = name, config, options
        self.strict, self.notice = strict, notice
        self._acc = None

    @property
    def accelerator(self):
        if self._acc is None:
            from .driver import Accelerator
            self._acc = Accelerator(self.name, self.config, **self.options)
        return self._acc

    def prepare(self, model, device: str = "CPU", strict: bool | None = None, **kwargs) -> OnnxRep:
        """Check ``model`` (``onnx.checker``; a ModelProto, bytes or a path) and plan it."""
        if not self.supports_device(device):
            raise ValueError(f"device={device!r} is not supported: tridsa runs on 'CPU' "
                             "(the host driving the accelerator)")
        if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
            model = onnx.load_model_from_string(model) if isinstance(model, bytes) else onnx.load(model)
        plan = GraphPlan(model)
        return OnnxRep(plan, self.accelerator, self.strict if strict is None else strict, self.notice)

    def run_model(self, model, inputs, device: str = "CPU", **kwargs) -> list:
        return self.prepare(model, device, **kwargs).run(inputs)

    def run_node(self, node, inputs, device: str = "CPU", outputs_info=None, **kwargs) -> list:
        """Run one node: a model is built around it (input types from ``inputs``) and run."""
        from onnx import helper
        opset = kwargs.pop("opset_version", None)
        names = [n for n in node.input if n]
        if len(names) != len(inputs):
            raise ValueError(f"node {node.name or node.op_type!r} has {len(names)} inputs, got {len(inputs)} arrays")
        arrays = [np.asarray(v) for v in inputs]
        graph_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                        for n, v in zip(names, arrays)]
        imports = [helper.make_opsetid("", opset or onnx.defs.onnx_opset_version())]
        if node.domain:
            imports.append(helper.make_opsetid(node.domain, 1))
        out_names = [o for o in node.output if o]
        if outputs_info:
            graph_outputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.dtype(dt)), shape)
                             for n, (dt, shape) in zip(out_names, outputs_info)]
        else:                       # output types from onnx's shape inference
            probe = helper.make_model(helper.make_graph([node], "run_node", graph_inputs, []), opset_imports=imports)
            inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(probe).graph.value_info}
            missing = [n for n in out_names if n not in inferred]
            if missing:
                raise ValueError(f"cannot infer the type of output(s) {', '.join(missing)}: pass outputs_info")
            graph_outputs = [inferred[n] for n in out_names]
        model = helper.make_model(helper.make_graph([node], "run_node", graph_inputs, graph_outputs),
                                  opset_imports=imports)
        return self.prepare(model, device, **kwargs).run(arrays)

    def supports_device(self, device: str) -> bool:
        return str(device).upper() == "CPU"


def backend(name: str = "golden", config=None, **options) -> OnnxBackend:
    """An ONNX backend bound to accelerator backend ``name`` (and ``config``, a :class:`tridsa.Config`).

    ``strict=True`` raises instead of running a compute node on the host; ``notice=callable`` receives the
    one-line notices (default: printed on stderr); other options go to the accelerator backend.
    """
    return OnnxBackend(name, config, **options)

"""An ONNX graph split into steps: engine steps (one node or a pattern) and host steps (one node each).

:class:`GraphPlan` walks the graph once (``onnx.checker`` first: a malformed model raises its
``ValidationError``, which names the node), matches the patterns of :mod:`tridsa.sw.onnx_ops` and
keeps the ``DequantizeLinear`` nodes that only feed a matched pattern *lazy*: they run on the host only
if something else needs their output (e.g. a pattern that falls back to the host).

:class:`GraphRun` executes a plan for one set of inputs. An engine step that raises
:class:`~tridsa.sw.onnx_kernels.Unsupported` runs its nodes on the host instead, after a one-line
notice (or raises :class:`OffloadError` naming the node when ``strict``). Host nodes run in onnx's
``ReferenceEvaluator``, nodes of other domains in onnxruntime (:mod:`tridsa.sw.onnx_host`). Every step
appends a :class:`NodeRecord`.
"""
from __future__ import annotations

import dataclasses

import onnx
from onnx import numpy_helper

from .onnx_host import HostEvaluators, OffloadError
from .onnx_kernels import Unsupported
from .onnx_ops import NODE_HANDLERS, gather_group, qdq_group

__all__ = ["GraphPlan", "GraphRun", "NodeRecord", "format_report", "sum_records"]

#: Compute ops that run on the host when they are not part of an offloaded pattern (each gets a notice).
COMPUTE_OPS = {"MatMul", "Conv", "Gemm", "ConvTranspose", "QLinearMatMul", "QLinearConv", "MatMulInteger",
               "ConvInteger", "QGemm"}


@dataclasses.dataclass
class NodeRecord:
    """What ran one step: its ONNX node names, the op (or pattern), the engine and its counters."""
    nodes: tuple
    op: str
    engine: str                         # "gemm", "gather" or "host"
    cycles: int | None = None
    macs: int = 0
    utilization: float | None = None
    note: str = ""


def node_label(node, index: int) -> str:
    """A node's name, or ``<op_type>#<index>`` for an unnamed node."""
    return node.name or f"{node.op_type}#{index}"


@dataclasses.dataclass
class Step:
    nodes: list                       # NodeProtos
    labels: list
    kind: str                         # "node" (single offloadable node), "qdq", "gather" or "host"
    lazy: bool = False

    @property
    def op(self) -> str:
        if self.kind == "qdq":
            return "DQ->" + "->".join(n.op_type for n in self.nodes)
        return "->".join(n.op_type for n in self.nodes)

    @property
    def outputs(self) -> list:
        return [o for n in self.nodes for o in n.output if o]


class GraphPlan:
    """The checked model, its initializers and the steps that run it."""

    def __init__(self, model: onnx.ModelProto):
        onnx.checker.check_model(model)
        self.model = model
        graph = model.graph
        self.opsets = {o.domain or "": o.version for o in model.opset_import}
        self.initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.inputs = [i.name for i in graph.input if i.name not in self.initializers]
        self.outputs = [o.name for o in graph.output]
        nodes = list(graph.node)
        labels = [node_label(n, i) for i, n in enumerate(nodes)]
        consumers = {}
        for i, node in enumerate(nodes):
            for name in node.input:
                consumers.setdefault(name, []).append(i)
        producer = {o: i for i, n in enumerate(nodes) for o in n.output}
        graph_outputs = set(self.outputs)

        def only_consumer(name):
            """The index of the one node reading ``name`` (None if several, none or a graph output)."""
            users = consumers.get(name, [])
            return users[0] if len(users) == 1 and name not in graph_outputs else None

        taken, steps = set(), []
        for i, node in enumerate(nodes):
            if i in taken:
                continue
            group = self._match(i, nodes, producer, only_consumer)
            if group is None:
                kind = "node" if (node.domain, node.op_type) in NODE_HANDLERS else "host"
                group = (kind, [i])
            kind, members = group
            taken.update(members)
            steps.append(Step([nodes[j] for j in members], [labels[j] for j in members], kind))
        # DequantizeLinear nodes that only feed QDQ patterns run only on demand
        anchored = {id(s.nodes[0]) for s in steps if s.kind == "qdq"}
        for step in steps:
            node = step.nodes[0]
            if step.kind == "host" and node.op_type == "DequantizeLinear":
                users = consumers.get(node.output[0], [])
                step.lazy = bool(users) and node.output[0] not in graph_outputs and all(
                    id(nodes[u]) in anchored for u in users)
        self.steps = steps
        self.producer_step = {o: s for s in steps for o in s.outputs}

    @staticmethod
    def _match(i, nodes, producer, only_consumer):
        """``(kind, node indices)`` of the pattern anchored at node ``i``, or None."""
        node = nodes[i]
        if node.domain:
            return None
        if node.op_type in ("MatMul", "Conv", "Gemm"):
            names = [n for n in node.input if n]
            if len(names) < 2 or not all(n in producer and nodes[producer[n]].op_type == "DequantizeLinear"
                                         and not nodes[producer[n]].domain for n in names):
                return None
            members = [i]
            nxt = only_consumer(node.output[0])
            if nxt is not None and nodes[nxt].op_type == "Relu" and not nodes[nxt].domain:
                members.append(nxt)
                nxt = only_consumer(nodes[nxt].output[0])
            if nxt is None or nodes[nxt].op_type != "QuantizeLinear" or nodes[nxt].domain:
                return None
            return "qdq", members + [nxt]
        if node.op_type == "Gather":
            nxt = only_consumer(node.output[0])
            if nxt is not None and nodes[nxt].op_type in ("ReduceSum", "ReduceMean") and not nodes[nxt].domain:
                return "gather", [i, nxt]
        return None


class GraphRun:
    """One execution of a :class:`GraphPlan` on an Accelerator; ``records`` holds one entry per step run."""

    def __init__(self, plan: GraphPlan, acc, strict: bool, notice, evaluators: HostEvaluators):
        self.plan, self.acc, self.strict, self.notice = plan, acc, strict, notice
        self.evaluators = evaluators
        self.values = dict(plan.initializers)
        self.done = set()
        self.records: list[NodeRecord] = []

    # tensor access, running producers on demand (lazy DequantizeLinear)
    def __call__(self, name):
        if name not in self.values:
            step = self.plan.producer_step.get(name)
            if step is None:
                raise KeyError(f"tensor {name!r} is neither an input, an initializer nor a node output")
            self._run_step(step)
        return self.values[name]

    def producer(self, name):
        """The node producing tensor ``name``."""
        step = self.plan.producer_step[name]
        return next(n for n in step.nodes if name in n.output)

    def run(self, feeds: dict) -> list:
        self.values.update(feeds)
        for step in self.plan.steps:
            if not step.lazy:
                self._run_step(step)
        return [self(name) for name in self.plan.outputs]

    def _run_step(self, step: Step):
        if id(step) in self.done:
            return
        self.done.add(id(step))
        if step.kind == "host":
            self._host(step.nodes[0], step.labels[0])
            return
        try:
            if step.kind == "node":
                node = step.nodes[0]
                inputs = [self(n) if n else None for n in node.input]
                outputs, stats, note = NODE_HANDLERS[(node.domain, node.op_type)](self.acc, node, inputs)
                engine = "gemm"
            elif step.kind == "qdq":
                outputs, stats, note = qdq_group(self.acc, step.nodes, self)
                engine = "gemm"
            else:
                outputs, stats, note = gather_group(self.acc, step.nodes, self)
                engine = "gather"
        except Unsupported as exc:
            self._fallback(step, str(exc))
            return
        for name, value in zip(step.nodes[-1].output, outputs):
            self.values[name] = value
        utilization = stats.utilization if stats.macs else None        # the gather engine does no MACs
        self.records.append(NodeRecord(tuple(step.labels), step.op, engine, stats.cycles, stats.macs,
                                       utilization, note))

    def _fallback(self, step: Step, reason: str):
        where = f"node {step.labels[0]!r} ({step.op})"
        if self.strict:
            raise OffloadError(f"{where} cannot run on the accelerator: {reason}")
        self.notice(f"{where} runs on the host: {reason}")
        for node, label in zip(step.nodes, step.labels):
            self._host(node, label, note=reason)

    def _host(self, node, label, note=""):
        foreign = node.domain not in ("", "ai.onnx", "ai.onnx.ml")
        if (node.op_type in COMPUTE_OPS or foreign) and not note:
            reason = (f"{node.domain} op without an accelerator kernel (onnxruntime runs it)" if foreign
                      else "not part of a quantized pattern the accelerator runs")
            if self.strict:
                raise OffloadError(f"node {label!r} ({node.op_type}) cannot run on the accelerator: {reason}")
            self.notice(f"node {label!r} ({node.op_type}) runs on the host: {reason}")
            note = reason
        inputs = [self(n) if n else None for n in node.input]
        outputs = self.evaluators.run(node, label, inputs, self)
        for name, value in zip(node.output, outputs):
            if name:
                self.values[name] = value
        self.records.append(NodeRecord((label,), node.op_type, "host", note=note))


def sum_records(runs: list) -> list:
    """One record per step of several runs of one plan (lists of records in the same order): cycles and
    MACs summed, utilization over the sum."""
    merged = []
    for same in zip(*runs):
        cycles = None if any(r.cycles is None for r in same) else sum(r.cycles for r in same)
        macs = sum(r.macs for r in same)
        capacity = sum(r.macs / r.utilization for r in same if r.utilization)
        merged.append(dataclasses.replace(same[0], cycles=cycles, macs=macs,
                                          utilization=macs / capacity if capacity else None))
    return merged


def format_report(records, title: str = "", host_rows: bool = True) -> str:
    """A per-node table: engine, cycles and MAC utilization of every step of a run.

    ``host_rows`` False folds the host nodes into one line counting them by op."""
    lines = [title] if title else []
    lines.append(f"{'node':<28}{'op':<30}{'engine':<8}{'cycles':>9}{'MACs':>10}{'util':>8}")
    for r in records:
        if not host_rows and r.engine == "host":
            continue
        name = ",".join(r.nodes)
        name = name if len(name) <= 27 else name[:24] + "..."
        cycles = "-" if r.cycles is None else str(r.cycles)
        util = "-" if r.utilization is None else f"{r.utilization * 100:.1f}%"
        lines.append(f"{name:<28}{r.op[:29]:<30}{r.engine:<8}{cycles:>9}{r.macs:>10}{util:>8}")
    offloaded = [r for r in records if r.engine != "host"]
    if not host_rows:
        ops = {}
        for r in records:
            if r.engine == "host":
                ops[r.op] = ops.get(r.op, 0) + 1
        lines.append("host: " + ", ".join(f"{op} x{n}" for op, n in sorted(ops.items(), key=lambda kv: -kv[1])))
    cycles = [r.cycles for r in offloaded if r.cycles is not None]
    total = f"{len(offloaded)} of {len(records)} steps on the accelerator"
    if cycles:
        macs = sum(r.macs for r in offloaded if r.cycles is not None)
        capacity = sum(r.macs / r.utilization for r in offloaded if r.utilization)
        util = f", MAC utilization {macs / capacity * 100:.1f}%" if capacity else ""
        total += f", {sum(cycles)} cycles{util}"
    lines.append(total)
    return "\n".join(lines)

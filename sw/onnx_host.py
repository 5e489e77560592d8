"""Host execution of single ONNX nodes: onnx's ReferenceEvaluator for the ONNX domains, onnxruntime for
others (the ``com.microsoft`` ops onnxruntime's quantizer emits, e.g. ``QLinearAdd``), one node per session.

A node with subgraphs (``Loop``, ``If``, ``Scan``) also gets the tensors its bodies read from the
enclosing graph (:func:`outer_scope_names`).
"""
from __future__ import annotations

import onnx

__all__ = ["HostEvaluators", "OffloadError", "outer_scope_names"]


class OffloadError(RuntimeError):
    """A node cannot run where it must: on the accelerator with ``strict=True``, or a foreign-domain node
    without onnxruntime (the message names the node)."""


def outer_scope_names(node) -> list:
    """Names the subgraphs of ``node`` read from enclosing scopes (neither defined nor produced inside)."""
    names = []

    def visit(graph, known):
        known = known | {i.name for i in graph.input} | {t.name for t in graph.initializer}
        for inner in graph.node:
            for name in inner.input:
                if name and name not in known and name not in names:
                    names.append(name)
            for attr in inner.attribute:
                for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                    visit(sub, known)
            known = known | set(inner.output)

    for attr in node.attribute:
        for graph in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
            visit(graph, set())
    return names


class HostEvaluators:
    """Runs single nodes on the host: onnx's ReferenceEvaluator for the ONNX domains, onnxruntime for others.

    Evaluators are built once per node and reused across runs.
    """

    def __init__(self, plan):
        """``plan``: the :class:`~tridsa.sw.onnx_graph.GraphPlan` (its opsets, functions and IR version)."""
        self.plan = plan
        self.cache = {}

    def run(self, node, label, inputs, outer) -> list:
        """Outputs of ``node`` for ``inputs``; ``outer(name)`` gives tensors its subgraphs read from the
        enclosing graph (``Loop``/``If``/``Scan`` bodies)."""
        if node.domain in ("", "ai.onnx", "ai.onnx.ml"):
            from onnx.reference import ReferenceEvaluator
            implicit = outer_scope_names(node)
            if id(node) not in self.cache:
                proto = node
                if implicit:                 # a one-node graph whose inputs include what the bodies read
                    from onnx import helper
                    proto = helper.make_graph(
                        [node], "node", [helper.make_empty_tensor_value_info(n) for n in list(node.input) + implicit
                                         if n], [helper.make_empty_tensor_value_info(n) for n in node.output if n])
                self.cache[id(node)] = ReferenceEvaluator(proto, opsets=self.plan.opsets,
                                                          functions=list(self.plan.model.functions) or None)
            feeds = {n: v for n, v in zip(node.input, inputs) if n}
            feeds.update({n: outer(n) for n in implicit})
            return self.cache[id(node)].run(None, feeds)
        return self._onnxruntime(node, label, inputs)

    def _onnxruntime(self, node, label, inputs):
        try:
            import onnxruntime
        except ImportError:
            raise OffloadError(f"node {label!r} ({node.domain}.{node.op_type}) needs onnxruntime to run on the "
                               "host: pip install onnxruntime") from None
        from onnx import helper
        key = (id(node), tuple((v.dtype.str, v.shape) for v in inputs if v is not None))
        if key not in self.cache:
            graph_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                            for n, v in zip(node.input, inputs) if n]
            outputs = []
            for name in node.output:
                info = onnx.ValueInfoProto()
                info.name = name
                outputs.append(info)
            graph = helper.make_graph([node], "node", graph_inputs, outputs)
            imports = [helper.make_opsetid(domain, version) for domain, version in self.plan.opsets.items()]
            model = helper.make_model(graph, opset_imports=imports)
            model.ir_version = self.plan.model.ir_version
            self.cache[key] = onnxruntime.InferenceSession(model.SerializeToString(),
                                                           providers=["CPUExecutionProvider"])
        feeds = {n: v for n, v in zip(node.input, inputs) if n}
        return self.cache[key].run(None, feeds)

"""The package's import structure: gateware imports only the spec layer and itself, and no modules
import each other in a circle (module-level imports and imports inside functions alike)."""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("spec", "hw", "sw", "sim")
#: package -> the packages its modules may import.
ALLOWED = {"spec": {"spec"}, "hw": {"spec", "hw"}}


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(("tridsa",) + (parts[:-1] if parts[-1] == "__init__" else parts))


def _modules() -> dict:
    files = [ROOT / "__init__.py"] + [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    return {_module_name(p): p for p in files}


def _imports(name: str, path: pathlib.Path, known) -> set:
    """The package modules that ``name`` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from .x import y`: y is a module when tridsa...x.y is one, else a name in module x
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target != "tridsa":
                found.add(target)
    return found


def import_graph() -> dict:
    known = _modules()
    return {name: _imports(name, path, known) for name, path in known.items()}


def _package(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def test_layers():
    wrong = [f"{src} imports {dst}" for src, dsts in import_graph().items() for dst in sorted(dsts)
             if _package(src) in ALLOWED and _package(dst) not in ALLOWED[_package(src)]]
    assert not wrong, "\n".join(wrong)


def find_cycle(graph: dict):
    """One import circle of ``graph`` as a list of modules, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_checks_find_what_they_look_for():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    graph = import_graph()
    assert "tridsa.spec.config" in graph["tridsa.hw.gemm"]
    assert "tridsa.hw.memory" in graph["tridsa.hw.gemm"]

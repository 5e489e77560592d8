"""The README's driver snippet runs as written (on the backend it names) and its results are right."""
import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.slow
def test_readme_driver_snippet_runs_as_written(tmp_path, monkeypatch):
    from tridsa import Accelerator
    from tridsa.sw.program import Program
    snippet = re.search(r"## Using the driver\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(snippet, str(README), "exec"), scope)
    acc, a, b = scope["acc"], scope["a"], scope["b"]
    assert acc.backend.name == "verilator"
    gold = Accelerator("golden", acc.config)
    assert np.array_equal(scope["s"], gold.sketch(a, k=16, key=(1, 2), dist="rademacher"))
    assert np.array_equal(scope["out"], gold.embedding_bag(scope["table"], scope["indices"], scope["offsets"]))
    saved = Program.load(tmp_path / "matmul.npz")
    assert np.array_equal(gold.backend.run(saved).memory, acc.backend.run(saved).memory)
    acc.backend.close()

"""SymbiYosys jobs of formal/check.py: stream protocols, FIFO bounds, GEMM sequencer termination.

Each job writes its harness as RTLIL and a .sby file into pytest's tmp dir and runs ``yowasp-sby``
(engine smtbmc yices). Skipped, with the reason, when SymbiYosys or Yices is not installed.
"""
import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("tridsa_formal_check", Path(__file__).parents[1] / "formal" / "check.py")
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)

_MISSING = check.sby_available()
_XFAIL = {}   # job name -> reason, for a known bug a job has found (strict: the fix must make it pass)


def _param(name):
    marks = [pytest.mark.slow]
    if name in _XFAIL:
        marks.append(pytest.mark.xfail(strict=True, reason=_XFAIL[name]))
    return pytest.param(name, marks=marks)


@pytest.mark.skipif(_MISSING is not None, reason=f"formal tools missing: {_MISSING}")
@pytest.mark.parametrize("job", [_param(name) for name in check.JOBS if name != "gemm_done_too_soon"])
def test_formal_job(job, tmp_path):
    result = check.run_job(job, tmp_path)
    assert result["passed"], f"{job}: {result['mode']} depth {result['depth']} failed:\n{result['log'][-3000:]}"


@pytest.mark.slow
@pytest.mark.skipif(_MISSING is not None, reason=f"formal tools missing: {_MISSING}")
def test_formal_checks_are_not_vacuous(tmp_path):
    """A bound too short for a legal GEMM must produce a counterexample (the harness clock and asserts work)."""
    result = check.run_job("gemm_done_too_soon", tmp_path)
    assert not result["passed"] and "Assert failed" in result["log"]

"""The ``tridsa`` command line: help, Verilog output, Program replay, error exits, the GEMM and cycle-model
benchmarks."""
import importlib.machinery
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import tridsa
from tridsa.spec import isa
from tridsa.sw.builder import ProgramBuilder
from tridsa.sw.cli import main
from tridsa.sw.gemm_ops import emit_gemm

from conftest import SMALL

REPO = Path(tridsa.__file__).resolve().parent
SMALL_FLAGS = ["--rows", str(SMALL.rows), "--cols", str(SMALL.cols), "--mem-width", str(SMALL.mem_width),
               "--mem-depth", str(SMALL.mem_depth), "--mem-latency", str(SMALL.mem_latency)]
COMMANDS = (["verilog"], ["run"], ["bench"], ["bench", "gemm"], ["bench", "gather"], ["bench", "rng"],
            ["bench", "models"], ["bench", "cycles"], ["build"], ["demo"], ["fuzz"])


def cli(capsys, *argv):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def matmul_program(seed, m=6, k=9, n=5):
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (m, k))
    b = rng.integers(-128, 128, (k, n))
    builder = ProgramBuilder(SMALL)
    call = emit_gemm(builder, a, b)
    return builder.build(), call, a @ b


def bad_program():
    """A GEMM with M = 0: the status register reports BAD_SHAPE at instruction 1 (after a NOP)."""
    builder = ProgramBuilder(SMALL)
    builder.emit("NOP")
    builder.emit("GEMM", m=0, k=1, n=1, a_addr=0, b_addr=0, c_addr=0, p_addr=0, int4=0, a_signed=1,
                 b_signed=1, requant=0, rounding=0, out_format=0, relu=0, zero_point=0)
    return builder.build()


# -- help ------------------------------------------------------------------------------------------
def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("verilog", "run", "bench", "build", "demo", "fuzz"):
        assert f"    {name}" in out


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_subcommand_help(capsys, argv):
    try:
        code = main(argv + ["--help"])
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith(f"usage: tridsa {' '.join(argv)}")


def test_no_command_prints_help_and_fails(capsys):
    code, _, err = cli(capsys)
    assert code == 2 and "usage: tridsa" in err


def test_console_script_installed():
    exe = shutil.which("tridsa")
    if exe is None:
        pytest.skip("the tridsa console script is not on PATH (package not installed)")
    proc = subprocess.run([exe, "run", "/nonexistent.npz"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == "tridsa run: error: no such Program file: /nonexistent.npz\n"


# -- verilog ---------------------------------------------------------------------------------------
def test_verilog_passes_iverilog(capsys, tmp_path, small_config_file):
    if shutil.which("iverilog") is None:
        pytest.skip("iverilog is not installed (apt-get install iverilog)")
    out = tmp_path / "top.v"
    code, _, err = cli(capsys, "verilog", "--config", str(small_config_file), "-o", str(out))
    assert code == 0 and f"wrote {out}" in err
    text = out.read_text()
    assert "module tridsa_top(" in text
    proc = subprocess.run(["iverilog", "-o", "/dev/null", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_config_flags_override_config_file(small_config_file):
    import argparse
    from tridsa.sw.cli import config_from_args
    ns = argparse.Namespace(config=str(small_config_file), rows=2, cols=None, mem_width=None, mem_depth=None,
                            mem_latency=7)
    assert config_from_args(ns) == SMALL.replace(rows=2, mem_latency=7)
    assert config_from_args(argparse.Namespace()) == tridsa.Config()


# -- errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["verilog", "--rows", "3"], "tridsa verilog: error: Config.rows=3 is invalid"),
    (["verilog", "--config", "/nonexistent/c.json"], "tridsa verilog: error: --config: no such file"),
    (["bench", "gemm", "--mem-width", "4"], "tridsa bench gemm: error: Config.mem_width=4 is invalid"),
    (["run", "/nonexistent/p.npz"], "tridsa run: error: no such Program file: /nonexistent/p.npz"),
    (["bench", "gemm", "--shapes", "8x8"], "tridsa bench gemm: error: --shapes item '8x8' is invalid"),
    (["bench", "gemm", "--stream", "0"], "tridsa bench gemm: error: instructions=0 (--stream) is invalid"),
])
def test_user_errors_are_one_line_exit_2(capsys, argv, message):
    code, out, err = cli(capsys, *argv)
    assert code == 2
    assert err.startswith(message) and err.count("\n") == 1, err


@pytest.mark.parametrize("argv", [command + ["--no-such-flag"] for command in COMMANDS + (["sweep"],)]
                         + [["demo", "--backend", "nope"], ["fuzz", "--n", "many"], ["sweep", "--workers", "x"]],
                         ids=" ".join)
def test_argument_mistakes_are_one_line(capsys, argv):
    """Every command, its own options included (demo, fuzz, sweep), names the mistake in one line, no usage."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("tridsa ") and ": error: " in err, err
    assert err.count("\n") == 1 and "usage:" not in err, err


def test_bad_config_file(capsys, tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"rows": 8, "colz": 8}')
    code, _, err = cli(capsys, "verilog", "--config", str(path))
    assert (code, err) == (2, "tridsa verilog: error: unknown Config field(s) ['colz']\n")
    path.write_text("{not json")
    code, _, err = cli(capsys, "verilog", "--config", str(path))
    assert code == 2 and err.startswith(f"tridsa verilog: error: --config: {path} is not valid JSON")


@pytest.mark.parametrize("argv", [["run", "p.npz", "--backend", "modelsim"], ["bench", "gemm", "--backend", "x"]])
def test_unknown_backend(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "argument --backend: invalid choice" in err and err.count("\n") == 1
    from tridsa.sim.backend import BACKENDS
    assert f"(choose from {', '.join(map(repr, BACKENDS))})" in err


@pytest.mark.parametrize("make", [lambda p: p.write_bytes(b"not a zip file"),
                                  lambda p: np.savez(p, x=np.zeros(3)),
                                  lambda p: np.save(p, np.array([{"a": 1}], dtype=object))])
def test_not_a_program_file(capsys, tmp_path, make):
    path = tmp_path / "junk.npz"
    make(path)
    path = path if path.exists() else path.with_suffix(".npz.npy")
    code, _, err = cli(capsys, "run", str(path))
    assert code == 2 and err == f"tridsa run: error: {path} is not a Program file written by Program.save\n"


@pytest.mark.parametrize("argv, module, path", [
    (["build", "--board", "icebreaker"], "tridsa.sw.build", "sw/build.py"),
    (["demo"], "tridsa.sw.demo", "sw/demo.py"),
    (["fuzz"], "tridsa.sw.fuzz_cli", "sw/fuzz_cli.py"),
    (["bench", "models"], "benchmarks.bench_models", "benchmarks/bench_models.py")])
def test_missing_modules_say_not_available(capsys, monkeypatch, argv, module, path):
    """Until a module exists its command says so in one line (simulated here once it does exist)."""
    from tridsa.sw import cli as cli_module
    real = cli_module._module_available
    monkeypatch.setattr(cli_module, "_module_available", lambda name: name != module and real(name))
    code, _, err = cli(capsys, *argv)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"tridsa {' '.join(argv[:2] if argv[0] == 'bench' else argv[:1])}: error: "
                          f"not available yet: {module} missing")


def test_build_passes_clock_and_baud(capsys, monkeypatch):
    """``tridsa build --mhz F --baud N`` builds the board's Config for that clock and baud rate."""
    from tridsa.sw import build as build_module
    calls = []
    monkeypatch.setattr(build_module, "build", lambda *args, **kwargs: calls.append((args, kwargs)) or {"fmax_mhz": 1, "timing_met": True})
    from tridsa.hw.fpga_top import BOARDS
    assert main(["build", "--board", "icebreaker", "--mhz", "20", "--baud", "9600", "--out", "x"]) == 0
    (board, config, out), kwargs = calls[0]
    assert (board, config, out) == ("icebreaker", BOARDS["icebreaker"].config, "x")
    assert kwargs == {"baud": 9600, "frequency": 20e6, "seeds": 1} and "fmax_mhz: 1" in capsys.readouterr().out
    # a flag changes one field of the board's Config, not of Config()
    assert main(["build", "--board", "ulx3s-85f", "--mem-depth", "1024"]) == 0
    assert calls[1][0][1] == BOARDS["ulx3s-85f"].config.replace(mem_depth=1024)


def test_forwarded_commands_reach_their_module(capsys, monkeypatch):
    """``tridsa demo ARGS`` calls ``tridsa.sw.demo.main(ARGS)`` and exits with its return value."""
    import sys
    import types
    calls = []
    fake = types.ModuleType("tridsa.sw.demo")
    fake.main = lambda args: calls.append(args) or 3
    fake.__spec__ = importlib.machinery.ModuleSpec("tridsa.sw.demo", None)
    monkeypatch.setitem(sys.modules, "tridsa.sw.demo", fake)
    assert main(["demo", "cnn", "--backend", "verilator", "--help"]) == 3
    assert calls == [["cnn", "--backend", "verilator", "--help"]]


# -- run -------------------------------------------------------------------------------------------
def test_run_saved_program_golden(capsys, tmp_path, seed):
    program, call, expected = matmul_program(seed)
    path = tmp_path / "prog.npz"
    program.save(path)
    result_path = tmp_path / "result.npz"
    code, out, _ = cli(capsys, "run", str(path), "--backend", "golden", "--out", str(result_path))
    assert code == 0
    assert "status: OK (code 0)" in out
    assert f"c: {program.outputs['c'].words} words = {program.outputs['c'].words * SMALL.mem_width} bytes" in out
    with np.load(result_path) as data:
        memory = data["memory"]
        assert int(data["error"]) == 0
        assert json.loads(bytes(data["counters"]).decode())["retired"] == 1
    np.testing.assert_array_equal(call.result(program, memory), expected)


def test_run_error_status_exits_1(capsys, tmp_path):
    path = tmp_path / "bad.npz"
    bad_program().save(path)
    code, out, _ = cli(capsys, "run", str(path))
    assert code == 1
    assert f"status: BAD_SHAPE (code {isa.ERRORS['BAD_SHAPE']}) at instruction 1" in out


@pytest.mark.slow
def test_run_saved_program_verilator_matches_golden(capsys, tmp_path, seed):
    program, call, expected = matmul_program(seed, m=9, k=20, n=7)
    path = tmp_path / "prog.npz"
    program.save(path)
    result_path = tmp_path / "result.npz"
    code, out, _ = cli(capsys, "run", str(path), "--backend", "verilator", "--check", "--out", str(result_path))
    assert code == 0, out
    assert "check: memory image and status match the golden model bit for bit" in out
    cycles = int(out.split("cycles: ")[1].split()[0])
    assert cycles > 9 * 20 * 7 // (SMALL.rows * SMALL.cols)
    with np.load(result_path) as data:
        np.testing.assert_array_equal(call.result(program, data["memory"]), expected)
    bad = tmp_path / "bad.npz"
    bad_program().save(bad)
    code, out, _ = cli(capsys, "run", str(bad), "--backend", "verilator", "--check")
    assert code == 1 and "status: BAD_SHAPE" in out and "check: memory image and status match" in out


# -- bench -----------------------------------------------------------------------------------------
def test_bench_gemm_golden_tiny(capsys, tmp_path):
    """On golden the cycles are the cycle model's; the table still verifies results and the JSON is written."""
    code, out, err = cli(capsys, "bench", "gemm", "--backend", "golden", *SMALL_FLAGS, "--shapes", "4x8x4",
                         "--no-conv", "--precision", "int8", "--out", str(tmp_path))
    assert code == 0
    report = json.loads((tmp_path / "gemm.json").read_text())
    assert [r["name"] for r in report["rows"]] == ["4x8x4"] and report["rows"][0]["exact"] is True
    from tridsa.sw.cycle_model import estimate_gemm_cycles
    assert report["rows"][0]["cycles"] == estimate_gemm_cycles(SMALL, 4, 8, 4, out_format=0)
    assert "| matmul | 4x8x4 | int8 | 128 |" in out and "bench gemm (golden)" in err


def test_bench_gemm_published_table_golden():
    """The README's GEMM table: INT8 and INT4 of a case on one line, the batched GEMM beside the same
    problems as separate calls, and the command and backend that measured it."""
    from tridsa.benchmarks.bench_gemm import BATCH, _run_batched, _run_matmul, published_table
    acc = tridsa.Accelerator("golden", SMALL)
    rng = np.random.default_rng(0)
    rows = [_run_matmul(acc, rng, p, (16, 16, 16)) for p in ("int8", "int4")] + _run_batched(acc, rng, SMALL)
    assert all(r["exact"] for r in rows)
    batched, separate = rows[2:]
    assert batched["cycles"] < separate["cycles"] and batched["macs"] == separate["macs"]
    table = published_table(rows, SMALL, "golden")
    assert table.startswith("Measured by `tridsa bench gemm --publish` on the golden backend")
    lines = table.splitlines()
    assert lines[4].startswith("| matmul 16 x 16 x 16 | ") and lines[4].endswith("x |")
    assert lines[5].startswith(f"| batched: {BATCH} problems of 8 x 12 x 4, one instruction | {batched['cycles']} | ")
    assert lines[6].startswith(f"| the same as {BATCH} separate matmul calls | {separate['cycles']} | ")


def test_bench_gemm_stream_golden(capsys, tmp_path):
    """--stream N: N independent GEMM instructions in one Program; each hides the previous one's drain."""
    code, out, err = cli(capsys, "bench", "gemm", "--backend", "golden", *SMALL_FLAGS, "--shapes", "16x16x16",
                         "--no-conv", "--precision", "int8", "--stream", "3", "--out", str(tmp_path))
    assert code == 0, err
    (row,) = json.loads((tmp_path / "gemm.json").read_text())["rows"]
    assert (row["kind"], row["name"], row["macs"], row["exact"]) == ("stream", "3x 16x16x16", 3 * 16 ** 3, True)
    from tridsa.sw.cycle_model import estimate_gemm_cycles, gemm_drain_cycles
    assert row["cycles"] == 3 * estimate_gemm_cycles(SMALL, 16, 16, 16, out_format=1) - 2 * gemm_drain_cycles(SMALL)
    assert "| stream | 3x 16x16x16 | int8 |" in out


@pytest.mark.slow
def test_bench_gemm_verilator_small(capsys, tmp_path):
    code, out, err = cli(capsys, "bench", "gemm", "--backend", "verilator", "--quick", *SMALL_FLAGS,
                         "--shapes", "16x16x16", "--out", str(tmp_path))
    assert code == 0, err
    report = json.loads((tmp_path / "gemm.json").read_text())
    assert (tmp_path / "gemm_utilization.png").stat().st_size > 1000
    assert (tmp_path / "gemm_macs_per_cycle.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = report["rows"]
    assert {(r["kind"], r["precision"]) for r in rows} == {(k, p) for k in ("matmul", "conv") for p in ("int8", "int4")}
    for r in rows:
        assert r["exact"] is True
        assert 0 < r["utilization"] <= 1
        assert r["macs_per_cycle"] == pytest.approx(r["utilization"] * r["peak_macs_per_cycle"])
        assert r["gemm_feed"] <= r["gemm_busy"] <= r["cycles"] and r["counters_consistent"] is True
        assert 0 < r["mem_port_occupancy"] <= 1
    int8, int4 = (next(r for r in rows if r["kind"] == "matmul" and r["precision"] == p) for p in ("int8", "int4"))
    assert int4["peak_macs_per_cycle"] == 2 * int8["peak_macs_per_cycle"] == 2 * SMALL.rows * SMALL.cols
    assert report["summary"]["int4_over_int8"]["matmul 16x16x16"] == pytest.approx(
        int4["macs_per_cycle"] / int8["macs_per_cycle"])
    assert report["summary"]["sim_cycles_per_second"] > 0
    assert "| matmul | 16x16x16 | int8 | 4096 |" in out and "compute-bound INT8 utilization" in out


def test_progress_counts_a_finished_case():
    """A case reported with its result (the demo's layers) is counted in the line that shows the result."""
    import io
    from tridsa.sw.progress import Progress
    stream = io.StringIO()
    with Progress(5, "cnn", stream=stream) as bar:
        bar.finished("gemm 8x8x8  util 0.96")
    first = stream.getvalue().splitlines()[0]
    assert " 1/5 gemm 8x8x8  util 0.96 " in first, first


def test_bench_cycles_needs_a_gateware_backend(capsys, tmp_path):
    """bench cycles compares golden's cycle model with a gateware backend: golden alone is refused."""
    code, out, err = cli(capsys, "bench", "cycles", "--backend", "golden", "--out", str(tmp_path))
    assert code == 2 and err.startswith("tridsa bench cycles: error: bench cycles compares the golden cycle model")


@pytest.mark.slow
def test_bench_cycles_verilator_small(capsys, tmp_path):
    """The cycle model's error distribution on a small Config: every GATHER exact, the samples larger than
    its memory skipped and named, the JSON, table and histogram written."""
    code, out, err = cli(capsys, "bench", "cycles", "--backend", "verilator", "--quick", *SMALL_FLAGS,
                         "--out", str(tmp_path))
    assert code == 0, err
    report = json.loads((tmp_path / "cycles.json").read_text())
    summary = {row["engine"]: row for row in report["summary"]}
    assert summary["GATHER"]["samples"] >= 20 and summary["GATHER"]["exact"] == summary["GATHER"]["samples"]
    measured = {f"{p['engine']} {p['name']}" for p in report["samples"]}
    assert report["skipped"] and not measured & set(report["skipped"])        # 32 KiB: the larger ones
    assert all(p["error"] == p["model"] / p["rtl"] - 1 for p in report["samples"])
    assert "| GATHER |" in out and (tmp_path / "cycles.md").read_text().strip() in out
    assert (tmp_path / "cycle_model_errors.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_models_needs_a_gateware_backend(capsys, tmp_path):
    """bench models measures cycles: golden (no clock) is refused with one line."""
    code, out, err = cli(capsys, "bench", "models", "--backend", "golden", "--out", str(tmp_path))
    assert code == 2 and err.startswith("tridsa bench models: error: bench models measures cycles")


@pytest.mark.slow
def test_bench_models_batch_sweep_verilator(tmp_path):
    """The Transformer on the RTL: the table names its command, every layer's cycles add up, utilization
    grows with the batch (the fill and drain of each dependent GEMM are amortized), files written."""
    from tridsa import Config
    from tridsa.benchmarks.bench_models import run
    report = run(Config(), "verilator", tmp_path, names=["transformer"], batches=(1, 2, 4), accuracy=False)
    rows = {r["precision"]: r for r in report["summary"]}
    assert set(rows) == {"INT8", "INT4/INT8"}
    layers = [r for r in report["layers"] if r["precision"] == "INT4/INT8"]
    assert rows["INT4/INT8"]["cycles"] == sum(r["cycles"] for r in layers) > 0
    sweep = {s["batch"]: s["utilization"] for s in report["batch_sweep"]}
    assert 0 < sweep[1] < sweep[2] < sweep[4] < 1
    assert sweep[2] == rows["INT4/INT8"]["utilization"]          # the demo's batch is the summary's run
    saved = json.loads((tmp_path / "models.json").read_text())
    assert saved["batch_sweep"] == report["batch_sweep"]
    assert all(Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in report["plots"])

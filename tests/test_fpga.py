# amaranth: UnusedElaboratable=no
"""The FPGA flow: host protocol driver, UART link end to end against the gateware, synthesis smoke tests.

Fast tests check the driver against scripted replies. Slow tests run the FPGA core (UART pins, host
bridge, Top with its block-RAM memory) under Verilator through :class:`UartSimTransport`, the same driver
code a board uses, and synthesize both boards with the yowasp toolchain.
"""
import os
import random

import numpy as np
import pytest

from conftest import SMALL
from tridsa import Accelerator, Config, Requant
from tridsa.spec import host_link, isa
from tridsa.sw.builder import ProgramBuilder
from tridsa.spec.host_link import COMMANDS, REPLY_CODES, crc8, request_frame
from tridsa.sw.fpga import HostLink, LinkError, Transport
from tridsa.sw.gemm_ops import emit_gemm
from tridsa.sw.golden import execute


class Scripted(Transport):
    """Answers every write with the next canned reply; records what the driver sent."""

    def __init__(self, replies):
        self.replies, self.sent, self.pending = list(replies), [], b""

    def write(self, data):
        self.sent.append(bytes(data))
        self.pending += self.replies.pop(0) if self.replies else b""

    def read(self, n, timeout):
        out, self.pending = self.pending[:n], self.pending[n:]
        return out


def reply(code, payload=b""):
    body = bytes([REPLY_CODES[code]]) + payload
    return bytes([host_link.REP_SYNC]) + body + bytes([crc8(body)])


def test_request_frame_layout():
    frame = request_frame("WRITE", 0x01020304, 2, b"\x10\x20")
    assert frame[0] == host_link.REQ_SYNC and frame[1] == COMMANDS["WRITE"]
    assert frame[2:6] == bytes([4, 3, 2, 1]) and frame[6:8] == bytes([2, 0])
    assert frame[8] == crc8(frame[1:8])
    assert frame[9:11] == b"\x10\x20" and frame[11] == crc8(b"\x10\x20")
    assert len(request_frame("STATUS")) == 9                     # no payload, no payload checksum
    with pytest.raises(ValueError, match="unknown command"):
        request_frame("ERASE")


def test_driver_errors_and_retries():
    # BAD_CHECKSUM is retried, then succeeds
    link = HostLink(Scripted([reply("BAD_CHECKSUM"), reply("OK")]), SMALL, retries=2)
    link.clear()
    assert len(link.transport.sent) == 2 and link.transport.sent[0] == link.transport.sent[1]
    # BUSY is not retried
    link = HostLink(Scripted([reply("BUSY")]), SMALL)
    with pytest.raises(LinkError, match="BUSY") as info:
        link.read_memory(0, 1)
    assert info.value.code == "BUSY"
    # a corrupted reply of a PUSH is not retried (the instruction may have been queued)
    bad = bytearray(reply("OK"))
    bad[-1] ^= 1
    link = HostLink(Scripted([bytes(bad)]), SMALL)
    with pytest.raises(LinkError) as info:
        link.push(0)
    assert info.value.code == "BAD_REPLY" and len(link.transport.sent) == 1
    # silence
    link = HostLink(Scripted([]), SMALL, timeout=0.01)
    with pytest.raises(LinkError, match="NO_REPLY"):
        link.status()


def test_driver_checks_bitstream_config():
    from tridsa.hw.top import counter_names
    good = (host_link.MAGIC + bytes([host_link.PROTOCOL_VERSION]) + host_link.config_digest_bytes(SMALL)
            + bytes([len(counter_names(SMALL))]))
    HostLink(Scripted([reply("OK", good)]), SMALL).check()
    other = Config()
    with pytest.raises(ValueError, match="another Config"):
        HostLink(Scripted([reply("OK", good)]), other).check()


def test_backend_arguments():
    with pytest.raises(ValueError, match="port"):
        Accelerator("fpga", SMALL)
    with pytest.raises(TypeError, match="takes no options"):
        Accelerator("golden", SMALL, port="/dev/null")
    with pytest.raises(ValueError, match="readback"):
        HostLink(Scripted([]), SMALL).run(ProgramBuilder(SMALL).build(), readback="some")


def test_pll_settings():
    from tridsa.hw.fpga_top import ecp5_pll, ice40_pll
    p = ice40_pll(12e6, 30e6)
    assert p["frequency"] == 12e6 * (p["DIVF"] + 1) / ((p["DIVR"] + 1) * 2 ** p["DIVQ"]) <= 30e6
    assert p["frequency"] >= 29e6
    q = ecp5_pll(25e6, 125e6)
    assert q["frequency"] == 125e6 and 400e6 <= q["frequency"] * q["CLKOP_DIV"] <= 800e6
    with pytest.raises(ValueError):
        ice40_pll(12e6, 1e6)


def test_fpga_top_arguments():
    from tridsa.hw.fpga_top import FpgaTop
    with pytest.raises(ValueError, match="unknown board"):
        FpgaTop("de0-nano")
    with pytest.raises(ValueError, match="baud"):
        FpgaTop("icebreaker", baud=100_000_000)
    with pytest.raises(TypeError, match="config"):
        FpgaTop("icebreaker", config={"rows": 4})


# -- end to end over the simulated UART ----------------------------------------------------------
@pytest.fixture(scope="module")
def uart_sim():
    from tridsa.sim.uart_sim import UartSimTransport
    transport = UartSimTransport(SMALL)
    yield transport
    transport.close()


def _gemm_program(rng, m, k, n):
    builder = ProgramBuilder(SMALL)
    a = rng.integers(-128, 128, (m, k)).astype(np.int8)
    b = rng.integers(-128, 128, (k, n)).astype(np.int8)
    emit_gemm(builder, a, b, None, None, False, "int8", None)
    return builder.build()


@pytest.mark.slow
def test_uart_end_to_end_bit_exact(uart_sim, seed):
    """Driver -> UART bytes -> bridge -> Top -> UART bytes -> driver, bit-exact against golden."""
    from tridsa.sw.fpga import FpgaBackend
    rng = np.random.default_rng(seed)
    backend = FpgaBackend(SMALL, transport=uart_sim, timeout=60)
    for shape in [(5, 9, 6), (8, 16, 4)]:
        program = _gemm_program(rng, *shape)
        want = execute(program)
        got = backend.run(program)
        assert (got.error, got.error_pc) == (want.error, want.error_pc)
        assert np.array_equal(got.memory, want.memory)
        assert got.counters["retired"] == want.counters["retired"]
        assert got.counters["gemm_busy"] > 0
    # an illegal instruction: the same error code and failing index as golden, memory untouched
    program = ProgramBuilder(SMALL).build()
    program.instructions.insert(0, 0xEE)
    want = execute(program)
    got = backend.run(program)
    assert want.error != 0 and (got.error, got.error_pc) == (want.error, want.error_pc)
    assert np.array_equal(got.memory, want.memory)


@pytest.mark.slow
def test_uart_protocol_errors_recover(uart_sim, seed):
    rng = random.Random(seed)
    link = HostLink(uart_sim, SMALL, timeout=60, retries=0)
    link.check()
    link.clear()

    def expect(frame, code):
        uart_sim.write(frame)
        with pytest.raises(LinkError) as info:
            link._reply(0)
        assert info.value.code == code
        assert link.info()["magic"] == host_link.MAGIC                  # the bridge answers again

    words = np.array([[rng.randrange(256) for _ in range(SMALL.mem_width)] for _ in range(3)], np.uint8)
    link.write_memory(100, words)
    # bad header checksum: nothing is written
    frame = bytearray(request_frame("WRITE", 100, 3, bytes(3 * SMALL.mem_width)))
    frame[8] ^= 0x40
    expect(bytes(frame), "BAD_CHECKSUM")
    assert np.array_equal(link.read_memory(100, 3), words)
    # truncated frame: TIMEOUT after the idle time
    expect(request_frame("READ", 0, 1)[:5], "TIMEOUT")
    expect(request_frame("WRITE", 100, 2, bytes(2 * SMALL.mem_width))[:20], "TIMEOUT")
    # unknown command
    header = bytes([0x7E, 0, 0, 0, 0, 1, 0])
    expect(bytes([host_link.REQ_SYNC]) + header + bytes([crc8(header)]), "UNKNOWN_COMMAND")
    # out of range
    expect(request_frame("READ", SMALL.mem_depth - 1, 2), "BAD_RANGE")
    expect(request_frame("READ", 0, 0), "BAD_RANGE")
    # a PUSH with a bad payload checksum is not executed
    frame = bytearray(request_frame("PUSH", payload=(0xEE).to_bytes(32, "little")))
    frame[-1] ^= 1
    expect(bytes(frame), "BAD_CHECKSUM")
    status = link.status()
    assert not status.halted and not status.busy and status.error == 0
    # BUSY: memory is refused while a program runs (no HALT yet: the dispatcher waits for more)
    link.push(isa.encode("NOP"))
    assert link.status().busy
    expect(request_frame("READ", 0, 1), "BUSY")
    link.push(isa.encode("HALT"))
    status = link.status()
    assert status.halted and not status.busy and status.counters["retired"] == 1
    assert np.array_equal(link.read_memory(100, 3), words)
    link.clear()
    assert not link.status().halted


@pytest.mark.slow
@pytest.mark.parametrize("board", [None, "icebreaker"])
def test_accelerator_uart_sim_backend(board, seed):
    """The driver over the simulated UART: SMALL, and the icebreaker board's own Config (no command queue,
    the serial requant unit) with a requantized int8 output."""
    from tridsa.hw.fpga_top import BOARDS
    config = BOARDS[board].config if board else SMALL
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (6, 10)).astype(np.int8)
    b = rng.integers(-128, 128, (10, 7)).astype(np.int8)
    requant = Requant(rng.integers(1 << 29, 1 << 31, 7), rng.integers(6, 14, 7), zero_point=-3) if board else None
    acc = Accelerator("uart-sim", config)
    try:
        y = acc.matmul(a, b, requant=requant)
    finally:
        acc.backend.close()
    assert np.array_equal(y, Accelerator("golden", config).matmul(a, b, requant=requant))
    assert acc.last_run.backend == "uart-sim" and acc.last_run.cycles > 0


# -- synthesis smoke tests -----------------------------------------------------------------------
# Both boards at a tiny GEMM-only Config (minutes each): placed, routed, timing met at the smoke clock, a
# bitstream. ECP5: the packed INT4 PEs take one MULT18X18D each. iCE40 UP5K: the board's own Config (the
# compact engine's 8 x 2 array on the 8 SB_MAC16, the serial requant unit; docs/fpga.md).
SMOKE_MHZ = 50         # a clock the tiny ECP5 build meets with margin (it reaches 69-88 MHz; docs/fpga.md)
ICE40_SMOKE_MHZ = 20   # the iCE40 board Config reaches about 30 MHz at 95% of the logic cells (docs/fpga.md)
TINY = Config(rows=2, cols=2, mem_width=8, mem_depth=64, mem_latency=2, queue_depth=2, engines=("gemm",),
              requant_lanes=1)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("TRIDSA_SYNTH") == "0", reason="TRIDSA_SYNTH=0 skips the synthesis runs")
def test_synthesis_smoke_ecp5(tmp_path):
    from tridsa.sw.build import build
    report = build("ulx3s-85f", TINY, tmp_path, frequency=SMOKE_MHZ * 1e6, seeds=2)
    assert (tmp_path / "tridsa.bit").stat().st_size > 1000 and (tmp_path / "report.json").exists()
    # the seed sweep placed and routed the same netlist again with seed 2 (no second bitstream)
    assert set(report["fmax_by_seed"]) == {1, 2} and all(report["fmax_by_seed"].values())
    assert report["fmax_spread"]["runs"] == 2 and report["fmax_by_seed"][1] == pytest.approx(report["fmax_mhz"], abs=1e-3)
    assert (tmp_path / "tridsa.seed2.report.json").exists()
    assert report["timing_met"], report["critical_path"]
    assert report["resources"]["LUT"]["used"] > 0 and report["resources"]["BRAM"]["used"] >= 1
    mult = report["multipliers"]
    # every PE (INT8 and packed INT4 on one multiplier) is one MULT18X18D; 4 per requant lane; 3 in the
    # GEMM setup (an INT4 PE with two products would add 4 more)
    requant = 4 * TINY.lanes_requant
    assert mult["array_hard"] == 4 and mult["inferred_hard"] == 4 + requant + 3, mult
    # every MULT18X18D is an instantiated one with its input and output registers on (none inferred)
    assert mult["array_dsp_blocks"] == 4 and mult["registered_dsps"] == mult["inferred_hard"], mult


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("TRIDSA_SYNTH") == "0", reason="TRIDSA_SYNTH=0 skips the synthesis runs")
def test_synthesis_smoke_ice40(tmp_path):
    from tridsa.hw.fpga_top import BOARDS
    from tridsa.sw.build import build
    config = BOARDS["icebreaker"].config
    report = build("icebreaker", config, tmp_path, frequency=ICE40_SMOKE_MHZ * 1e6)
    assert (tmp_path / "tridsa.bin").stat().st_size > 1000 and (tmp_path / "report.json").exists()
    assert report["timing_met"], report["critical_path"]
    assert report["resources"]["LUT"]["used"] <= report["resources"]["LUT"]["available"]
    # 16 MACs per cycle on the device's 8 SB_MAC16, and no other multiplier: the serial requant unit and the
    # setup's serial products need none
    mult = report["multipliers"]
    assert report["macs_per_cycle_int8"] == 16 and mult["array_hard"] == 16 and mult["inferred_hard"] == 8, mult
    # the SB_MAC16 are the instantiated ones, still in dual 8 x 8 mode with their registers on after
    # synth_ice40 -dsp (whose ice40_dsp pass would rewrite them as unregistered 16 x 16 multipliers)
    assert mult["array_dsp_blocks"] == 8 and mult["registered_dsps"] == 8, mult


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("TRIDSA_SYNTH") == "0", reason="TRIDSA_SYNTH=0 skips the synthesis runs")
@pytest.mark.parametrize("family", ["ecp5", "ice40"])
def test_synthesis_keeps_array_structure(family, tmp_path):
    """yosys alone (seconds) on a 3x4 array with the commands the build adds, up to LUT mapping (after the
    passes that would undo the structure): every PE keeps its own stage-3 control register (opt_merge would
    fold the equal copies along each anti-diagonal into one), and on iCE40 every instantiated SB_MAC16 stays
    in dual 8 x 8 mode with its registers on (ice40_dsp would rewrite it as an unregistered 16 x 16)."""
    import subprocess
    from amaranth.back import rtlil
    from tridsa.hw.mac_array import MacArray, dsp_blocks
    from tridsa.sim.toolchain import use_environment_tools
    from tridsa.sw.build import TOOLS, synthesis_script
    rows, cols, int4 = 3, 4, family == "ecp5"
    (tmp_path / "arr.il").write_text(rtlil.convert(MacArray(rows, cols, int4=int4, family=family, primitives=True),
                                                   name="arr"))
    script = synthesis_script(family)
    synth = "synth_ice40 -dsp" if family == "ice40" else "synth_ecp5"
    ff, registered = ("TRELLIS_FF", "") if family == "ecp5" else ("SB_DFF*", " %i ".join(
        f"r:{p}=1'1" for p in ("MODE_8x8", "A_REG", "B_REG", "TOP_8x8_MULT_REG", "BOT_8x8_MULT_REG")) + " %i")
    (tmp_path / "arr.ys").write_text(
        f"read_rtlil arr.il\n{script['after_read']}{synth} -top arr -run :map_luts\n{script['after_synth']}autoname\n"
        f"tee -q -o ffs.txt select -list arr/t:{ff}\ntee -q -o dsps.txt select -list arr/t:{_DSP_CELL[family]} {registered}\n")
    use_environment_tools()
    subprocess.run([TOOLS[family]["YOSYS"], "-q", "arr.ys"], cwd=tmp_path, check=True, capture_output=True)
    ffs = (tmp_path / "ffs.txt").read_text().split()
    for i in range(rows):
        for j in range(cols):
            assert any(f.startswith(f"arr/pe_{i}_{j}.ctrl2.last_") for f in ffs), (i, j)
        for j in range(cols + 1):       # the readout's row-done flag: a copy per column and one for valid
            assert any(f.startswith(f"arr/done{i}_{j}_d0") for f in ffs), (i, j)
    assert len((tmp_path / "dsps.txt").read_text().split()) == dsp_blocks(rows, cols, None, int4, family)


_DSP_CELL = {"ecp5": "MULT18X18D", "ice40": "SB_MAC16"}


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("TRIDSA_SYNTH") == "0", reason="TRIDSA_SYNTH=0 skips the synthesis runs")
def test_array_alone_benchmark(tmp_path):
    """benchmarks/fpga_array.py on a 3x2 array with row groups of 2 (a minute): its DSPs at fixed sites, placed,
    routed, reported."""
    from benchmarks.fpga_array import build_array
    from tridsa.sim.toolchain import use_environment_tools
    use_environment_tools()
    result = build_array(3, 2, row_group=2, mhz=SMOKE_MHZ, out_dir=tmp_path)
    assert result["resources"]["MULT18X18D"] == 6 and result["yosys_cells"]["MULT18X18D"] == 6, result
    assert result["placed_dsps"] == 6, result           # at the sites dsp_placement gives
    assert result["fmax_mhz"] > 0 and result["fmax_placed_mhz"] > 0 and result["critical_path"]["delay_ns"] > 0
    assert (tmp_path / "array.json").exists()


# -- build reports and their errors (no toolchain run) -------------------------------------------
def test_dsp_placement_of_the_ulx3s_array():
    """The board chip's PEs get distinct MULT18X18D sites, a row group per DSP row, the rows of a group on
    neighbouring sites, a column's PEs at the same x in every full group and the sites the smaller last
    group leaves free side by side; an array that does not fit that way gets none (the placer chooses)."""
    from tridsa.hw.fpga_top import BOARDS
    from tridsa.sw.build import dsp_placement, placement_script
    board = BOARDS["ulx3s-85f"]
    cfg = board.config
    sites = dsp_placement(board.dsp_rows, cfg.rows, cfg.cols, cfg.row_group)
    assert len(sites) == cfg.rows * cfg.cols == len(set(sites.values())) and len(board.dsp_rows) * 52 == board.dsp_blocks

    def xy(i, j):
        x, y, _ = sites[i, j].split("/")
        return int(x[1:]), int(y[1:])
    for i in range(cfg.rows):
        for j in range(cfg.cols):
            assert xy(i, j)[1] == (10, 34, 58)[i // cfg.row_group]
            if i < cfg.rows // cfg.row_group * cfg.row_group:
                assert xy(i, j)[0] == xy(i % cfg.row_group, j)[0]
            if i % cfg.row_group:
                assert 0 < xy(i, j)[0] - xy(i - 1, j)[0] <= 6, (i, j)          # the next site (a block apart: 4-6)
    last_row = set(board.dsp_rows[2])
    assert {s for s in sites.values() if s in last_row} == set(board.dsp_rows[2][:(cfg.rows % cfg.row_group) * cfg.cols])
    assert dsp_placement(board.dsp_rows, 16, 8, 0) == {} == dsp_placement(board.dsp_rows, 16, 8, 4)
    assert placement_script({(1, 2): "X4/Y10/MULT18_0"}) == \
        'setattr -set BEL "X4/Y10/MULT18_0" t:MULT18X18D c:*.pe_1_2.mult.mult %i\n'


def test_fmax_spread_and_overused_resources():
    from tridsa.sw.build import fmax_spread, overused
    assert fmax_spread([71.0, 64.5, 80.25]) == {"min": 64.5, "median": 71.0, "max": 80.25, "runs": 3, "failed": 0}
    assert fmax_spread([70.0, None, 60.0]) == {"min": 60.0, "median": 65.0, "max": 70.0, "runs": 2, "failed": 1}
    log = ("Info: Device utilisation:\nInfo: \t          TRELLIS_COMB: 99105/ 83640   118%\n"
           "Info: \t          MULT18X18D:      12/    156     7%\n")
    assert overused(log) == {"TRELLIS_COMB": (99105, 83640)}


def test_late_endpoints_grouped_by_module_net_and_kind():
    from tridsa.sw.build import late_endpoints
    def net(name, *ends):
        return {"net": name, "endpoints": [{"cell": cell, "port": port, "delay": [0.5, arrival]} for cell, port, arrival in ends]}
    pnr = {"detailed_net_timings": [
        net("top.gemm.rows.r_rdy", ("top.gemm.requant.core.v_0", "CE", 9.5), ("top.gemm.requant.core.v_1", "CE", 8.5),
            ("top.gemm.requant.core.v_2", "CE", 7.5)),
        net("top.gemm.a_reader.level", ("top.gemm.a_split.lane", "M", 12.0), ("top.gemm.requant.core.x", "DI", 8.1)),
        net("clear", ("top.gemm.packer.c_ptr", "LSR", 8.01), ("top.bridge.code", "LSR", 3.0))]}
    late = late_endpoints(pnr, 8.0, depth=3)
    assert late["late"] == 5 and late["endpoints"] == 7 and late["period_ns"] == 8.0
    assert late["by_module"][0] == {"name": "top.gemm.requant", "kind": "CE", "endpoints": 2, "worst_ns": 9.5}
    assert {(r["name"], r["kind"], r["endpoints"]) for r in late["by_module"][1:]} == {
        ("top.gemm.a_split", "D", 1), ("top.gemm.requant", "D", 1), ("top.gemm.packer", "LSR", 1)}
    assert late["by_net"][0] == {"name": "top.gemm.rows.r_rdy", "kind": "CE", "endpoints": 2, "worst_ns": 9.5}
    assert late_endpoints({}, 8.0) == {"period_ns": 8.0, "late": 0, "endpoints": 0, "by_module": [], "by_net": []}


def test_design_too_large_says_what_overflows_by_how_much():
    from tridsa.sw.build import DesignTooLarge, build
    err = DesignTooLarge("ulx3s-85f", TINY, {"TRELLIS_COMB": (99105, 83640)})
    assert "LUT (TRELLIS_COMB) needs 99105 of 83640 (15465 over, 18% too many)" in str(err)
    # the MAC array's DSP blocks are counted before synthesis: 16 x 16 PEs on 156 MULT18X18D
    with pytest.raises(DesignTooLarge, match=r"DSP \(MULT18X18D\) needs 256 of 156 \(100 over.*hard_multipliers"):
        build("ulx3s-85f", Config(rows=16, cols=16, mem_width=64, engines=("gemm",)), "unused")
    # iCE40: two INT8 PEs per SB_MAC16, 8 on the UP5K: 4 x 8 needs 16
    with pytest.raises(DesignTooLarge, match=r"DSP \(ICESTORM_DSP\) needs 16 of 8 \(8 over"):
        build("icebreaker", Config(rows=4, cols=8, int4=False, mem_width=32, engines=("gemm",)), "unused")


def _fake_report(board, fmax, target):
    return {"board": board, "device": "LFE5U-85F", "config": TINY.to_dict(), "macs_per_cycle_int8": 4,
            "macs_per_cycle_int4": 8, "gmacs_int8": 4 * min(fmax, target) / 1e3, "gmacs_int4": 8 * min(fmax, target) / 1e3,
            "target_mhz": target, "fmax_mhz": fmax, "timing_met": fmax >= target,
            "fmax_spread": {"min": fmax - 3, "median": fmax, "max": fmax + 2, "runs": 3},
            "resources": {"LUT": {"used": 6000, "available": 83640}, "FF": {"used": 4000, "available": 83640},
                          "DSP": {"used": 12, "available": 156}, "BRAM": {"used": 2, "available": 208}},
            "critical_path": {"from": "a.Q", "to": "b.D", "logic_ns": 1.0, "routing_ns": 9.0},
            "files": {"report": "build/report.json"}}


def test_cli_build_fails_when_timing_is_not_met(monkeypatch, capsys, tmp_path):
    """``--mhz`` above what the build reaches: the achieved Fmax is printed, exit code 1, timing_met false."""
    from tridsa.sw import build as build_module
    from tridsa.sw.cli import main
    asked = {}

    def fake_build(board, config, out, *, baud, seeds, frequency):
        asked.update(board=board, frequency=frequency, seeds=seeds)
        return _fake_report(board, 88.6, frequency / 1e6)
    monkeypatch.setattr(build_module, "build", fake_build)
    assert main(["build", "--board", "ulx3s-85f", "--mhz", "200", "--seeds", "3", "--out", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "timing_met: False" in out and "Fmax 88.6 MHz < 200.0 MHz" in err
    assert asked == {"board": "ulx3s-85f", "frequency": 200e6, "seeds": 3}
    assert main(["build", "--board", "ulx3s-85f", "--mhz", "50", "--out", str(tmp_path)]) == 0


def test_publish_writes_tables_from_reports(monkeypatch, tmp_path):
    from tridsa.benchmarks import report as bench_report
    from tridsa.sw import fpga_results
    monkeypatch.setattr(fpga_results, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(bench_report, "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("intro\n<!-- fpga-boards -->\nold table\n<!-- /fpga-boards -->\nrest\n")
    (tmp_path / "docs" / "fpga.md").write_text((tmp_path / "README.md").read_text()
                                               + "<!-- fpga-late -->\nold late\n<!-- /fpga-late -->\n")
    late = {"period_ns": 8.0, "late": 7954, "endpoints": 67726, "by_net": [],
            "by_module": [{"name": "core.top.gemm.requant", "kind": "CE", "endpoints": 1338, "worst_ns": 11.5}]}
    fpga_results.publish({**_fake_report("ulx3s-85f", 88.6, 125.0), "late_endpoints": late})
    fpga_results.publish({**_fake_report("icebreaker", 31.0, 30.0), "late_endpoints": {**late, "late": 0}})
    text = (tmp_path / "README.md").read_text()
    docs = (tmp_path / "docs" / "fpga.md").read_text()
    assert docs.startswith(text) and "old late" not in docs
    # the late endpoints of the board that misses its clock, not of the one that meets it
    assert "ulx3s-85f at 125.0 MHz" in docs and "7,954 of 67,726 register inputs" in docs and "icebreaker at" not in docs
    assert "| `core.top.gemm.requant` | CE | 1,338 | 11.5 |" in docs
    assert "old table" not in text and text.startswith("intro\n") and text.endswith("rest\n")
    rows = [line for line in text.splitlines() if line.startswith("| icebreaker") or line.startswith("| ulx3s")]
    assert len(rows) == 2
    assert "**88.6** (85.6 / 88.6 / 90.6 over 3 seeds)" in rows[1] and "| **no** |" in rows[1]
    assert "| 4 / 8 | 0.12 / 0.24 |" in rows[0] and "| yes |" in rows[0] and "12 / 156" in rows[0]
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["icebreaker.json", "ulx3s-85f.json"]

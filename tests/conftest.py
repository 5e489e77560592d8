"""Shared test fixtures: the small Config every cross-backend test uses, and one Accelerator per backend.

All gateware tests share ``SMALL`` so each HDL simulator compiles the top level once per session
(builds are cached in ``~/.cache/tridsa`` across sessions too).
"""
import os
import random

import pytest

from tridsa import Accelerator, Config
from tridsa.sim.toolchain import use_environment_tools

use_environment_tools()      # tools installed in the test environment (yowasp-*, tridsa) are on PATH

SMALL = Config(rows=4, cols=4, mem_width=16, mem_depth=2048, mem_latency=3, cache_sets=4, cache_ways=2,
               cache_row_bytes=32, prefetch_depth=4, rng_lanes=2)
GATEWARE_BACKENDS = ("amaranth", "verilator", "icarus")
ALL_BACKENDS = ("golden",) + GATEWARE_BACKENDS

_cache = {}


def accelerator(backend: str, config: Config = SMALL) -> Accelerator:
    """One shared Accelerator per (backend, config): the HDL model is compiled once."""
    key = (backend, config)
    if key not in _cache:
        _cache[key] = Accelerator(backend, config)
    return _cache[key]


def backend_params(backends=ALL_BACKENDS):
    """pytest params for backends; simulator backends are marked slow."""
    return [pytest.param(b, marks=pytest.mark.slow) if b in ("verilator", "cocotb-verilator", "icarus") else b for b in backends]


@pytest.fixture
def seed(request):
    """A printed, replayable seed: TRIDSA_SEED=<n> replays a failing run."""
    value = int(os.environ.get("TRIDSA_SEED", random.randrange(1 << 31)))
    print(f"TRIDSA_SEED={value}")
    return value


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray instance with 2 CPUs for the whole session (Ray starts in ~5 s); skipped without Ray."""
    pytest.importorskip("ray", reason="Ray is not installed (the 'cluster' extra)")
    from tridsa.sw.cluster import connect
    ray = connect(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture
def small_config_file(tmp_path):
    """``SMALL`` as a JSON file, for ``--config``."""
    path = tmp_path / "small.json"
    path.write_text(SMALL.to_json())
    return path

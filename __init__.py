"""tridsa: an open accelerator for the AI workloads beyond ResNet-50.

Three engines on one chip (INT4/INT8 systolic GEMM, embedding gather with a row cache, Philox RNG with
sketch multiplies) and one Python driver that offloads layers to them::

    from tridsa import Accelerator, Config, Requant
    acc = Accelerator(backend="golden")
"""
from .spec.config import Config

__all__ = ["Accelerator", "Config", "Requant"]
__version__ = "0.1.0"


def __getattr__(name):
    # Lazy: importing tridsa must stay cheap (no gateware, no simulators) until they are used.
    if name == "Accelerator":
        from .sw.driver import Accelerator
        return Accelerator
    if name == "Requant":
        from .sw.requant import Requant
        return Requant
    raise AttributeError(f"module 'tridsa' has no attribute {name!r}")

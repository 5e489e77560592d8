"""The spec layer: every definition that gateware, driver, golden models and simulators share.

Config (:mod:`.config`), the instruction set (:mod:`.isa`), memory layouts (:mod:`.gemm_layout`,
:mod:`.gather_layout`, :mod:`.sketch_layout`), requantization encodings (:mod:`.requant`), the Philox
constants (:mod:`.philox`), counter widths (:mod:`.counters`) and the host link protocol
(:mod:`.host_link`). It imports nothing else of tridsa; gateware (``hw``) imports only this layer.
"""

"""tridsa benchmarks (not part of the installed package; run from a source checkout).

Each ``bench_<name>.py`` exposes ``run(config, backend, out_dir) -> dict`` and is reached with
``tridsa bench <name>``; :mod:`benchmarks.report` holds the shared table, JSON and plot helpers.
"""

"""Backends that execute a Program: golden, amaranth, verilator, icarus."""

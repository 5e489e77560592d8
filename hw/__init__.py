"""Gateware (Amaranth HDL): MAC array, engines, memory model, top level."""

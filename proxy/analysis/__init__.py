"""Wheel analysis: the only package that reads ELF binaries."""

"""Benchmarks that print tables, each row next to a baseline measured in the same run (not tests).

Run one from the repository root as a module, e.g. ``.venv/bin/python -m bench.pipeline_bench``.
"""

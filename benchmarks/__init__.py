"""Benchmarks of tb_layerdyn, run with ``python -m benchmarks`` from the repository root.

See ``benchmarks/README.md`` for the convention every ``bench_*.py`` module follows.
"""

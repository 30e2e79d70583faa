"""Benchmarks: the measuring tools every benchmark uses (:mod:`~clo.bench.measure`)."""

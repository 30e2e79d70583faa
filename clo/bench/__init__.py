"""Benchmarks: the suite behind ``python -m clo bench`` (:mod:`~clo.bench.suite`) and the measuring tools every
benchmark uses (:mod:`~clo.bench.measure`); the one-off studies in the checkout's ``bench/`` folder use both."""

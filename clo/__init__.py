"""CLO Studio: Cross-Lingual Optimization (arXiv 2505.14297) for small chat models.

One module per concept (the map is in docs/design.md): spec, scope, losses, trainer, callbacks, train, runs,
process, resume, catalog, jobs, languages, models, data, datasets, pairs, translate, segment,
translation_cache, importers, generate, langid, detectors, lexicon, metrics, intervals, evaluate, comparison, langcheck,
arena, serve, judge, export, testing, cli. Nothing heavy is imported here: ``import clo`` is instant.
"""
__version__ = "0.1.0"

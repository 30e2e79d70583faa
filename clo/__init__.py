"""CLO Studio: Cross-Lingual Optimization (arXiv 2505.14297) for small chat models.

Modules, one per concept: languages, models, data, pairs, losses, train, runs, generate (and, as they land,
translate, langid, metrics, jobs). Nothing heavy is imported here: ``import clo`` is instant.
"""
__version__ = "0.1.0"

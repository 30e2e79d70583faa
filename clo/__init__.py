"""CLO Studio: Cross-Lingual Optimization (arXiv 2505.14297) for small chat models.

Nine packages, one module per concept (the map is in docs/design.md, "Code map"): ``core``, ``models``,
``data``, ``runs``, ``training``, ``evaluation``, ``workshop``, ``bench`` and ``cli``, each importing only the
ones before it. Nothing heavy is imported here: ``import clo`` is instant.
"""
__version__ = "0.1.0"

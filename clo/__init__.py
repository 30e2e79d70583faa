"""CLO Studio: Cross-Lingual Optimization (arXiv 2505.14297) for small chat models.

Eight packages, one module per concept (the map is in docs/design.md, "Code map"): ``core``, ``data``,
``models``, ``training``, ``runs``, ``evaluation``, ``workshop`` and ``cli``. Nothing heavy is imported here:
``import clo`` is instant.
"""
__version__ = "0.1.0"

"""Inputs: data formats and their validation, stored data sets, importers, preference pairs, and translation
(backends, the segmenter, the SQLite cache)."""

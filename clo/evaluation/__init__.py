"""Answers and their scores: generation, language ID and its detectors, the lexicon verdict, the metrics and
their intervals, evaluating a model, comparing two methods over seeds, and the LCB's own scoring."""

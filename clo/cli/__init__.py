"""``python -m clo``: the command line (:mod:`~clo.cli.main`), its data and workshop commands, and how
training commands stop on signals."""

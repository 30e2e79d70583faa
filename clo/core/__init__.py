"""The ground every other package stands on: training settings (:mod:`~clo.core.spec`), languages, precision,
files written atomically, process identity, where state lives, CSV downloads and the test-only hooks."""

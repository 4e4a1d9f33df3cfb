"""Benchmarks of the loyalty engine: ``python -m bench`` (``make bench``).

Every figure is a ratio against a baseline measured in the same run on the same machine, so
that the numbers mean something on a busy or slower box. One module per benchmark; the
registry in ``bench.__main__`` lists them.
"""

"""jaxrnn's benchmarks: ``python -m benchmarks`` runs the suite in :mod:`jaxrnn.bench`.

The suite itself ships inside the package so that ``jaxrnn bench`` works from
any install; this folder holds the standalone scripts and ``RESULTS.md``.
"""

"""The benchmark suite: ``python -m benchmarks`` or ``jaxrnn bench`` (see ``--help``).

Every implementation (jaxrnn's manual BPTT and autodiff, the numpy notebook
loop, Flax, Equinox, torch, and cuDNN on a GPU) runs the same network on the
same data; the suite checks that they agree, then times them side by side.
"""

from jaxrnn.bench._main import main

__all__ = ["main"]

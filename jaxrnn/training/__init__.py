"""Training with optax: a character-level language model (``jaxrnn train`` / ``sample``).

This package needs the ``[train]`` extra (optax, tqdm, matplotlib); without
optax, importing it raises :class:`ModuleNotFoundError` naming
``pip install "jaxrnn[train]"``. ``import jaxrnn`` never needs it.

The modules behind this one, one concern each:

* ``_corpus``: the text, its vocabulary, the batch streams for truncated BPTT and the validation window;
* ``_model``: :class:`CharLM`, embedding → stacked cell → linear readout;
* ``_config``: :class:`TrainConfig`, its checks, ``--time`` durations, the optimiser and its learning rates;
* ``_loop``: :func:`train`, the loop: steps dispatched ahead of the host, a ``--time`` run sized, Ctrl-C;
* ``_monitor``: the host's side of the loop: finished steps read, checked for NaN, recorded, shown;
* ``_steps``: the jitted training step and eval, and the state a run carries between steps;
* ``_placement``: the devices of a run and how its arrays are sharded over them;
* ``_run``: the run's folder: checks on a start or resume, :func:`load_run`, metrics file, curve;
* ``_budget``: ``--time``: the first steps timed, the step count that fits;
* ``_checkpoint``: atomic ``.npz`` checkpoints with a JSON header;
* ``_distributed``: :func:`initialize_distributed`, many processes from the environment;
* ``_sample``: :func:`sample`, one character at a time through ``cell.step``;
* ``_memory_task``: the adding problem, LSTM/GRU against a simple RNN;
* ``_state_tracking``: running parity, nonlinear cells against linear-recurrence ones;
* ``_compare``: what those two demos share (checks, optimiser, one training loop per cell);

The package is an application of jaxrnn: it reads the cells, the registry,
:func:`jaxrnn.unroll`, stacks and mixed precision through ``jaxrnn``'s public
names only. Atomic files, progress bars, PNG figures and argument checks come
from the leaf utilities ``jaxrnn._io``, ``jaxrnn._plot`` and
``jaxrnn._arguments``, shared with the benchmark suite and the core.
"""

from jaxrnn._io import extra_module

extra_module("optax", "training modules")  # before the modules that import it: one clear error, not optax's

from jaxrnn.training._checkpoint import CheckpointError
from jaxrnn.training._config import TrainConfig, TrainingError
from jaxrnn.training._corpus import CorpusError, Vocabulary, read_corpus, stdlib_files
from jaxrnn.training._distributed import DistributedError, initialize as initialize_distributed
from jaxrnn.training._loop import TrainResult, train
from jaxrnn.training._memory_task import adding_problem, run_memory_task
from jaxrnn.training._model import CharLM, CharLMParams
from jaxrnn.training._monitor import NonFiniteLoss
from jaxrnn.training._run import load_run, load_run_config
from jaxrnn.training._sample import sample
from jaxrnn.training._state_tracking import parity_problem, run_state_tracking

__all__ = [
    "CharLM",
    "CharLMParams",
    "CheckpointError",
    "CorpusError",
    "DistributedError",
    "NonFiniteLoss",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "Vocabulary",
    "adding_problem",
    "initialize_distributed",
    "load_run",
    "load_run_config",
    "parity_problem",
    "read_corpus",
    "run_memory_task",
    "run_state_tracking",
    "sample",
    "stdlib_files",
    "train",
]

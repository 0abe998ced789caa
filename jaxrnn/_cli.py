"""The ``jaxrnn`` command (also ``python -m jaxrnn``)."""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time

import jax
import jax.numpy as jnp

from jaxrnn import __version__, _registry, _timing
from jaxrnn._argparse import cell_list, number, positive
from jaxrnn._options import GRAD_MODES
from jaxrnn._unroll import backward_strategy, unroll
from jaxrnn.testing import relative_error

F64_TOLERANCE = 1e-10  # relative; the hand-written and autodiff BPTT differ only by rounding
F32_TOLERANCE = 1e-4


def _problem(cell, batch, input_size, hidden, steps, dtype, seed=0):
    """Params, inputs and a nonzero initial carry, plus cotangent weights for the loss."""
    k_params, k_xs, k_carry, k_out = jax.random.split(jax.random.key(seed), 4)
    params = cell.init(k_params, input_size, hidden, dtype=dtype)
    xs = jax.random.normal(k_xs, (steps, batch, input_size), dtype)
    carry = jax.tree.map(
        lambda z: 0.5 * jax.random.normal(k_carry, z.shape, dtype), cell.initial_carry(batch, hidden, dtype=dtype)
    )
    weights = jax.random.normal(k_out, (steps, batch, cell.sizes(hidden)[0]), dtype)  # the output's size
    return params, xs, carry, weights


def _gradient_fn(cell, grad):
    """A jitted ``(params, xs, carry, weights) -> grads`` of a loss on the outputs and the final state."""

    def loss(params, xs, carry, weights):
        final, hs = unroll(cell, params, xs, carry, grad=grad)
        return jnp.sum(hs * weights) + sum(jnp.sum(jnp.tanh(leaf)) for leaf in jax.tree.leaves(final))

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))


def _agreement(cell, sizes: tuple[int, int, int, int], dtype) -> float:
    args = _problem(cell, *sizes, dtype)
    return relative_error(_gradient_fn(cell, "manual")(*args), _gradient_fn(cell, "autodiff")(*args))


def check(args) -> int:
    """For each cell: do manual and autodiff gradients agree, and which is faster?"""
    sizes = (args.batch, args.input, args.hidden, args.steps)
    print(f"jaxrnn {__version__} on {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}")
    print(
        f"gradient of a loss on all outputs and the final state w.r.t. params, inputs and initial state;\n"
        f"batch {args.batch}, input {args.input}, hidden {args.hidden}, T {args.steps}; timings float32, "
        f"{args.rounds} interleaved rounds, medians\n"
    )
    header = ("cell", "agree", "f64 rel err", "f32 rel err", "manual ms", "autodiff ms", "autodiff/manual", "compile s",
              "manual backward")
    width = max(11, *map(len, args.cells))
    print(f"{{:<{width}}} {{:>5}} {{:>11}} {{:>11}} {{:>9}} {{:>11}} {{:>15}} {{:>16}}  {{}}".format(*header))
    all_agree = True
    for name in args.cells:
        cell = _registry.get(name)
        with jax.enable_x64(True):
            err64 = _agreement(cell, sizes, jnp.float64)
        problem = _problem(cell, *sizes, jnp.float32)
        grads = {mode: _gradient_fn(cell, mode) for mode in ("manual", "autodiff")}
        compile_s = {}
        for mode, fn in grads.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(*problem))
            compile_s[mode] = time.perf_counter() - start
        err32 = relative_error(grads["manual"](*problem), grads["autodiff"](*problem))
        calls = {mode: functools.partial(fn, *problem) for mode, fn in grads.items()}
        times = _timing.interleaved(calls, rounds=args.rounds)
        agree = err64 < F64_TOLERANCE and err32 < F32_TOLERANCE
        all_agree &= agree
        print(
            f"{name:<{width}} {'yes' if agree else 'NO':>5} {err64:>11.1e} {err32:>11.1e} "
            f"{1e3 * statistics.median(times['manual']):>9.2f} {1e3 * statistics.median(times['autodiff']):>11.2f} "
            f"{_timing.median_ratio(times['autodiff'], times['manual']):>15.2f} "
            f"{compile_s['manual']:>7.2f} / {compile_s['autodiff']:<6.2f}  {backward_strategy(cell, args.steps)}"
        )
    print(
        f"\nagree: relative error below {F64_TOLERANCE:g} in float64 and {F32_TOLERANCE:g} in float32. "
        "compile s: first call, manual / autodiff. manual backward: the strategy jaxrnn.backward_strategy "
        "names for this T.\n"
        "These timings are one shape. The manual gradient's lead depends on the shape, and autodiff wins on "
        "some (large hidden sizes with one head; some short or small problems): `jaxrnn bench --grid` times "
        "every cell on a grid of shapes, and the documentation's Benchmarks page (docs/benchmarks.md) has the heat map."
    )
    return 0 if all_agree else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxrnn", description="Recurrent networks in JAX with hand-written BPTT.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check_parser = commands.add_parser(
        "check", help="compare manual and autodiff gradients for each cell, and time them (the default)"
    )
    for flag, default, help_text in (
        ("--batch", 32, "batch size"),
        ("--input", 64, "input features"),
        ("--hidden", 128, "hidden size"),
        ("--steps", 100, "sequence length T"),
        ("--rounds", 20, "timing rounds"),
    ):
        check_parser.add_argument(flag, type=positive, default=default, help=f"{help_text} (default {default})")
    manual_cells = list(_registry.cells(manual=True))  # every registered cell with a hand-written BPTT
    check_parser.add_argument(
        "--cells", type=cell_list(manual=True), default=manual_cells,
        help="comma-separated registered cells, or MODULE:NAME of your own (default: every registered one)"
    )
    check_parser.set_defaults(run=check)
    if _training_missing() is None:
        _add_train_parser(commands)
        _add_sample_parser(commands)
        _add_memory_task_parser(commands)
        _add_state_tracking_parser(commands)
    else:  # listed in --help all the same; main() answers them with the install command
        for name in TRAINING_COMMANDS:
            commands.add_parser(name, add_help=False, help='needs the [train] extra: pip install "jaxrnn[train]"')
    commands.add_parser("bench", add_help=False, help="the benchmark suite against autodiff and the peers "
                        "(see `jaxrnn bench --help`)")
    return parser


TRAINING_COMMANDS = ("train", "sample", "memory-task", "state-tracking")  # they need jaxrnn.training: optax


def _training_missing() -> str | None:
    """Why ``jaxrnn.training`` cannot be imported (its message names the install command), or None."""
    try:
        import jaxrnn.training  # noqa: F401
    except ModuleNotFoundError as error:
        return str(error)
    return None


def _add_train_parser(commands) -> None:
    # Imported here, not at the top: `import jaxrnn` stays free of the training modules.
    from jaxrnn.training import TrainConfig
    from jaxrnn.training._config import DTYPES, OPTIMIZERS, SCHEDULES, format_duration

    defaults = TrainConfig()
    parser = commands.add_parser(
        "train",
        help="train a character-level language model (default corpus: the Python standard library's source)",
        description="Train embedding → recurrent cell → linear readout on characters, with optax and truncated "
        "BPTT. Writes OUT/metrics.jsonl, OUT/curve.png and OUT/checkpoint.npz. With --resume, flags left out "
        "take the checkpoint's values.",
    )
    positive, rate = number(int, 0), number(float, 0)
    options = (
        ("--out", str, "the run's folder"),
        ("--corpus", str, "a UTF-8 text file (default: the Python standard library's .py files)"),
        ("--cell", str, "the recurrent cell"),
        ("--layers", positive, "stacked layers"),
        ("--heads", positive,
         f"heads of a block-diagonal recurrence ({', '.join(_registry.cells(taking='num_heads'))})"),
        ("--hidden", positive, "hidden size H"),
        ("--embed", positive, "embedding size"),
        ("--dropout", number(float, 0, inclusive=True), "dropout between layers (needs --layers ≥ 2)"),
        ("--batch", positive, "streams per step"),
        ("--seq-len", positive, "characters per truncated-BPTT chunk"),
        ("--steps", positive, "total optimiser steps, instead of --time"),
        ("--time", str, "a wall-time budget instead of --steps, such as 90s, 5m or 2h: the first steps are timed "
         "after compiling and --steps is set to what fits, evals and checkpoints included"),
        ("--optimizer", str, "the optax optimiser"),
        ("--lr", rate, "peak learning rate"),
        ("--schedule", str, "learning rate after the warm-up: cosine decays to lr/10 by --steps, linear to 0"),
        ("--warmup", number(int, 0, inclusive=True), "steps of linear warm-up to --lr, whatever the run's length"),
        ("--weight-decay", number(float, 0, inclusive=True), "AdamW's weight decay"),
        ("--clip", rate, "global gradient-norm clip"),
        ("--seed", number(int, 0, inclusive=True), "seed of params, dropout and data offsets"),
        ("--eval-every", positive, "steps between validation evals"),
        ("--checkpoint-every", positive, "steps between checkpoints"),
        ("--val-chars", positive, "validation characters scored per eval"),
        ("--grad", str, "the BPTT: manual (hand-written) or autodiff"),
        ("--dtype", str, "bfloat16 is mixed precision"),
        ("--devices", positive, "shard the batch over this many devices"),
    )
    choices = {"--cell": tuple(_registry.cells()), "--optimizer": OPTIMIZERS, "--schedule": SCHEDULES,
               "--grad": GRAD_MODES, "--dtype": DTYPES}
    for flag, kind, help_text in options:
        default = getattr(defaults, flag[2:].replace("-", "_"))
        shown = {"--steps": "what --time fits", "--time": format_duration(float(defaults.time or 0)),
                 "--corpus": "none"}.get(flag, default)
        parser.add_argument(flag, type=kind, default=None, choices=choices.get(flag) and list(choices[flag]),
                            help=f"{help_text} (default {shown})")
    parser.add_argument("--resume", action="store_true", help="continue exactly from OUT's checkpoint")
    parser.add_argument(
        "--distributed", action="store_true",
        help="many processes: start jax.distributed first, from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and "
        "JAX_PROCESS_ID, or from SLURM or Open MPI; --devices is then the global count (default: every device)",
    )
    parser.add_argument("--distributed-timeout", type=number(float, 0), default=120.0,
                        help="seconds to wait for the coordinator and every process (default 120)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=train_command, options=[flag[2:].replace("-", "_") for flag, _, _ in options])


def train_command(args) -> int:
    """``jaxrnn train``: 0 when done, 130 after Ctrl-C (checkpoint saved), 1 on a NaN loss, 2 on bad input."""
    from jaxrnn import training

    given = {name: getattr(args, name) for name in args.options if getattr(args, name) is not None}
    if args.distributed:
        try:
            training.initialize_distributed(args.distributed_timeout)
        except training.DistributedError as error:
            print(f"jaxrnn train: error: --distributed: {error}", file=sys.stderr)
            return 2
        given.setdefault("devices", jax.device_count())
    try:
        base = {}
        if args.resume:  # flags left out take the checkpoint's values
            out = given.get("out", training.TrainConfig.out)
            base = training.load_run_config(out)
            if "time" in given:  # the run was sized once; train() says how to go on
                base.pop("steps", None)
        config = training.TrainConfig(**{**base, **given})
        result = training.train(config, resume=args.resume, progress=not args.no_progress)
    except (training.TrainingError, training.CorpusError, training.CheckpointError, ModuleNotFoundError) as error:
        print(f"jaxrnn train: error: {error}", file=sys.stderr)  # ModuleNotFoundError: the [train] extra
        return 2
    except training.NonFiniteLoss as error:
        print(f"jaxrnn train: stopped: {error}", file=sys.stderr)
        return 1
    if result.interrupted:
        return 130
    last_val = next((r["val_bpc"] for r in reversed(result.records) if "val_bpc" in r), None)
    wall = result.records[-1]["elapsed_s"] if result.records else None
    if jax.process_index() == 0:  # one message for the run, not one per process
        print(f"done: step {result.step}" + (f", validation {last_val:.3f} bits per character" if last_val else "")
              + (f", {wall:.0f} s" if wall is not None else "")
              + (f" of the --time {config.time:.0f} s budget" if config.time is not None else "")
              + f"; sample it with: jaxrnn sample --out {config.out}")
    return 0


def _add_sample_parser(commands) -> None:
    parser = commands.add_parser("sample", help="print text generated by a trained model",
                                 description="Generate text from OUT's checkpoint, one character at a time.")
    parser.add_argument("--out", default="jaxrnn_run", help="the run's folder (default jaxrnn_run)")
    parser.add_argument("--length", type=positive, default=500, help="characters to generate (default 500)")
    parser.add_argument("--temperature", type=number(float, 0, inclusive=True), default=0.8,
                        help="sampling temperature; 0 is greedy (default 0.8)")
    parser.add_argument("--prime", default="", help="text to start from (default: a line start)")
    parser.add_argument("--seed", type=number(int, 0, inclusive=True), default=0, help="sampling seed (default 0)")
    parser.set_defaults(run=sample_command)


def sample_command(args) -> int:
    """``jaxrnn sample``: prints the prime and its continuation."""
    from jaxrnn import training

    try:
        model, params, vocab, _ = training.load_run(args.out)
    except training.CheckpointError as error:
        print(f"jaxrnn sample: error: {error}", file=sys.stderr)
        return 2
    text = training.sample(model, params, vocab, length=args.length, temperature=args.temperature,
                           prime=args.prime, key=jax.random.key(args.seed))
    print(args.prime + text)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["check", *argv]  # `jaxrnn` alone runs the check
    if argv[0] in TRAINING_COMMANDS and (missing := _training_missing()) is not None:
        print(f"jaxrnn {argv[0]}: error: {missing}", file=sys.stderr)
        return 2
    if argv[0] == "bench":  # its own parser, shared with `python -m benchmarks`
        from jaxrnn.bench import main as bench

        return bench(argv[1:], prog="jaxrnn bench")
    args = parser.parse_args(argv)
    return args.run(args)


def _add_comparison_flags(parser, task, sizes: tuple) -> None:
    """The flags the cell-comparison demos share; ``sizes``: ``(flag, type, help)`` of the task's own sizes."""
    from jaxrnn.training._compare import DECAY_FACTOR

    names = list(_registry.cells())
    parser.add_argument("--cells", type=cell_list(), default=list(task.DEFAULT_CELLS),
                        help=f"comma-separated cells, from {','.join(names)} or MODULE:NAME of your own "
                        f"(default {','.join(task.DEFAULT_CELLS)})")
    defaults = task.DEFAULTS
    for flag, kind, help_text in (*sizes, ("--hidden", positive, "hidden size"),
                                  ("--batch", positive, "training sequences per step"),
                                  ("--steps", positive, "optimiser steps per cell"),
                                  ("--eval-every", positive,
                                   f"steps between evals on {task.EVAL_BATCH} held-out sequences")):
        default = defaults[flag[2:].replace("-", "_")]
        parser.add_argument(flag, type=kind, default=default, help=f"{help_text} (default {default})")
    parser.add_argument("--lr", type=number(float, 0), default=defaults["lr"],
                        help=f"Adam learning rate, divided by {DECAY_FACTOR} for the last third of the steps "
                        f"(default {defaults['lr']:g})")
    parser.add_argument("--seed", type=number(int, 0, inclusive=True), default=defaults["seed"],
                        help=f"random seed (default {defaults['seed']})")
    parser.add_argument("--grad", choices=GRAD_MODES, default="manual", help="the BPTT (default manual)")
    parser.add_argument("--out", default=task.DEFAULT_OUT, help=f"output folder (default {task.DEFAULT_OUT})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _comparison_arguments(args, *names: str) -> dict:
    """The keyword arguments of a demo's ``run_…`` function from its flags."""
    shared = ("cells", "hidden", "batch", "steps", "lr", "eval_every", "seed", "grad", "out")
    return {**{name: getattr(args, name) for name in (*names, *shared)}, "progress": not args.no_progress}


def _add_memory_task_parser(commands) -> None:
    from jaxrnn.training import _memory_task as task

    parser = commands.add_parser(
        "memory-task",
        help="the adding problem at T = 200: LSTM and GRU remember, a simple RNN does not",
        description="Train each cell on the adding problem with the same budget; write OUT/memory_task.json "
        "and OUT/memory_task.png (eval MSE and accuracy against steps).",
    )
    _add_comparison_flags(parser, task, (
        ("--length", number(int, 2, inclusive=True), "sequence length T ≥ 2: one marker in each half"),))
    parser.set_defaults(run=memory_task_command)


def _add_state_tracking_parser(commands) -> None:
    from jaxrnn.training import _state_tracking as task

    parser = commands.add_parser(
        "state-tracking",
        help="running parity: LSTM, GRU and sLSTM learn it and keep it at 4× the training length; minGRU and "
        "minLSTM cannot",
        description="Train each cell on running parity (a label at every step) at one length and test it on "
        "longer sequences; write OUT/state_tracking.json and OUT/state_tracking.png.",
    )
    _add_comparison_flags(parser, task, (
        ("--length", positive, "training sequence length"),
        ("--test-length", number(int, 2, inclusive=True), "held-out sequence length, longer than --length")))
    parser.set_defaults(run=state_tracking_command)


def _run_demo(command: str, run, args, names: tuple, header, columns) -> int:
    """Runs a cell-comparison demo from its flags; prints ``header(config)``, a table and the paths; 2 on bad input.

    ``columns``: ``(title, width, key, format)`` per column after the cell's
    name, read from each cell's result; steps and seconds follow.
    """
    try:
        report = run(**_comparison_arguments(args, *names))
    except (ModuleNotFoundError, ValueError) as error:  # the [train] extra missing; a bad combination of flags
        print(f"jaxrnn {command}: error: {error}", file=sys.stderr)
        return 2
    print(f"\n{header(report['config'])}")
    print(f"{'cell':<11} " + " ".join(f"{title:>{width}}" for title, width, _, _ in columns)
          + f" {'steps':>6} {'seconds':>8}")
    for name, result in report["cells"].items():
        print(f"{name:<11} " + " ".join(f"{result[key]:>{width}{fmt}}" for _, width, key, fmt in columns)
              + f" {report['config']['steps']:>6} {result['seconds']:>8.1f}")
    print(f"\nwrote {report['files']['json']}\n      {report['files']['png']}")
    return 0


def state_tracking_command(args) -> int:
    """``jaxrnn state-tracking``: trains, prints a results table and the output paths."""
    from jaxrnn.training import _state_tracking as task

    length, test_length = args.length, args.test_length
    return _run_demo(
        "state-tracking", task.run_state_tracking, args, ("length", "test_length"),
        lambda config: f"running parity, trained at length {config['length']}; accuracy on {task.EVAL_BATCH} "
        f"held-out sequences of length {config['test_length']} (chance 0.5)",
        [(f"steps 1-{length}", 12, "final_accuracy_seen", ".3f"),
         (f"steps {length + 1}-{test_length}", 14, "final_accuracy_longer", ".3f")])


def memory_task_command(args) -> int:
    """``jaxrnn memory-task``: trains, prints a results table and the output paths."""
    from jaxrnn.training import _memory_task as task

    return _run_demo(
        "memory-task", task.run_memory_task, args, ("length",),
        lambda config: f"adding problem, T = {config['length']}; eval on {task.EVAL_BATCH} held-out sequences; "
        f"accuracy: |prediction - target| < {task.ACCURACY_TOLERANCE}; baseline (predict 1.0) MSE "
        f"{task.BASELINE_MSE:.3f}",
        [("eval MSE", 9, "final_eval_mse", ".4f"), ("accuracy", 8, "final_accuracy", ".3f")])

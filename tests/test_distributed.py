"""Many devices and many processes: 2 processes × 2 devices (data parallel) equal 1 device,
a Ctrl-C on one process stops all at the same step, and resuming continues exactly; clear start-up errors."""

import os
import re
import socket
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from jaxrnn import _cli, training
from jaxrnn.training import _distributed

_GLOO = re.compile(r"\[Gloo\]|is connected to \d+ peer ranks")

FLAGS = dict(hidden=24, embed=8, batch=8, seq_len=16, eval_every=5, checkpoint_every=5, val_chars=256)
STEPS = 24
LIMIT = 240  # seconds for any one launch; a hang fails the test instead of stalling CI
CACHE = {}  # JAX's persistent compilation cache, shared by the launches (set by the test)

# Runs `jaxrnn train` after arranging a Ctrl-C (SIGINT to itself) as step JAXRNN_TEST_SIGINT_AT's batch is read.
LAUNCHER = """
import os, signal, sys
from jaxrnn import _cli
from jaxrnn.training import _corpus
at, read = os.environ.get("JAXRNN_TEST_SIGINT_AT"), _corpus.Streams.batch
def batch(self, step):
    if at is not None and step == int(at):
        os.kill(os.getpid(), signal.SIGINT)
    return read(self, step)
_corpus.Streams.batch = batch
sys.exit(_cli.main(sys.argv[1:]))
"""


def _argv(corpus, out, *extra):
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in FLAGS.items()]
    return [sys.executable, "-c", LAUNCHER, "train", "--out", str(out), "--corpus", str(corpus), "--steps",
            str(STEPS), "--no-progress", *flags, *extra]


def _env(devices: int, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "SLURM_", "OMPI_"))}
    return {**env, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
            **CACHE, **extra}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _pair(corpus, out, *extra, sigint_at=None) -> list[subprocess.CompletedProcess]:
    """`jaxrnn train --distributed` as 2 processes × 2 CPU devices on the loopback address."""
    port = _free_port()
    processes = []
    for index in range(2):
        env = _env(2, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(index))
        if sigint_at is not None and index == 1:  # only the second process is interrupted
            env["JAXRNN_TEST_SIGINT_AT"] = str(sigint_at)
        processes.append(subprocess.Popen(
            _argv(corpus, out, "--distributed", "--distributed-timeout", "60", *extra), env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    done = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=LIMIT)
            done.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    finally:
        for process in processes:
            process.kill()
    return done


def _assert_same(records, reference):
    assert [r["step"] for r in records] == [r["step"] for r in reference[:len(records)]]
    for mine, theirs in zip(records, reference):
        np.testing.assert_allclose(mine["train_loss"], theirs["train_loss"], rtol=1e-5)
        assert ("val_bpc" in mine) == ("val_bpc" in theirs)
        if "val_bpc" in mine:
            np.testing.assert_allclose(mine["val_bpc"], theirs["val_bpc"], rtol=1e-5)


@pytest.mark.slow
def test_two_processes_match_one_device_and_resume_exactly(corpus, tmp_path, monkeypatch, read_metrics):
    # JAX's persistent cache is set, as a user may: on the CPU jaxrnn turns it off for a multi-process run, since
    # in JAX 0.12.1 the resumed pair's process 0 (alone finding its programs in the cache) hung in the first all-reduce.
    monkeypatch.setitem(CACHE, "JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax_cache"))
    monkeypatch.setitem(CACHE, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    # The reference: one device, in this process (float32, as the launches train), which spares a JAX start-up.
    # The pair below shards each batch over 4 devices in 2 processes: data parallel must equal it.
    with jax.enable_x64(False):
        training.train(training.TrainConfig(out=str(tmp_path / "one"), corpus=str(corpus), steps=STEPS, **FLAGS),
                       progress=False, log=lambda _: None)
    reference = read_metrics(tmp_path / "one")
    assert [r["step"] for r in reference] == list(range(1, STEPS + 1))

    # Two processes × 2 devices, Ctrl-C on process 1 only as step 8's batch is read: both stop at one step,
    # after it, and save one checkpoint; process 0 speaks for the run.
    cut = _pair(corpus, tmp_path / "pair", sigint_at=7)
    assert [p.returncode for p in cut] == [130, 130], cut[0].stderr[-3000:] + cut[1].stderr[-3000:]
    assert "Traceback" not in cut[0].stderr + cut[1].stderr
    assert "2 processes" in cut[0].stdout
    # gloo's own lines ("[Gloo] Rank 3 is connected to 3 peer ranks. ...") may reach the pipe split in two, or
    # leave an empty line (seen with JAX 0.12.1)
    assert not [line for line in cut[1].stdout.splitlines() if line.strip() and not _GLOO.search(line)]
    stopped = training.load_run(tmp_path / "pair")[3]["step"]
    assert (f"interrupted: saved a checkpoint at step {stopped} in {tmp_path / 'pair' / 'checkpoint.npz'}; continue "
            f"with:\n  jaxrnn train --out {tmp_path / 'pair'} --resume --distributed") in cut[0].stdout
    assert 8 <= stopped < STEPS
    first = read_metrics(tmp_path / "pair")
    assert [r["step"] for r in first] == list(range(1, stopped + 1))
    _assert_same(first, reference)

    # Both resumed: the run continues to the end with the reference's metrics.
    resumed = _pair(corpus, tmp_path / "pair", "--resume")
    assert [p.returncode for p in resumed] == [0, 0], resumed[0].stderr[-3000:] + resumed[1].stderr[-3000:]
    assert f"resuming {tmp_path / 'pair'} from step {stopped}" in resumed[0].stdout
    assert all("persistent compilation cache is off for this multi-process CPU run" in p.stderr for p in resumed)
    records = read_metrics(tmp_path / "pair")
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    _assert_same(records, reference)


@pytest.mark.parametrize(
    "environ, message",
    [
        ({}, "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID are not set"),
        ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"}, "JAX_NUM_PROCESSES, JAX_PROCESS_ID are not set"),
        ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"},
         "must be HOST:PORT, e.g. 10.0.0.1:1234; got '10.0.0.1'"),
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"},
         r"process id must be in 0\.\.1 for 2 processes; got 2"),
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"},
         "JAX_NUM_PROCESSES must be a whole number ≥ 1; got 'two'"),
    ],
)
def test_the_environment_is_read_and_checked(environ, message):
    with pytest.raises(_distributed.DistributedError, match=message):
        _distributed.resolve(environ)


def test_resolve_reads_the_three_variables():
    environ = {"JAX_COORDINATOR_ADDRESS": "[::1]:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    assert _distributed.resolve(environ)[:3] == ("[::1]:1234", 4, 3)


def _cluster(port, count, index):
    return _distributed.Cluster(f"127.0.0.1:{port}", count, index, None, "test")


def _in_thread(function, *args):
    """Runs ``function(*args)`` in a thread; returns a callable that joins it and gives its exception."""
    raised = []

    def target():
        try:
            function(*args)
        except Exception as error:  # noqa: BLE001
            raised.append(error)

    thread = threading.Thread(target=target)
    thread.start()

    def join():
        thread.join(30)
        assert not thread.is_alive(), "the rendezvous did not return"
        return raised[0] if raised else None

    return join


def test_rendezvous_meets_every_process_ignores_strangers_and_frees_the_port():
    port = _free_port()
    host = _in_thread(_distributed.rendezvous, _cluster(port, 3, 0), 20)
    while True:  # a stranger (a port probe, say) arrives first and stays connected
        try:
            stranger = socket.create_connection(("127.0.0.1", port), timeout=10)
            break
        except ConnectionRefusedError:
            time.sleep(0.05)
    with stranger:
        stranger.sendall(b"GET / HTTP/1.0\r\n")
        joins = [_in_thread(_distributed.rendezvous, _cluster(port, 3, index), 20) for index in (2, 1)]
        assert [join() for join in joins] == [None, None] and host() is None
    with socket.socket() as again:  # JAX's service takes the port next (gRPC also sets SO_REUSEADDR)
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))


def test_rendezvous_failures_are_clear_and_bounded():
    port = _free_port()
    with pytest.raises(_distributed.DistributedError, match=r"process 1 could not reach the coordinator at "
                       rf"127\.0\.0\.1:{port} within 0\.5 s .*Is process 0 running"):
        _distributed.rendezvous(_cluster(port, 2, 1), 0.5)

    missing = r"only 2 of 3 processes reached .* process id\(s\) 2 did not"
    join = _in_thread(_distributed.rendezvous, _cluster(port, 3, 1), 5)
    with pytest.raises(_distributed.DistributedError, match=missing):
        _distributed.rendezvous(_cluster(port, 3, 0), 1)
    assert re.search("the start was stopped by process 0: " + missing, str(join()))

    for joiner, problem in (((3, 1), "a process says there are 3 processes, process 0 says 2"),
                            ((3, 1), "process id 1 arrived twice")):
        joins = [_in_thread(_distributed.rendezvous, _cluster(port, *joiner), 5)]
        if problem.endswith("twice"):
            joins.append(_in_thread(_distributed.rendezvous, _cluster(port, *joiner), 5))
        with pytest.raises(_distributed.DistributedError, match=problem):
            _distributed.rendezvous(_cluster(port, 3 if problem.endswith("twice") else 2, 0), 5)
        assert all(problem in str(join()) for join in joins)

    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("", port))
        taken.listen()
        with pytest.raises(_distributed.DistributedError, match=f"process 0 cannot listen on port {port}"):
            _distributed.rendezvous(_cluster(port, 2, 0), 1)


def test_cli_reports_a_missing_coordinator(monkeypatch, capsys):
    for name, value in (("JAX_COORDINATOR_ADDRESS", f"127.0.0.1:{_free_port()}"), ("JAX_NUM_PROCESSES", "2"),
                        ("JAX_PROCESS_ID", "1")):
        monkeypatch.setenv(name, value)
    assert _cli.main(["train", "--distributed", "--distributed-timeout", "0.5"]) == 2
    error = capsys.readouterr().err
    assert "error: --distributed: process 1 could not reach the coordinator" in error and "Traceback" not in error


@pytest.fixture
def jax_settings():
    """The JAX settings that initialize changes, restored after the test."""
    names = ("jax_compilation_cache_dir", "jax_enable_compilation_cache", "jax_cpu_collectives_implementation")
    saved = {name: getattr(jax.config, name) for name in names}
    yield
    for name, value in saved.items():
        jax.config.update(name, value)


@pytest.mark.parametrize("processes", [2, 1])
def test_a_multi_process_cpu_start_turns_the_compilation_cache_off(processes, tmp_path, monkeypatch, capsys,
                                                                  jax_settings):
    """With several CPU processes the persistent cache is off (in JAX 0.12.1 it hangs a resumed run); one process keeps it."""
    for name, value in (("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1234"), ("JAX_NUM_PROCESSES", str(processes)),
                        ("JAX_PROCESS_ID", "0")):
        monkeypatch.setenv(name, value)
    started = []
    monkeypatch.setattr(_distributed, "rendezvous", lambda cluster, timeout: None)
    monkeypatch.setattr(jax.distributed, "initialize", lambda *args, **kwargs: started.append(args))
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "jax_cache"))
    jax.config.update("jax_enable_compilation_cache", True)
    assert jax.default_backend() == "cpu"

    _distributed.initialize(timeout=5)
    assert started == [("127.0.0.1:1234", processes, 0)]
    assert jax.config.jax_enable_compilation_cache is (processes == 1)
    note = "jaxrnn: note: JAX's persistent compilation cache is off for this multi-process CPU run"
    assert (note in capsys.readouterr().err) is (processes > 1)


def _scheduler_environment(monkeypatch, **variables):
    for name in list(os.environ):
        if name.startswith(("JAX_", "SLURM_", "OMPI_", "PMI_", "KUBERNETES_", "TPU_", "MEGASCALE_")):
            monkeypatch.delenv(name)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def test_jax_cluster_detection_is_where_jaxrnn_finds_it():
    """jaxrnn detects SLURM and Open MPI with JAX's private jax._src.clusters (there is no public API):
    this fails first if a JAX release moves it, and then _distributed._scheduler needs updating."""
    from jax._src import clusters

    kinds = {env.__name__: env for env in clusters.ClusterEnv._cluster_types}  # `env.name` only from jax 0.9.1
    assert {"SlurmCluster", "OmpiCluster"} <= set(kinds), sorted(kinds)
    for env in kinds.values():
        for method in ("is_env_present", "get_coordinator_address", "get_process_count", "get_process_id",
                       "get_local_process_id"):
            assert callable(getattr(env, method)), (env, method)
        assert isinstance(env.opt_in_only_method, bool)


def test_a_slurm_job_is_detected(monkeypatch):
    _scheduler_environment(monkeypatch, SLURM_JOB_ID="4097", SLURM_STEP_NODELIST="node[007-010],login",
                           SLURM_NTASKS="4", SLURM_PROCID="2", SLURM_LOCALID="1", SLURM_STEP_NUM_NODES="2")
    assert _distributed._scheduler().name == "slurm"
    cluster = _distributed.resolve()
    assert cluster.coordinator.startswith("node007:")
    assert cluster[1:3] == (4, 2) and cluster.source == "slurm"
    assert cluster.local_device_ids == (None if jax.config.jax_platforms == "cpu" else [1])
    # The JAX_* variables win over the scheduler's; JAX_COORDINATOR_PORT sets the port.
    monkeypatch.setenv("JAX_COORDINATOR_PORT", "2345")
    monkeypatch.setenv("JAX_PROCESS_ID", "3")
    assert _distributed.resolve()[:3] == ("node007:2345", 4, 3)


def test_without_a_scheduler_the_variables_are_asked_for(monkeypatch):
    _scheduler_environment(monkeypatch)
    assert _distributed._scheduler() is None
    with pytest.raises(_distributed.DistributedError, match="no SLURM or Open MPI job was detected"):
        _distributed.resolve()

"""Starting many processes: ``jax.distributed.initialize`` with its arguments found, checked and agreed first.

JAX reads ``JAX_COORDINATOR_ADDRESS`` by itself, and detects SLURM and Open MPI,
but not ``JAX_NUM_PROCESSES`` or ``JAX_PROCESS_ID``. When the coordinator cannot be
reached, or a process never joins, XLA aborts the process with a C++ stack trace
after its timeout. :func:`initialize` therefore resolves the arguments itself and
first meets every process on the coordinator's port over plain TCP, so that each of
those failures is a :class:`DistributedError` that says what to fix, within
``timeout`` seconds. Then it calls ``jax.distributed.initialize``, which takes the
port over.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import time
from collections.abc import Mapping
from typing import NamedTuple

import jax

ENVIRONMENT = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
_GREETING = b"jaxrnn-rendezvous-1"
_GREETING_TIMEOUT = 5.0  # seconds a new connection has to say who it is


class DistributedError(RuntimeError):
    """The processes of a multi-process run could not be started; the message says what to change."""


class Cluster(NamedTuple):
    """What ``jax.distributed.initialize`` is given.

    Attributes:
        coordinator: ``host:port`` of process 0, which every process connects to.
        num_processes: N.
        process_id: this process, in 0..N-1.
        local_device_ids: the devices this process uses (None: all it sees).
        source: where the values came from, for messages.
    """

    coordinator: str
    num_processes: int
    process_id: int
    local_device_ids: list[int] | None
    source: str


def initialize(timeout: float = 120.0) -> Cluster:
    """Starts ``jax.distributed`` from the environment; call it before any other JAX call.

    The coordinator address, process count and process id come from
    ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``;
    whatever they leave out comes from SLURM or Open MPI when JAX detects one.
    On the CPU the cross-process collectives are gloo's (unless MPI's were
    chosen), since with none set a multi-process CPU computation fails; and
    with more than one process on the CPU JAX's persistent compilation cache
    is turned off for the run (a note on stderr says so when one was set):
    there only process 0 finds its programs in the cache, and in JAX 0.12.1 a
    program loaded from the cache and a freshly compiled copy of it wait
    forever in their first cross-process sum. The cost is compiling again.

    Args:
        timeout: seconds to wait for the coordinator and for every process to join.

    Returns:
        The :class:`Cluster` that was started.

    Raises:
        DistributedError: a value is missing or malformed, the coordinator's
            port cannot be opened, the coordinator cannot be reached, a process
            did not join in time, or the processes disagree on the count.
    """
    cluster = resolve()
    if cluster.num_processes > 1:
        rendezvous(cluster, timeout)
    if jax.config.jax_cpu_collectives_implementation in (None, "none"):  # type: ignore[attr-defined]
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        cluster.coordinator, cluster.num_processes, cluster.process_id, local_device_ids=cluster.local_device_ids,
        initialization_timeout=max(1, round(timeout)),
    )
    if cluster.num_processes > 1 and jax.default_backend() == "cpu":
        _without_compilation_cache()
    return cluster


def _without_compilation_cache() -> None:
    """Turns JAX's persistent compilation cache off for this process, with a note when one was set.

    Call it before the first compilation: JAX decides whether to use the cache at the first one.
    """
    if jax.config.jax_compilation_cache_dir and jax.config.jax_enable_compilation_cache:  # type: ignore[attr-defined]
        print(
            "jaxrnn: note: JAX's persistent compilation cache is off for this multi-process CPU run (a program "
            "loaded from it can hang the processes' first all-reduce in JAX 0.12.1); every program is compiled anew.",
            file=sys.stderr, flush=True,
        )
    jax.config.update("jax_enable_compilation_cache", False)


def resolve(environ: Mapping[str, str] | None = None) -> Cluster:
    """The :class:`Cluster` described by ``environ`` (default ``os.environ``) and any detected scheduler."""
    environ = os.environ if environ is None else environ
    address, count_text, index_text = (environ.get(name) or None for name in ENVIRONMENT)
    count = _whole(count_text, "JAX_NUM_PROCESSES", minimum=1)
    index = _whole(index_text, "JAX_PROCESS_ID", minimum=0)
    devices: list[int] | None = None
    source = "JAX_* variables"
    if address is None or count is None or index is None:
        detected = _detect(address, count, index) if environ is os.environ else None  # a scheduler's own variables
        if detected is None:
            missing = [name for name, value in zip(ENVIRONMENT, (address, count, index)) if value is None]
            raise DistributedError(
                f"a multi-process run needs the coordinator's address, the number of processes and this "
                f"process's id, but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set and no "
                "SLURM or Open MPI job was detected. On each process set JAX_COORDINATOR_ADDRESS=HOST:PORT "
                "(process 0's host, a free port), JAX_NUM_PROCESSES=N and JAX_PROCESS_ID=0..N-1, or start the "
                "processes with srun or mpirun."
            )
        address, count, index, devices, source = detected
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DistributedError(
            f"the coordinator address must be HOST:PORT, e.g. 10.0.0.1:1234; got {address!r} (from {source})."
        )
    if index >= count:
        raise DistributedError(
            f"the process id must be in 0..{count - 1} for {count} processes; got {index} (from {source})."
        )
    return Cluster(address, count, index, devices, source)


def _whole(value: str | None, name: str, minimum: int) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < minimum:
        raise DistributedError(f"{name} must be a whole number ≥ {minimum}; got {value!r}.")
    return number


def _scheduler():
    """The scheduler JAX detects (its SLURM, Open MPI, ... environment class), or None.

    The one use of JAX's private API here: JAX has no public way to detect a scheduler without also
    starting ``jax.distributed`` (jax.distributed exposes initialize, shutdown and is_initialized, from
    0.5 to 0.12). Should ``jax._src.clusters`` move, nothing is detected and the JAX_* variables must be
    set; tests/test_distributed.py fails first.
    """
    try:
        from jax._src import clusters

        types = clusters.ClusterEnv._cluster_types
    except (ImportError, AttributeError):
        return None
    return next((env for env in types if not env.opt_in_only_method and env.is_env_present()), None)


def _detect(
    address: str | None, count: int | None, index: int | None
) -> tuple[str, int, int, list[int] | None, str] | None:
    """JAX's own detection of SLURM / Open MPI: ``(address, count, id, local devices, name)``, or None."""
    try:
        env = _scheduler()
        if env is None:
            return None
        port = os.environ.get("JAX_COORDINATOR_PORT")
        address = address or env.get_coordinator_address(timeout_secs=None, override_coordinator_port=port)
        count = env.get_process_count() if count is None else count
        index = env.get_process_id() if index is None else index
        local = env.get_local_process_id()
    except Exception:  # noqa: BLE001 (variables JAX cannot read, or an API that moved: the caller says what to set)
        return None
    devices = None if local is None or jax.config.jax_platforms == "cpu" else [local]  # type: ignore[attr-defined]
    return address, count, index, devices, getattr(env, "name", env.__name__)


def rendezvous(cluster: Cluster, timeout: float) -> None:
    """Meets every process on the coordinator's port; returns when all N have arrived.

    Process 0 listens on the coordinator port; each other process connects,
    retrying until ``timeout``, and says its id and N. When all have arrived
    process 0 answers each ``ok`` and closes the port for JAX's service.

    Raises:
        DistributedError: as :func:`initialize`.
    """
    deadline = time.monotonic() + timeout
    host, port = cluster.coordinator.rsplit(":", 1)
    if cluster.process_id == 0:
        _host(cluster, int(port), deadline, timeout)
    else:
        _join(cluster, host.strip("[]"), int(port), deadline, timeout)


def _host(cluster: Cluster, port: int, deadline: float, timeout: float) -> None:
    listener = socket.socket(socket.AF_INET6 if socket.has_dualstack_ipv6() else socket.AF_INET)
    with listener:
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if listener.family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            listener.bind(("", port))
            listener.listen(cluster.num_processes)
        except OSError as error:
            raise DistributedError(
                f"process 0 cannot listen on port {port} for the coordinator ({error.strerror or error}). "
                "Choose a free port in JAX_COORDINATOR_ADDRESS, the same on every process."
            ) from None
        peers: dict[int, socket.socket] = {}
        try:
            while True:
                for index in [i for i, connection in peers.items() if _closed(connection)]:
                    peers.pop(index).close()  # it gave up waiting; it may still come back before the deadline
                if len(peers) == cluster.num_processes - 1:
                    break
                listener.settimeout(max(0.01, min(1.0, deadline - time.monotonic())))
                try:
                    connection, _ = listener.accept()
                except TimeoutError:
                    if time.monotonic() < deadline:
                        continue
                    missing = sorted(set(range(1, cluster.num_processes)) - set(peers))
                    raise _refuse(peers.values(), (
                        f"only {cluster.num_processes - len(missing)} of {cluster.num_processes} processes reached the "
                        f"coordinator at {cluster.coordinator} within {timeout:g} s; process id(s) "
                        f"{', '.join(map(str, missing))} did not. Start every process (each with its own "
                        "JAX_PROCESS_ID), or raise --distributed-timeout"
                    )) from None
                hello = _hello(connection, deadline)
                if hello is None:  # not a jaxrnn process (a port probe, say): ignore it
                    connection.close()
                    continue
                index, count = hello
                problem = (
                    f"a process says there are {count} processes, process 0 says {cluster.num_processes}"
                    if count != cluster.num_processes
                    else f"process id {index} is out of range for {count} processes" if not 0 < index < count
                    else f"process id {index} arrived twice" if index in peers else None
                )
                if problem:
                    refusal = _refuse([*peers.values(), connection], f"{problem}. Give every process the same "
                                      "JAX_NUM_PROCESSES and its own JAX_PROCESS_ID")
                    connection.close()
                    raise refusal
                peers[index] = connection
            for connection in peers.values():
                connection.sendall(b"ok\n")
            for connection in peers.values():  # the peers hang up first, so this port is free at once
                connection.settimeout(max(0.01, deadline - time.monotonic()))
                with contextlib.suppress(OSError):
                    connection.recv(1)
        finally:
            for connection in peers.values():
                connection.close()


def _closed(connection: socket.socket) -> bool:
    """Whether the peer hung up (a waiting peer sends nothing more, so anything readable is its end)."""
    readable, _, _ = select.select([connection], [], [], 0)
    if not readable:
        return False
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _refuse(connections, reason: str) -> DistributedError:
    """Tells every waiting process why the start failed; the error for process 0 itself."""
    for connection in dict.fromkeys(connections):
        with contextlib.suppress(OSError):
            connection.sendall(f"error {reason}\n".encode())
    return DistributedError(reason + ".")


def _hello(connection: socket.socket, deadline: float) -> tuple[int, int] | None:
    """``(id, count)`` from a joining process, or None for a connection that is not one."""
    connection.settimeout(max(0.01, min(_GREETING_TIMEOUT, deadline - time.monotonic())))
    try:
        words = connection.makefile("rb").readline(200).split()
    except OSError:
        return None
    if len(words) != 3 or words[0] != _GREETING or not all(w.isdigit() for w in words[1:]):
        return None
    return int(words[1]), int(words[2])


def _join(cluster: Cluster, host: str, port: int, deadline: float, timeout: float) -> None:
    last = None
    while True:
        try:
            connection = socket.create_connection((host, port), timeout=max(0.01, deadline - time.monotonic()))
            break
        except OSError as error:  # refused while process 0 is still starting: retry until the deadline
            last = error
            if time.monotonic() + 0.2 >= deadline:
                raise DistributedError(
                    f"process {cluster.process_id} could not reach the coordinator at {cluster.coordinator} within "
                    f"{timeout:g} s ({getattr(last, 'strerror', None) or last}). Is process 0 running, with the same "
                    "JAX_COORDINATOR_ADDRESS, and can this host reach that host and port?"
                ) from None
            time.sleep(0.2)
    with connection:
        connection.sendall(b"%s %d %d\n" % (_GREETING, cluster.process_id, cluster.num_processes))
        connection.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            answer = connection.makefile("rb").readline(2000).decode(errors="replace").strip()
        except TimeoutError:
            raise DistributedError(
                f"process {cluster.process_id} reached the coordinator at {cluster.coordinator}, but not every "
                f"process arrived within {timeout:g} s (process 0's message says which did not). Start every "
                "process, or raise --distributed-timeout."
            ) from None
        except OSError:
            answer = ""
    if answer != "ok":
        raise DistributedError(
            f"process {cluster.process_id}: the start was stopped by process 0: "
            + (answer[len("error "):] if answer.startswith("error ") else "it closed the connection (see its message)")
        )

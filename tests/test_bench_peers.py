"""The benchmark's peers compute what jaxrnn computes, from the same weights.

Each CPU peer's ``hs`` and every gradient must equal jaxrnn's autodiff in
float64; the cuDNN LSTM's weight packing is checked on the CPU through
``jax.experimental.rnn``'s own unpacking and reference LSTM.
"""

import functools
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxrnn.bench import _peers
from jaxrnn.bench._jaxrnn import AUTODIFF
from jaxrnn.bench._problem import Gradients, Problem, make_data

SHAPE = dict(batch=3, input=4, hidden=5, steps=6)


def _problem(cell: str) -> Problem:
    return Problem(cell, **SHAPE)


@functools.cache
def _data(cell: str):
    return make_data(_problem(cell), dtype=np.float64)


@functools.cache
def _prepared(peer, cell: str):
    """Each peer built once per cell: compiling is most of these tests' time."""
    return peer.prepare(_problem(cell), _data(cell))


@functools.cache
def _expected(cell: str):
    return AUTODIFF.prepare(_problem(cell), _data(cell)).outputs()


def _assert_outputs_equal(outputs, cell: str) -> None:
    hs, grads = outputs
    want_hs, want_grads = _expected(cell)
    assert isinstance(grads, Gradients)
    for name, got, want in [("hs", hs, want_hs), *zip(Gradients._fields, grads, want_grads)]:
        got = np.asarray(got)
        assert got.dtype == np.float64, name
        assert got.shape == want.shape, name
        # Relative to the array's scale, so entries near zero do not need exact digits.
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.abs(want).max(), err_msg=name)


CPU_PEERS = [
    pytest.param(peer, cell, module, id=f"{peer.name}-{cell}")
    for peer, module in [(_peers.FLAX, "flax"), (_peers.EQUINOX, "equinox"), (_peers.TORCH, "torch")]
    for cell in peer.cells
]


@pytest.mark.sweep
@pytest.mark.parametrize("peer, cell, module", CPU_PEERS)
def test_peer_matches_jaxrnn(peer, cell, module):
    pytest.importorskip(module)
    assert peer.missing() is None
    _assert_outputs_equal(_prepared(peer, cell).outputs(), cell)


@pytest.mark.parametrize("peer, cell, module", CPU_PEERS[:1] + CPU_PEERS[-1:])
def test_forward_and_gradient_run(peer, cell, module):
    """The timed calls run, and forward gives the outputs' hs."""
    pytest.importorskip(module)
    prepared = _prepared(peer, cell)
    jax.block_until_ready(prepared.gradient())
    hs = prepared.forward()
    hs = hs.detach().numpy() if hasattr(hs, "detach") else np.asarray(hs)  # torch or JAX
    np.testing.assert_allclose(hs, _expected(cell)[0], rtol=1e-9, atol=1e-12)
    runs_on_jax = peer is not _peers.TORCH  # JAX peers report a compile time and XLA memory
    assert (prepared.compile_s is not None) == (prepared.temp_bytes is not None) == runs_on_jax


def test_peer_cells():
    assert _peers.PEERS == (_peers.FLAX, _peers.EQUINOX, _peers.TORCH, _peers.TORCH_CUDA, _peers.CUDNN_JAX)
    assert _peers.EQUINOX.cells == ("lstm", "gru")
    assert _peers.CUDNN_JAX.cells == ("lstm",)


def test_cudnn_packing_unpacks_to_our_blocks():
    """unpack_lstm_weights gives back torch's (4H, ·) arrays, gates i, f, g, o."""
    from jax.experimental import rnn

    problem = _problem("lstm")
    data = _data("lstm")
    packed = _peers._pack_lstm(data)
    assert packed.shape == (rnn.get_num_params_in_lstm(problem.input, problem.hidden, 1, False),)
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(packed, problem.input, problem.hidden, 1, False)
    h = problem.hidden
    for k in range(4):  # block k of theirs is gate k of ours
        np.testing.assert_array_equal(w_ih[0][k * h : (k + 1) * h], data.w_ih[:, k * h : (k + 1) * h].T)
        np.testing.assert_array_equal(w_hh[0][k * h : (k + 1) * h], data.w_hh[:, k * h : (k + 1) * h].T)
    np.testing.assert_array_equal(b_ih[0], data.b_ih)
    np.testing.assert_array_equal(b_hh[0], data.b_hh)


def test_cudnn_path_matches_jaxrnn_through_lstm_ref():
    """The whole cuDNN path, with jax's reference LSTM in place of the kernel."""
    prepared = _peers._cudnn_prepare(_problem("lstm"), _data("lstm"), reference=True)
    _assert_outputs_equal(prepared.outputs(), "lstm")


def test_cudnn_rejects_float64():
    with pytest.raises(ValueError, match="float32"):
        _peers._cudnn_prepare(_problem("lstm"), _data("lstm"))


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="checks the message on a machine without a GPU")
def test_cudnn_jax_missing_without_gpu():
    assert _peers.CUDNN_JAX.missing() == "needs a GPU (cuDNN)"


def test_torch_cuda_missing_without_cuda():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("checks the message on a machine without CUDA")
    assert _peers.TORCH_CUDA.missing() == "needs a CUDA GPU"


def test_missing_names_the_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "flax", None)  # makes `import flax` raise ImportError
    assert _peers.FLAX.missing() == "flax is not installed: pip install 'jaxrnn[bench]'"
    monkeypatch.setitem(sys.modules, "torch", None)
    assert _peers.TORCH_CUDA.missing() == "torch is not installed: pip install 'jaxrnn[bench]'"


def test_peers_are_imported_lazily():
    code = (
        "import sys, jaxrnn.bench._peers; "
        "print(sorted({'flax', 'equinox', 'torch'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

"""Recurrent weights, dense or block-diagonal (multi-head), for the gated cells.

With ``num_heads = K`` the state of size H is split into K heads of
d = H / K units: head k is units ``k·d … (k+1)·d − 1``. Each head's gate
pre-activations read only that head's units, so the recurrent matrix is
block-diagonal and stored as its K blocks (FlashRNN's layout, Pöppel et al.
2024):

* ``K = 1``: ``w_hh`` is dense, ``(H, G·H)``, gate blocks along the output
  axis (G gates);
* ``K > 1``: ``w_hh`` is ``(K, d, G·d)``; block k maps head k's d units to
  its G·d pre-activations, gate blocks of d along the last axis.

Either way the pre-activations ``h W_hh`` come out gate-major, ``(B, G·H)``
with gate g's head k at columns ``g·H + k·d …``, so the input projection
and the biases are the same dense arrays for any K, and K = 1 is the plain
dense cell. A step costs ``G·H²/K`` multiply-adds instead of ``G·H²``.

Every product takes the weights' dtype for its operands (the cotangents'
for ``dW_hh``) and sums in at least float32 (:mod:`jaxrnn._precision`).
On the CPU the 16-bit operands of the batched (headed) products are made
float32 first: XLA's CPU runtime in some JAX releases (0.11.2, 0.12.0) has no
batched bfloat16 × bfloat16 → float32 product, and a product of two 16-bit
numbers is exact in float32, so the result is the same.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

from jaxrnn import _checks
from jaxrnn._precision import accumulation_dtype, matmul


def checked_num_heads(num_heads: int, hidden_size: int, where: str) -> int:
    """``num_heads`` as an int ≥ 1 that divides ``hidden_size``; a clear error otherwise."""
    num_heads = _checks.positive_int(num_heads, "num_heads", where)
    if hidden_size % num_heads:
        divisors = [k for k in range(1, hidden_size + 1) if hidden_size % k == 0]
        raise ValueError(
            f"{where}: num_heads must divide hidden_size, so every head has the same size; got num_heads="
            f"{num_heads} with hidden_size={hidden_size}. Choose one of {divisors}."
        )
    return num_heads


def _einsum(spec: str, a: Array, w: Array) -> Array:
    """``einsum(spec, a, w)`` with ``w``'s dtype for both operands, summed in at least float32."""
    a = a.astype(w.dtype)
    total = accumulation_dtype(w.dtype)
    if total == w.dtype:  # float32, float64: one product, as written
        return jnp.einsum(spec, a, w, preferred_element_type=total)

    def native(a: Array, w: Array) -> Array:  # 16-bit operands, float32 sums: the GPU's (and TPU's) own product
        return jnp.einsum(spec, a, w, preferred_element_type=total)

    def widened(a: Array, w: Array) -> Array:  # float32 operands: exact for 16-bit values, and every CPU runtime has it
        return jnp.einsum(spec, a.astype(total), w.astype(total), preferred_element_type=total)

    def product(a: Array, w: Array) -> Array:  # the branch is chosen when lowered for a platform
        return jax.lax.platform_dependent(a, w, cpu=widened, default=native)

    # jax.checkpoint: under autodiff the saved values are a and w as given (the float32 copies would be saved too).
    return jax.checkpoint(product, prevent_cse=False)(a, w)


def _head_major(z: Array, heads: int, size: int) -> Array:
    """Gate-major pre-activations (N, G·H) as head-major blocks (N, K, G·d)."""
    gates = z.shape[-1] // (heads * size)
    return jnp.swapaxes(z.reshape(-1, gates, heads, size), 1, 2).reshape(-1, heads, gates * size)


def recurrent(h: Array, w_hh: Array) -> Array:
    """``h W_hh``: ``h`` (B, H) to gate-major pre-activations (B, G·H), one batched matmul over heads."""
    if w_hh.ndim == 2:
        return matmul(h, w_hh)
    k, d, width = w_hh.shape
    out = _einsum("bkd,kde->bke", h.reshape(-1, k, d), w_hh)  # (B, K, G·d)
    # head-major blocks to gate-major columns
    return jnp.swapaxes(out.reshape(-1, k, width // d, d), 1, 2).reshape(-1, k * width)


def transposed(w_hh: Array) -> Array:
    """``W_hhᵀ`` for :func:`recurrent_vjp`, made once before the reverse scan: (G·H, H) or (K, G·d, d)."""
    return jnp.swapaxes(w_hh, -1, -2)


def recurrent_vjp(dz: Array, w_hh_t: Array) -> Array:
    """The cotangent of ``h`` from that of ``h W_hh``: ``dz`` (B, G·H) to (B, H)."""
    if w_hh_t.ndim == 2:
        return matmul(dz, w_hh_t)
    k, _, d = w_hh_t.shape
    return _einsum("bke,ked->bkd", _head_major(dz, k, d), w_hh_t).reshape(-1, k * d)


def weight_grad(h_prev: Array, dz: Array, w_hh: Array) -> Array:
    """``dW_hh`` over N rows, shaped as ``w_hh``: ``h_prevᵀ dz`` (H, G·H), or each head's ``h_kᵀ dz_k`` (K, d, G·d)."""
    if w_hh.ndim == 2:
        return matmul(h_prev.T, dz)
    k, d = w_hh.shape[0], w_hh.shape[1]
    return _einsum("nkd,nke->kde", h_prev.reshape(-1, k, d), _head_major(dz, k, d))  # dz's dtype for both


def block_diagonal(w_hh: Array) -> Array:
    """The dense ``(H, G·H)`` matrix of headed recurrent weights: zero outside the heads' blocks.

    ``recurrent(h, block_diagonal(w)) == recurrent(h, w)`` to rounding; a
    dense matrix is returned as it is. For exporting a headed cell to a
    framework without heads (``torch.nn.LSTM`` reads the dense matrix), at
    K times the weights' memory.

    Raises:
        ValueError: ``w_hh`` is neither ``(H, G·H)`` nor ``(K, d, G·d)``.
    """
    w_hh = jnp.asarray(w_hh)
    if w_hh.ndim == 2:
        return w_hh
    if w_hh.ndim != 3 or min(w_hh.shape) == 0 or w_hh.shape[2] % w_hh.shape[1]:
        raise ValueError(
            f"jaxrnn.block_diagonal: w_hh must be headed recurrent weights (num_heads, head_size, G·head_size) or "
            f"a dense (H, G·H) matrix; got shape {w_hh.shape}. Pass params.w_hh of one cell (for stacked params, "
            "map over them with jax.vmap)."
        )
    k, d, width = w_hh.shape
    gates = width // d
    blocks = w_hh.reshape(k, d, gates, d)  # [head, in unit, gate, out unit]
    eye = jnp.eye(k, dtype=w_hh.dtype)
    # dense[k·d + i, g·H + l·d + j] = blocks[k, i, g, j] if k == l else 0
    dense = jnp.einsum("kigj,kl->kiglj", blocks, eye)
    return dense.reshape(k * d, gates * k * d)

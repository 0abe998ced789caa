"""Text from a trained :class:`CharLM`, one character at a time through ``cell.step`` under ``jit``."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from jaxrnn.training._corpus import Vocabulary
from jaxrnn.training._model import CharLM

DEFAULT_PRIME = "\n"  # with no prime, condition on a line start (not printed)


def sample(model: CharLM, params, vocab: Vocabulary, *, length: int, key: jax.Array, temperature: float = 1.0,
           prime: str = "") -> str:
    """``length`` characters continuing ``prime``.

    The prime is read one character at a time; then each step draws
    ``id ~ softmax(logits / temperature)`` and feeds it back in.

    Args:
        model, params, vocab: e.g. from :func:`jaxrnn.training.load_run`.
        length: how many characters to generate, ≥ 1.
        key: a PRNG key; the same key gives the same text.
        temperature: > 0 sharpens (< 1) or flattens (> 1) the distribution;
            0 takes the most likely character every step.
        prime: text to start from (characters outside the vocabulary read as
            the unknown symbol); empty conditions on a newline.

    Returns:
        The generated text, without the prime.

    Raises:
        ValueError, TypeError: a length or temperature out of range.
    """
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise ValueError(f"--length must be a whole number ≥ 1; got {length!r}.")
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"--temperature must be a finite number ≥ 0 (0 is greedy); got {temperature!r}.")
    if not isinstance(prime, str):
        raise TypeError(f"prime must be a str; got {type(prime).__name__}.")
    prime_ids = jnp.asarray(vocab.encode(prime or DEFAULT_PRIME))
    ids = _generator(model, length, temperature == 0)(params, prime_ids, key, jnp.float32(temperature or 1.0))
    return vocab.decode(ids)


@functools.lru_cache(maxsize=16)
def _generator(model: CharLM, length: int, greedy: bool):
    def one(params, carry, token):
        return model.step(params, carry, token[None])

    def generate(params, prime_ids, key, temperature):
        carry, logits = jax.lax.scan(functools.partial(one, params), model.initial_carry(1), prime_ids)

        def draw(state, step_key):
            carry, logits = state
            token = jnp.argmax(logits, -1) if greedy else jax.random.categorical(step_key, logits / temperature)
            carry, logits = one(params, carry, token[0])
            return (carry, logits), token[0]

        _, ids = jax.lax.scan(draw, (carry, logits[-1]), jax.random.split(key, length))
        return ids

    return jax.jit(generate)

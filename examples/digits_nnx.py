"""A sequence classifier in Flax NNX: scikit-learn's handwritten digits, read one row at a time by an LSTM.

Each 8×8 image is a sequence of 8 steps of 8 pixels (top row first). ``jaxrnn.nnx.RNN("lstm", ...)`` reads
it, a linear layer classifies its last output into the 10 digits, and ``nnx.Optimizer`` with optax's Adam
trains both on 80% of the 1,797 images. It prints the accuracy on the other 20% (chance is 10%).

    pip install ".[examples]"
    python examples/digits_nnx.py [--epochs 30] [--seed 0]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import jaxrnn.nnx

HIDDEN = 64
BATCH = 64


class DigitClassifier(nnx.Module):
    """An LSTM over the rows of an image, then a linear layer on its last output."""

    def __init__(self, *, rngs: nnx.Rngs):
        # time_major=False: the inputs are (batch, rows, pixels), as the images are stored.
        self.rnn = jaxrnn.nnx.RNN("lstm", 8, HIDDEN, time_major=False, rngs=rngs)
        self.head = nnx.Linear(HIDDEN, 10, rngs=rngs)

    def __call__(self, images: jax.Array) -> jax.Array:
        """Logits (batch, 10) from images (batch, 8, 8)."""
        _, hs = self.rnn(images)  # (batch, 8, HIDDEN)
        return self.head(hs[:, -1])


def loss_fn(model: DigitClassifier, images, labels):
    return optax.softmax_cross_entropy_with_integer_labels(model(images), labels).mean()


@nnx.jit
def train_step(model: DigitClassifier, optimizer: nnx.Optimizer, images, labels):
    loss, grads = nnx.value_and_grad(loss_fn)(model, images, labels)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def accuracy(model: DigitClassifier, images, labels):
    return jnp.mean(jnp.argmax(model(images), axis=-1) == labels)


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="passes over the training images (default 30)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)  # (1797, 8, 8), pixels 0..16 scaled to 0..1
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.2, random_state=args.seed, stratify=digits.target)

    model = DigitClassifier(rngs=nnx.Rngs(args.seed))
    optimizer = nnx.Optimizer(model, optax.adam(5e-3), wrt=nnx.Param)
    rng = np.random.default_rng(args.seed)
    for epoch in range(args.epochs):
        order = rng.permutation(len(x_train))
        losses = [train_step(model, optimizer, x_train[batch], y_train[batch])
                  for batch in np.array_split(order, len(order) // BATCH)]
        if (epoch + 1) % max(1, args.epochs // 5) == 0:
            print(f"epoch {epoch + 1:3d}  train loss {float(np.mean(losses)):.4f}")

    test_accuracy = float(accuracy(model, x_test, y_test))
    print(f"test accuracy {test_accuracy:.3f} on {len(x_test)} images (chance 0.100)")
    return test_accuracy


if __name__ == "__main__":
    main()

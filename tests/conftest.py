"""Gradients are compared in float64; x64 is enabled here and only here."""

import jax

jax.config.update("jax_enable_x64", True)

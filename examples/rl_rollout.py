"""A recurrent policy on a batch of pure-JAX CartPoles, trained with REINFORCE through ``jaxrnn.unroll``.

Each iteration steps ENVS CartPoles for STEPS steps with a GRU policy, one ``cell.step`` at a time. An
episode ends when the pole falls or the cart leaves the track (or after MAX_LEN steps); that environment
starts a new episode at once, and the policy's state goes back to the initial carry there. Episodes end at
different times in different environments, so the stored trajectory marks each episode's first step in
``resets`` (T, ENVS). The update then replays the whole trajectory in one call,
``jaxrnn.unroll(gru, params, observations, resets=resets)``, whose hand-written BPTT stops the state and its
gradient at every reset, and takes a policy-gradient (REINFORCE) step on the log-probabilities of the actions
taken, weighted by each step's normalised discounted return within its own episode.

Every iteration starts all environments on a new episode from the initial carry: ``unroll``'s resets return
the state to the carry it was given, so a replay is exact only when that carry is the one every episode starts
from (a rollout that continued the previous iteration's unfinished episodes would need its first, cut
episodes replayed separately). In the first and the last iteration it checks the replay against the rollout
and against per-episode unrolls, so the resets are seen to cut the state exactly at the episode boundaries.
It prints the mean return of the episodes finished in each iteration, which goes up as the policy learns.

    python examples/rl_rollout.py [--iterations 60] [--seed 0]
"""

from __future__ import annotations

import argparse
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn

ENVS, STEPS, MAX_LEN = 32, 200, 200
HIDDEN, GAMMA = 32, 0.99
CELL = jaxrnn.gru


# ----------------------------------------------------------------------------
# CartPole (the classic-control equations, as in Gym), in pure JAX.


class CartPole(NamedTuple):
    x: jax.Array          # cart position, (ENVS,)
    x_dot: jax.Array
    theta: jax.Array      # pole angle from upright, radians
    theta_dot: jax.Array
    t: jax.Array          # steps into the episode, int


def reset_env(key) -> CartPole:
    x, x_dot, theta, theta_dot = jax.random.uniform(key, (4, ENVS), minval=-0.05, maxval=0.05)
    return CartPole(x, x_dot, theta, theta_dot, jnp.zeros(ENVS, jnp.int32))


def observe(s: CartPole) -> jax.Array:
    return jnp.stack([s.x, s.x_dot, s.theta, s.theta_dot], axis=-1)  # (ENVS, 4)


def step_env(s: CartPole, action: jax.Array) -> tuple[CartPole, jax.Array]:
    """One Euler step of 0.02 s with a push of ±10 N; returns the new state and whether the episode ended."""
    gravity, cart_mass, pole_mass, half_length, dt = 9.8, 1.0, 0.1, 0.5, 0.02
    total_mass = cart_mass + pole_mass
    force = jnp.where(action == 1, 10.0, -10.0)
    cos, sin = jnp.cos(s.theta), jnp.sin(s.theta)
    temp = (force + pole_mass * half_length * s.theta_dot**2 * sin) / total_mass
    theta_acc = (gravity * sin - cos * temp) / (half_length * (4.0 / 3.0 - pole_mass * cos**2 / total_mass))
    x_acc = temp - pole_mass * half_length * theta_acc * cos / total_mass
    new = CartPole(s.x + dt * s.x_dot, s.x_dot + dt * x_acc, s.theta + dt * s.theta_dot,
                   s.theta_dot + dt * theta_acc, s.t + 1)
    done = (jnp.abs(new.x) > 2.4) | (jnp.abs(new.theta) > 12 * jnp.pi / 180) | (new.t >= MAX_LEN)
    return new, done


# ----------------------------------------------------------------------------
# The policy: a GRU over observations, a linear readout to two action logits.


class Policy(NamedTuple):
    gru: jaxrnn.GRUParams
    w: jax.Array  # (HIDDEN, 2)
    b: jax.Array  # (2,)


def init_policy(key) -> Policy:
    k_gru, k_w = jax.random.split(key)
    return Policy(CELL.init(k_gru, 4, HIDDEN), 0.01 * jax.random.normal(k_w, (HIDDEN, 2)), jnp.zeros(2))


class Trajectory(NamedTuple):
    observations: jax.Array  # (T, ENVS, 4)
    actions: jax.Array       # (T, ENVS) int
    resets: jax.Array        # (T, ENVS) bool: an episode starts at this step
    dones: jax.Array         # (T, ENVS) bool: an episode ends after this step
    hs: jax.Array            # (T, ENVS, HIDDEN): the policy's state as the rollout computed it
    ended: jax.Array         # (T, ENVS) int: the length (= return) of an episode ending after this step, else 0


@jax.jit
def rollout(policy: Policy, env: CartPole, carry: jax.Array, starts: jax.Array, key):
    """STEPS steps of every environment; returns the trajectory and where each environment stands after."""
    initial = CELL.initial_carry(ENVS, HIDDEN)

    def one_step(state, key):
        env, carry, starts = state
        k_action, k_reset = jax.random.split(key)
        carry = jnp.where(starts[:, None], initial, carry)  # a new episode: back to the initial carry
        obs = observe(env)
        carry, h = CELL.step(policy.gru, carry, obs)
        action = jax.random.categorical(k_action, h @ policy.w + policy.b)
        env, done = step_env(env, action)
        ended = jnp.where(done, env.t, 0)
        fresh = reset_env(k_reset)
        env = jax.tree.map(lambda new, old: jnp.where(done, new, old), fresh, env)
        return (env, carry, done), (obs, action, starts, done, h, ended)

    (env, carry, starts), steps = jax.lax.scan(one_step, (env, carry, starts), jax.random.split(key, STEPS))
    return Trajectory(*steps), env, carry, starts


def replay(policy: Policy, trajectory: Trajectory, carry: jax.Array):
    """The whole trajectory in one ``unroll``: the resets put the state back at every episode start."""
    _, hs = jaxrnn.unroll(CELL, policy.gru, trajectory.observations, carry, resets=trajectory.resets)
    return hs, hs @ policy.w + policy.b


def discounted_returns(dones: jax.Array) -> jax.Array:
    """Each step's discounted sum of rewards (1 per step) up to its episode's end, (T, ENVS)."""
    def back(following, done):
        value = 1.0 + GAMMA * jnp.where(done, 0.0, following)
        return value, value
    _, returns = jax.lax.scan(back, jnp.zeros(ENVS), dones, reverse=True)
    return returns  # an episode cut by the end of the rollout counts only the steps it had


@jax.jit
def loss(policy: Policy, trajectory: Trajectory, carry: jax.Array) -> jax.Array:
    _, logits = replay(policy, trajectory, carry)
    log_probs = jax.nn.log_softmax(logits)
    taken = jnp.take_along_axis(log_probs, trajectory.actions[..., None], axis=-1)[..., 0]
    returns = discounted_returns(trajectory.dones)
    advantages = (returns - returns.mean()) / (returns.std() + 1e-6)
    return -jnp.mean(taken * advantages)


def check_resets(policy: Policy, trajectory: Trajectory, carry: jax.Array) -> None:
    """The replay equals the rollout, and each episode equals an unroll of that episode alone."""
    hs, _ = replay(policy, trajectory, carry)
    np.testing.assert_allclose(hs, trajectory.hs, atol=1e-5)
    resets = np.asarray(trajectory.resets)
    env = int(np.argmax(resets[1:].sum(0)))  # the environment with the most episode starts
    starts = [0, *np.flatnonzero(resets[1:, env]) + 1, STEPS]
    for begin, end in zip(starts[:-1], starts[1:]):
        _, alone = jaxrnn.unroll(CELL, policy.gru, trajectory.observations[begin:end, env : env + 1])
        np.testing.assert_allclose(hs[begin:end, env], alone[:, 0], atol=1e-5)
    print(f"resets check: environment {env}'s {len(starts) - 1} episodes each match an unroll of that episode alone")


def main(argv=None) -> list[float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=60, help="rollouts and updates (default 60)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    k_policy, key = jax.random.split(jax.random.key(args.seed))
    policy = init_policy(k_policy)
    optimizer = optax.adam(1e-2)
    opt_state = optimizer.init(policy)
    carry, starts = CELL.initial_carry(ENVS, HIDDEN), jnp.ones(ENVS, bool)  # every iteration starts afresh

    @jax.jit
    def update(policy, opt_state, trajectory, carry):
        grads = jax.grad(loss)(policy, trajectory, carry)
        updates, opt_state = optimizer.update(grads, opt_state, policy)
        return optax.apply_updates(policy, updates), opt_state

    mean_returns = []
    for iteration in range(args.iterations):
        key, k_env, k_rollout = jax.random.split(key, 3)
        trajectory, *_ = rollout(policy, reset_env(k_env), carry, starts, k_rollout)
        if iteration in (0, args.iterations - 1):
            check_resets(policy, trajectory, carry)
        finished = int(trajectory.dones.sum())  # the reward is 1 per step, so a return is a length
        mean_returns.append(float(trajectory.ended.sum()) / finished if finished else float(MAX_LEN))
        policy, opt_state = update(policy, opt_state, trajectory, carry)
        if (iteration + 1) % max(1, args.iterations // 10) == 0 or iteration == 0:
            print(f"iteration {iteration + 1:3d}  mean return of finished episodes {mean_returns[-1]:6.1f}")
    first, last = np.mean(mean_returns[:3]), np.mean(mean_returns[-3:])
    print(f"mean return: first 3 iterations {first:.1f}, last 3 {last:.1f}")
    return mean_returns


if __name__ == "__main__":
    main()

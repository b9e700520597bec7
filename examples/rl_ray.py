"""Asynchronous RL with rollout workers on Ray: sampling and rewards in worker processes, training here.

    .venv/bin/python examples/rl_ray.py [--workers 2] [--steps 12] [--max-lag 1]

Needs the optional extra: ``pip install 'tinker-actors[ray]'``. Without ``RAY_ADDRESS`` it starts Ray on
this machine only (127.0.0.1, no dashboard); with it, it joins that cluster.

The trainer keeps the ServiceClient and the TrainingClient. The rollout workers are Ray actors, each with
one SamplingClient built from the sampler handle the trainer publishes (no credentials in it: each worker
takes TINKER_API_KEY from its own environment). They sample a group per prompt and score it (the reward
is the fraction of bytes in ``--alphabet``, as in rl_loop.py) while the trainer trains: results come back
in order of completion, tagged with the policy version that produced them; groups more than
``--max-lag`` versions old are dropped, the others are trained on with the importance_sampling loss.
After each step the trainer publishes the new weights and the workers switch to them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

import tinker_actors as tinker
from tinker_actors.fanout.ray_pool import RolloutPool, import_ray, init_local_ray

PROMPTS = ["the keeper ", "a ship in the ", "light over water ", "she climbed "]


@dataclass(frozen=True)
class Task:
    """One rollout: a prompt to sample a group for, and how to score it."""

    prompt: list[int]
    group: int
    max_tokens: int
    alphabet: bytes


@dataclass(frozen=True)
class Group:
    """What a worker sends back: the completions, their sampling logprobs and their rewards."""

    prompt: list[int]
    completions: list[list[int]]
    logprobs: list[list[float]]
    rewards: list[float]


def play(sampler: tinker.SamplingClient, task: Task) -> Group:
    """Runs in a Ray worker: sample ``task.group`` completions and score them (the environment's work)."""
    params = tinker.SamplingParams(max_tokens=task.max_tokens, temperature=1.0)
    sequences = sampler.sample(tinker.ModelInput.from_ints(task.prompt), task.group, params).result(timeout=120) \
        .sequences
    completions = [list(sequence.tokens) for sequence in sequences]
    rewards = [sum(token in task.alphabet for token in tokens) / max(1, len(tokens)) for tokens in completions]
    return Group(task.prompt, completions, [list(sequence.logprobs or []) for sequence in sequences], rewards)


def rl_datum(prompt: list[int], completion: list[int], logprobs: list[float], advantage: float) -> tinker.Datum:
    tokens = prompt + completion
    padding = len(prompt) - 1  # prompt positions carry no loss
    return tinker.Datum(model_input=tinker.ModelInput.from_ints(tokens[:-1]), loss_fn_inputs={
        "target_tokens": tokens[1:],
        "logprobs": [0.0] * padding + logprobs,
        "advantages": [0.0] * padding + [advantage] * len(completion),
    })


@dataclass
class Summary:
    rewards: list[float] = field(default_factory=list)  # mean reward of the groups trained on, per step
    lags: list[int] = field(default_factory=list)  # policy lag of every group trained on
    versions_seen: list[int] = field(default_factory=list)  # policy versions of the groups, in arrival order
    rollouts: int = 0
    dropped: int = 0
    failed: int = 0
    groups_per_step: int = 0
    max_lag: int = 0

    @property
    def first_reward(self) -> float:
        return float(np.mean(self.rewards[:2]))

    @property
    def last_reward(self) -> float:
        return float(np.mean(self.rewards[-2:]))


def train(service: tinker.ServiceClient, args: argparse.Namespace,
          env_vars: dict[str, str] | None = None) -> Summary:
    """The trainer: Ray must be running (``ray.init`` or :func:`init_local_ray`)."""
    # Futures of the clients (protocol 0.38's creation calls return futures): .result() is the client.
    training = service.create_lora_training_client_future(base_model=args.base_model, rank=8, seed=0).result(120)
    tokenizer = training.get_tokenizer()
    prompts = [tokenizer.encode(text, add_special_tokens=False) for text in PROMPTS]
    tasks = (Task(prompts[n % len(prompts)], args.group, args.max_tokens, args.alphabet.encode())
             for n in range(1 << 30))
    adam = tinker.AdamParams(learning_rate=args.learning_rate)
    summary = Summary(groups_per_step=args.groups_per_step, max_lag=args.max_lag)
    sampler = training.save_weights_and_get_sampling_client_submit().result(timeout=120)
    version = 0
    with RolloutPool(play, sampler, workers=args.workers, rollouts_per_worker=args.rollouts_per_worker,
                     policy_version=version, env_vars=env_vars) as pool:
        for _ in range(args.workers * args.rollouts_per_worker):  # keep every worker busy from the start
            pool.submit(next(tasks))
        for step in range(args.steps):
            batch: list[tuple[Group, int]] = []
            while len(batch) < args.groups_per_step:
                done = pool.next_completed(timeout=120)
                pool.submit(next(tasks))  # one in, one out: the workers never wait for the trainer
                summary.rollouts += 1
                if not done.ok:  # a worker died: its rollout is lost, the run goes on
                    summary.failed += 1
                    print(f"  rollout failed: {done.error!r}")
                    continue
                assert done.policy_version is not None
                summary.versions_seen.append(done.policy_version)
                if version - done.policy_version > args.max_lag:
                    summary.dropped += 1  # too stale: its logprobs no longer describe the policy
                    continue
                batch.append((done.result(), version - done.policy_version))
            data, rewards = [], []
            for group, lag in batch:
                summary.lags.append(lag)
                advantages = np.array(group.rewards) - np.mean(group.rewards)
                rewards.extend(group.rewards)
                for completion, logprobs, advantage in zip(group.completions, group.logprobs, advantages,
                                                           strict=True):
                    if advantage != 0:
                        data.append(rl_datum(group.prompt, completion, logprobs, float(advantage)))
            summary.rewards.append(float(np.mean(rewards)))
            lags = sorted({lag for _, lag in batch})
            print(f"step {step:>3}  reward {summary.rewards[-1]:.3f}  policy lag {lags}  "
                  f"dropped so far {summary.dropped}")
            if data:
                fwd_bwd = training.forward_backward(data, "importance_sampling")
                training.optim_step(adam)
                fwd_bwd.result(timeout=120)
            previous, sampler = sampler, training.save_weights_and_get_sampling_client_submit().result(timeout=120)
            version += 1
            pool.publish(sampler, version)  # rollouts started from now on use the new weights
            previous.close()  # this process only needed its handle; the workers hold their own clients
    return summary


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", default="tiny-byte")
    parser.add_argument("--workers", type=int, default=2, help="Ray actors, each a process with one sampler")
    parser.add_argument("--rollouts-per-worker", type=int, default=2, help="rollouts in flight per worker")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--groups-per-step", type=int, default=4)
    parser.add_argument("--group", type=int, default=8, help="samples per prompt")
    parser.add_argument("--max-tokens", type=int, default=12)
    parser.add_argument("--max-lag", type=int, default=1, help="train on groups at most this many versions old")
    parser.add_argument("--alphabet", default="aeiou")
    parser.add_argument("--learning-rate", type=float, default=2e-2)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _endpoint import service_endpoint

    with service_endpoint() as endpoint, \
            tinker.ServiceClient(base_url=endpoint.base_url, api_key=endpoint.api_key) as service:
        ray = import_ray()
        if not ray.is_initialized():
            if os.environ.get("RAY_ADDRESS"):
                ray.init()  # an existing cluster: its workers must reach endpoint.base_url (docs/guides/ray.md)
            else:
                init_local_ray(max(2, args.workers))
        try:
            # The key reaches the workers through their environment, never through a handle or a task.
            summary = train(service, args, env_vars={"TINKER_API_KEY": endpoint.api_key})
        finally:
            ray.shutdown()
    print(f"{summary.rollouts} rollouts from {args.workers} Ray workers ({summary.dropped} too stale, "
          f"{summary.failed} failed); policy lags trained on: {sorted(set(summary.lags))}")
    first, last = summary.first_reward, summary.last_reward
    print(f"reward rose from {first:.3f} to {last:.3f}" if last > first else
          f"reward did not rise ({first:.3f} -> {last:.3f})")
    print("rl_ray: ok")


if __name__ == "__main__":
    main()

"""Journey 6, asynchronous off-policy RL: rollout workers never wait for the trainer.

    .venv/bin/python examples/rl_async.py [--workers 6] [--steps 12] [--max-steps-off-policy 1]

Rollout workers (asyncio tasks) loop: take the *current* sampling client with the policy step it
belongs to, sample a group, and queue it tagged with that step. The trainer consumes groups, drops any
older than ``--max-steps-off-policy`` steps, trains on a batch of groups (importance_sampling corrects
for the small policy lag), and publishes a new sampling client. Shutdown cascades: the trainer sets the
stop event, workers finish their current sample and exit, the TaskGroup joins them, and the
ServiceClient's ``with`` block stops the actors and ends the session.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass

import numpy as np
from _endpoint import service_endpoint
from rl_loop import PROMPTS, reward, rl_datum

import tinker_actors as tinker


@dataclass(frozen=True)
class Policy:
    step: int
    sampler: tinker.SamplingClient


@dataclass(frozen=True)
class Group:
    policy_step: int
    prompt: list[int]
    sequences: list[tinker.SampledSequence]


async def rollout_worker(worker: int, current: list[Policy], prompts: list[list[int]], groups: asyncio.Queue[Group],
                         stop: asyncio.Event, args: argparse.Namespace) -> int:
    params = tinker.SamplingParams(max_tokens=args.max_tokens, temperature=1.0)
    produced = 0
    while not stop.is_set():
        policy = current[0]  # read once: this whole group comes from one policy
        prompt = prompts[(worker + produced) % len(prompts)]
        response = await policy.sampler.sample_async(tinker.ModelInput.from_ints(prompt), args.group, params)
        await groups.put(Group(policy.step, prompt, list(response.sequences)))
        produced += 1
    return produced


async def trainer(training: tinker.TrainingClient, current: list[Policy], groups: asyncio.Queue[Group],
                  stop: asyncio.Event, args: argparse.Namespace) -> list[float]:
    alphabet = frozenset(args.alphabet.encode())
    adam = tinker.AdamParams(learning_rate=args.learning_rate)
    rewards_per_step: list[float] = []
    dropped = 0
    try:
        for step in range(args.steps):
            batch: list[Group] = []
            while len(batch) < args.groups_per_batch:
                group = await asyncio.wait_for(groups.get(), timeout=60)
                if step - group.policy_step > args.max_steps_off_policy:
                    dropped += 1  # too stale: its logprobs no longer describe the policy
                    continue
                batch.append(group)
            data, rewards = [], []
            for group in batch:
                group_rewards = np.array([reward(s.tokens, alphabet) for s in group.sequences])
                rewards.extend(group_rewards.tolist())
                for sequence, advantage in zip(group.sequences, group_rewards - group_rewards.mean(), strict=True):
                    data.append(rl_datum(group.prompt, sequence.tokens, list(sequence.logprobs or []),
                                         float(advantage)))
            lags = sorted({step - group.policy_step for group in batch})
            rewards_per_step.append(float(np.mean(rewards)))
            print(f"step {step:>3}  reward {rewards_per_step[-1]:.3f}  policy lag {lags}  dropped so far {dropped}")
            fwd_bwd = await training.forward_backward_async(data, "importance_sampling")
            optim = await training.optim_step_async(adam)
            await fwd_bwd
            await optim
            current[0] = Policy(step + 1, await training.save_weights_and_get_sampling_client())
    finally:
        stop.set()
    return rewards_per_step


async def run(args: argparse.Namespace, service: tinker.ServiceClient) -> None:
    training = await service.create_lora_training_client(base_model=args.base_model, rank=8, seed=0)
    tokenizer = training.get_tokenizer()
    prompts = [tokenizer.encode(text, add_special_tokens=False) for text in PROMPTS]
    current = [Policy(0, await training.save_weights_and_get_sampling_client())]
    groups: asyncio.Queue[Group] = asyncio.Queue(maxsize=args.workers * 2)
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tasks:
        workers = [tasks.create_task(rollout_worker(i, current, prompts, groups, stop, args))
                   for i in range(args.workers)]
        trained = tasks.create_task(trainer(training, current, groups, stop, args))
        await trained
        while any(not w.done() for w in workers):  # workers blocked on a full queue need room to see stop
            while not groups.empty():
                groups.get_nowait()
            await asyncio.sleep(0.01)
    rewards = trained.result()
    print(f"workers produced {sum(w.result() for w in workers)} groups; all {args.workers} stopped cleanly")
    first, last = np.mean(rewards[:2]), np.mean(rewards[-2:])
    print(f"reward rose from {first:.3f} to {last:.3f}" if last > first else
          f"reward did not rise ({first:.3f} -> {last:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", default="tiny-byte")
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--groups-per-batch", type=int, default=4)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=12)
    parser.add_argument("--max-steps-off-policy", type=int, default=1)
    parser.add_argument("--alphabet", default="aeiou")
    parser.add_argument("--learning-rate", type=float, default=2e-2)
    args = parser.parse_args()
    with service_endpoint() as endpoint, \
            tinker.ServiceClient(base_url=endpoint.base_url, api_key=endpoint.api_key) as service:
        asyncio.run(run(args, service))


if __name__ == "__main__":
    main()

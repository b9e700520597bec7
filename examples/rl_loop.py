"""Journey 5, on-policy RL (GRPO-style) with the importance_sampling loss.

    .venv/bin/python examples/rl_loop.py [--steps 12] [--loss importance_sampling|ppo|cispo]

A toy task the tiny byte-level model can learn in seconds: the reward of a completion is the fraction
of its bytes that are in ``--alphabet`` (default: lowercase vowels). Each step:

1. ``sc = tc.save_weights_and_get_sampling_client().result()`` (ephemeral weights of the current policy);
2. submit one ``sc.sample(prompt, num_samples=--group, ...)`` per prompt, then collect them;
3. advantages = reward - mean reward of its group (GRPO); groups where every reward is equal teach
   nothing and are dropped;
4. datums carry ``target_tokens``, the sampler's ``logprobs`` and the ``advantages`` per token (zero on
   the prompt); submit ``forward_backward(data, loss)`` and ``optim_step`` back to back;
5. on checkpoint steps, ``save_state`` + ``save_weights_for_sampler`` and sample from that path.
"""

from __future__ import annotations

import argparse

import numpy as np
from _endpoint import service_endpoint

import tinker_actors as tinker

PROMPTS = ["the keeper ", "a ship in the ", "light over water ", "she climbed "]


def reward(tokens: list[int], alphabet: frozenset[int]) -> float:
    return sum(token in alphabet for token in tokens) / max(1, len(tokens))


def rl_datum(prompt: list[int], completion: list[int], logprobs: list[float], advantage: float) -> tinker.Datum:
    """One sampled sequence as a training example: predict every completion token from what precedes it."""
    tokens = prompt + completion
    padding = len(prompt) - 1  # prompt positions: no loss (advantage and logprob 0)
    return tinker.Datum(model_input=tinker.ModelInput.from_ints(tokens[:-1]), loss_fn_inputs={
        "target_tokens": tokens[1:],
        "logprobs": [0.0] * padding + logprobs,
        "advantages": [0.0] * padding + [advantage] * len(completion),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", default="tiny-byte")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--group", type=int, default=8, help="samples per prompt (G)")
    parser.add_argument("--max-tokens", type=int, default=12)
    parser.add_argument("--alphabet", default="aeiou")
    parser.add_argument("--loss", default="importance_sampling", choices=["importance_sampling", "ppo", "cispo"])
    parser.add_argument("--learning-rate", type=float, default=2e-2)
    parser.add_argument("--save-every", type=int, default=6)
    args = parser.parse_args()
    alphabet = frozenset(args.alphabet.encode())
    loss_config = {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2} if args.loss == "ppo" else None

    with service_endpoint() as endpoint, \
            tinker.ServiceClient(base_url=endpoint.base_url, api_key=endpoint.api_key) as service:
        training = service.create_lora_training_client(base_model=args.base_model, rank=8, seed=0).result()
        tokenizer = training.get_tokenizer()
        prompts = [tokenizer.encode(text, add_special_tokens=False) for text in PROMPTS]
        params = tinker.SamplingParams(max_tokens=args.max_tokens, temperature=1.0)
        adam = tinker.AdamParams(learning_rate=args.learning_rate)
        sampler = training.save_weights_and_get_sampling_client().result()
        mean_rewards: list[float] = []

        for step in range(args.steps):
            futures = [sampler.sample(tinker.ModelInput.from_ints(p), args.group, params) for p in prompts]
            data: list[tinker.Datum] = []
            rewards_this_step: list[float] = []
            for prompt, future in zip(prompts, futures, strict=True):
                sequences = future.result(timeout=60).sequences
                rewards = np.array([reward(s.tokens, alphabet) for s in sequences])
                rewards_this_step.extend(rewards.tolist())
                advantages = rewards - rewards.mean()
                if np.allclose(advantages, 0):
                    continue  # an all-equal group has no signal
                for sequence, advantage in zip(sequences, advantages, strict=True):
                    data.append(rl_datum(prompt, sequence.tokens, list(sequence.logprobs or []), float(advantage)))
            mean_rewards.append(float(np.mean(rewards_this_step)))
            print(f"step {step:>3}  reward {mean_rewards[-1]:.3f}  datums {len(data)}")
            if data:
                fwd_bwd = training.forward_backward(data, args.loss, loss_config)
                training.optim_step(adam)
                fwd_bwd.result(timeout=60)
            if (step + 1) % args.save_every == 0:
                training.save_state(f"rl-{step + 1:04d}").result(timeout=60)
                path = training.save_weights_for_sampler(f"rl-{step + 1:04d}").result(timeout=60).path
                sampler = training.create_sampling_client(path).result()  # a persisted checkpoint this time
                print(f"  checkpoint {path}")
            else:
                sampler = training.save_weights_and_get_sampling_client().result()

    first, last = np.mean(mean_rewards[:3]), np.mean(mean_rewards[-3:])
    print(f"reward rose from {first:.3f} to {last:.3f}" if last > first else
          f"reward did not rise ({first:.3f} -> {last:.3f})")


if __name__ == "__main__":
    main()

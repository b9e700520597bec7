"""Journey 7, a KL penalty against a reference model (the shape of on-policy distillation too).

    .venv/bin/python examples/kl_reference.py [--steps 8] [--kl-coef 0.01]

``ref = await svc.create_sampling_client(base_model=M)`` is the frozen reference (for distillation: a
teacher's ``model_path``). Each step samples from the current policy, then computes the reference's
log-probabilities of every sampled sequence concurrently with
``asyncio.gather(ref.compute_logprobs_async(seq) ...)``. The per-token penalty
``kl_coef * (logp_policy - logp_ref)`` is subtracted from the group-relative reward advantage, and the
policy trains with importance_sampling. It prints the reward and the sampled KL to the reference.
"""

from __future__ import annotations

import argparse
import asyncio

import numpy as np
from _endpoint import service_endpoint
from rl_loop import PROMPTS, reward

import tinker_actors as tinker


async def run(args: argparse.Namespace, service: tinker.ServiceClient) -> None:
    training = await service.create_lora_training_client(base_model=args.base_model, rank=8, seed=0)
    reference = await service.create_sampling_client(base_model=args.base_model)
    tokenizer = training.get_tokenizer()
    prompts = [tokenizer.encode(text, add_special_tokens=False) for text in PROMPTS]
    alphabet = frozenset(args.alphabet.encode())
    params = tinker.SamplingParams(max_tokens=args.max_tokens, temperature=1.0)
    adam = tinker.AdamParams(learning_rate=args.learning_rate)

    history: list[tuple[float, float]] = []
    for step in range(args.steps):
        policy = await training.save_weights_and_get_sampling_client()
        responses = await asyncio.gather(*(policy.sample_async(tinker.ModelInput.from_ints(p), args.group, params)
                                           for p in prompts))
        rollouts = [(prompt, seq) for prompt, response in zip(prompts, responses, strict=True)
                    for seq in response.sequences]
        # The reference scores every sampled sequence; all requests are in flight at once.
        ref_logprobs = await asyncio.gather(*(reference.compute_logprobs_async(
            tinker.ModelInput.from_ints(prompt + seq.tokens)) for prompt, seq in rollouts))
        data, rewards, kls = [], [], []
        for index, (prompt, seq) in enumerate(rollouts):
            group = index // args.group
            group_rewards = [reward(s.tokens, alphabet) for s in responses[group].sequences]
            advantage = reward(seq.tokens, alphabet) - float(np.mean(group_rewards))
            policy_lp = np.array(seq.logprobs or [], dtype=float)
            ref_lp = np.array([lp if lp is not None else 0.0 for lp in ref_logprobs[index][len(prompt):]])
            kl = policy_lp - ref_lp  # a per-token sample of KL(policy || reference)
            kls.append(float(kl.mean()))
            rewards.append(reward(seq.tokens, alphabet))
            tokens = prompt + seq.tokens
            padding = len(prompt) - 1
            data.append(tinker.Datum(model_input=tinker.ModelInput.from_ints(tokens[:-1]), loss_fn_inputs={
                "target_tokens": tokens[1:],
                "logprobs": [0.0] * padding + policy_lp.tolist(),
                "advantages": [0.0] * padding + (advantage - args.kl_coef * kl).tolist(),
            }))
        history.append((float(np.mean(rewards)), float(np.mean(kls))))
        print(f"step {step:>3}  reward {history[-1][0]:.3f}  kl(policy||ref) {history[-1][1]:+.3f}")
        fwd_bwd = await training.forward_backward_async(data, "importance_sampling")
        optim = await training.optim_step_async(adam)
        await fwd_bwd
        await optim
    # At step 0 the policy *is* the reference, so its sampled KL is zero: a check of the bookkeeping.
    print(f"kl(policy||ref) went from {history[0][1]:+.3f} to {history[-1][1]:+.3f} while the reward went from "
          f"{history[0][0]:.3f} to {history[-1][0]:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", default="tiny-byte")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=12)
    parser.add_argument("--alphabet", default="aeiou")
    parser.add_argument("--kl-coef", type=float, default=0.01)
    parser.add_argument("--learning-rate", type=float, default=2e-2)
    args = parser.parse_args()
    with service_endpoint() as endpoint, \
            tinker.ServiceClient(base_url=endpoint.base_url, api_key=endpoint.api_key) as service:
        asyncio.run(run(args, service))


if __name__ == "__main__":
    main()

"""Journey 2, minimal supervised fine-tuning: a loop of forward_backward + optim_step, with checkpoints.

    .venv/bin/python examples/sl_basic.py [--steps 30] [--base-model tiny-bpe]

Each step submits forward_backward and optim_step back to back (both futures come back at once; the
client sends them in that order), then reads both results. Every ``--save-every`` steps it saves the
training state; at the end it saves the final state and sampler weights, and samples from them.
"""

from __future__ import annotations

import argparse

import numpy as np
from _endpoint import corpus_text, corpus_windows, service_endpoint

import tinker_actors as tinker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", default="tiny-bpe")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=48)
    parser.add_argument("--save-every", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    with service_endpoint() as endpoint, \
            tinker.ServiceClient(base_url=endpoint.base_url, api_key=endpoint.api_key) as service:
        training = service.create_lora_training_client(base_model=args.base_model, rank=8, seed=0).result()
        tokenizer = training.get_tokenizer()
        tokens = tokenizer.encode(corpus_text(), add_special_tokens=False)
        adam = tinker.AdamParams(learning_rate=args.learning_rate)

        losses: list[float] = []
        for step in range(args.steps):
            batch = corpus_windows(tokens, args.length, args.batch, rng)
            fwd_bwd_future = training.forward_backward(batch, "cross_entropy")
            optim_future = training.optim_step(adam)
            fwd_bwd = fwd_bwd_future.result(timeout=60)
            optim_future.result(timeout=60)
            # loss:sum is summed over every weighted token of the batch; per token is easier to read.
            losses.append(fwd_bwd.metrics["loss:sum"] / (args.batch * args.length))
            if step % 5 == 0 or step == args.steps - 1:
                print(f"step {step:>3}  loss/token {losses[-1]:.3f}")
            if step > 0 and step % args.save_every == 0:
                print(f"  saved {training.save_state(f'step-{step:04d}').result(timeout=60).path}")

        state = training.save_state("final").result(timeout=60)
        sampler_weights = training.save_weights_for_sampler("final").result(timeout=60)
        print(f"final state:           {state.path}")
        print(f"final sampler weights: {sampler_weights.path}")

        sampler = training.create_sampling_client(sampler_weights.path).result()
        prompt = tinker.ModelInput.from_ints(tokenizer.encode("The keeper", add_special_tokens=False))
        sample = sampler.sample(prompt, 1, tinker.SamplingParams(max_tokens=16, temperature=0.5, seed=3))
        print(f"sample: The keeper{tokenizer.decode(sample.result(timeout=60).sequences[0].tokens)!r}")

    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    print(f"loss/token fell from {first:.3f} to {last:.3f}" if last < first else
          f"loss/token did not fall ({first:.3f} -> {last:.3f})")


if __name__ == "__main__":
    main()

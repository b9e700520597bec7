"""Journey 3, pipelined supervised fine-tuning with evaluation, in asyncio.

    .venv/bin/python examples/sl_pipelined.py [--in-flight 3] [--steps 24]

Up to ``--in-flight`` (forward_backward, optim_step) pairs are on their way at once, so the server never
waits for the client between steps. The official two-level shape: ``await tc.forward_backward_async(...)``
returns a future once the request is queued in order, and ``await future`` (or ``result_async()``)
returns its value. Every ``--eval-every`` steps it measures held-out NLL with ``forward_async``, and it
samples from the current weights through an ephemeral sampling client.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import time

import numpy as np
from _endpoint import corpus_text, corpus_windows, service_endpoint

import tinker_actors as tinker

Pair = tuple[int, tinker.APIFuture[tinker.ForwardBackwardOutput], tinker.APIFuture[tinker.OptimStepResponse]]


async def train(args: argparse.Namespace, service: tinker.ServiceClient) -> None:
    training = await service.create_lora_training_client(base_model=args.base_model, rank=8, seed=0)
    tokenizer = training.get_tokenizer()
    tokens = tokenizer.encode(corpus_text(), add_special_tokens=False)
    rng = np.random.default_rng(0)
    held_out = corpus_windows(tokens, args.length, 4, np.random.default_rng(99))
    adam = tinker.AdamParams(learning_rate=args.learning_rate)
    in_flight: collections.deque[Pair] = collections.deque()
    train_losses: list[float] = []
    test_nll: list[float] = []

    async def drain_oldest() -> None:
        step, fwd_bwd, optim = in_flight.popleft()
        output = await fwd_bwd.result_async(timeout=60)
        await optim.result_async(timeout=60)
        train_losses.append(output.metrics["loss:sum"] / (args.batch * args.length))
        if step % 4 == 0:
            print(f"step {step:>3}  train loss/token {train_losses[-1]:.3f}")

    started = time.monotonic()
    for step in range(args.steps):
        if step % args.eval_every == 0:
            # Evaluated on the weights after every optim_step submitted so far (order is kept).
            evaluation = await (await training.forward_async(held_out, "cross_entropy"))
            test_nll.append(evaluation.metrics["loss:sum"] / (len(held_out) * args.length))
            print(f"step {step:>3}  test  nll/token  {test_nll[-1]:.3f}")
        batch = corpus_windows(tokens, args.length, args.batch, rng)
        fwd_bwd = await training.forward_backward_async(batch, "cross_entropy")
        optim = await training.optim_step_async(adam)
        in_flight.append((step, fwd_bwd, optim))
        if len(in_flight) >= args.in_flight:
            await drain_oldest()
    while in_flight:
        await drain_oldest()
    print(f"{args.steps} steps in {time.monotonic() - started:.1f} s with {args.in_flight} pairs in flight")

    sampler = await training.save_weights_and_get_sampling_client()  # ephemeral: not a checkpoint
    prompt = tinker.ModelInput.from_ints(tokenizer.encode("The keeper", add_special_tokens=False))
    params = tinker.SamplingParams(max_tokens=12, temperature=0.7)
    samples = await asyncio.gather(*(sampler.sample_async(prompt, 1, params) for _ in range(4)))
    for response in samples:
        print(f"sample: The keeper{tokenizer.decode(response.sequences[0].tokens)!r}")
    final = await (await training.forward_async(held_out, "cross_entropy"))
    test_nll.append(final.metrics["loss:sum"] / (len(held_out) * args.length))
    print(f"test nll/token fell from {test_nll[0]:.3f} to {test_nll[-1]:.3f}" if test_nll[-1] < test_nll[0]
          else f"test nll/token did not fall ({test_nll[0]:.3f} -> {test_nll[-1]:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", default="tiny-bpe")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--in-flight", type=int, default=3)
    parser.add_argument("--eval-every", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=48)
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    args = parser.parse_args()
    with service_endpoint() as endpoint, \
            tinker.ServiceClient(base_url=endpoint.base_url, api_key=endpoint.api_key) as service:
        asyncio.run(train(args, service))


if __name__ == "__main__":
    main()

"""Journey 10, many clients in one process, and sampling clients in other processes.

    .venv/bin/python examples/fan_out.py [--learning-rates 1e-3,5e-3,2e-2] [--workers 2]

1. A learning-rate sweep: one ServiceClient, one TrainingClient per rate, all trained at once (each
   client's requests stay in order; different clients do not wait for each other).
2. Chat while training: a thread keeps sampling from a saved checkpoint of the best run while the main
   thread goes on training it.
3. Fan-out to processes: the SamplingClient is pickled to ``spawn``-ed worker processes (never
   ``fork``: no SDK's background threads survive a fork), which re-attach to the same sampling session.
   The pickle carries no API key: each worker takes ``TINKER_API_KEY`` from its own environment.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import threading

import numpy as np
from _endpoint import corpus_text, corpus_windows, service_endpoint

import tinker_actors as tinker


def sample_in_worker(sampler: tinker.SamplingClient, prompt: list[int], seed: int) -> tuple[int, list[int]]:
    """Runs in a spawned process: the unpickled handle talks to the same sampling session."""
    params = tinker.SamplingParams(max_tokens=8, temperature=1.0, seed=seed)  # seeded: reproducible
    return os.getpid(), sampler.sample(tinker.ModelInput.from_ints(prompt), 1, params).result(timeout=60) \
        .sequences[0].tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", default="tiny-bpe")
    parser.add_argument("--learning-rates", default="1e-3,5e-3,2e-2")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="at most 3")
    args = parser.parse_args()
    rates = [float(rate) for rate in args.learning_rates.split(",")]

    with service_endpoint() as endpoint, \
            tinker.ServiceClient(base_url=endpoint.base_url, api_key=endpoint.api_key) as service:
        runs = {rate: service.create_lora_training_client(base_model=args.base_model, rank=4, seed=0).result()
                for rate in rates}
        tokenizer = next(iter(runs.values())).get_tokenizer()
        tokens = tokenizer.encode(corpus_text(), add_special_tokens=False)
        rng = np.random.default_rng(0)
        losses: dict[float, float] = {}
        for _ in range(args.steps):
            batch = corpus_windows(tokens, 32, 4, rng)  # the same batch for every rate: a fair sweep
            pending = {rate: tc.forward_backward(batch, "cross_entropy") for rate, tc in runs.items()}
            for rate, tc in runs.items():
                tc.optim_step(tinker.AdamParams(learning_rate=rate))
            losses = {rate: future.result(timeout=60).metrics["loss:sum"] / 128 for rate, future in pending.items()}
        for rate, loss in losses.items():
            print(f"lr {rate:<7g} final loss/token {loss:.3f}")
        best_rate = min(losses, key=lambda rate: losses[rate])
        best = runs[best_rate]
        print(f"best learning rate: {best_rate:g}")

        # Chat against a checkpoint while training continues on the same model.
        path = best.save_weights_for_sampler("chat").result(timeout=60).path
        chat = service.create_sampling_client(model_path=path).result()
        prompt = tokenizer.encode("The keeper", add_special_tokens=False)
        replies: list[str] = []

        def chat_loop() -> None:
            for _ in range(3):
                reply = chat.sample(tinker.ModelInput.from_ints(prompt), 1,
                                    tinker.SamplingParams(max_tokens=10, temperature=0.7)).result(timeout=60)
                replies.append(tokenizer.decode(reply.sequences[0].tokens))

        chatter = threading.Thread(target=chat_loop)
        chatter.start()
        for _ in range(3):
            best.forward_backward(corpus_windows(tokens, 32, 4, rng), "cross_entropy")
            best.optim_step(tinker.AdamParams(learning_rate=best_rate)).result(timeout=60)
        chatter.join(timeout=120)
        for reply in replies:
            print(f"chat: The keeper{reply!r}")

        # Fan out: pickle a sampling client to spawned processes, one prompt each. The expected (seeded)
        # answers come from a second sampling client on the same weights, in this process.
        # The pickle holds no API key: a spawned worker starts with a copy of this process's environment
        # and takes TINKER_API_KEY from it (already set when the service came from the environment).
        os.environ["TINKER_API_KEY"] = endpoint.api_key
        shared = service.create_sampling_client(model_path=path).result()
        reference = service.create_sampling_client(model_path=path).result()
        prompts = [tokenizer.encode(text, add_special_tokens=False) for text in ("The sea", "A light", "She")]
        prompts = prompts[:max(1, args.workers)]
        seeds = list(range(len(prompts)))
        expected = [sample_in_worker(reference, prompt, seed)[1] for prompt, seed in zip(prompts, seeds, strict=True)]
        with concurrent.futures.ProcessPoolExecutor(len(prompts),
                                                    mp_context=multiprocessing.get_context("spawn"),
                                                    max_tasks_per_child=1) as pool:
            answers = list(pool.map(sample_in_worker, [shared] * len(prompts), prompts, seeds))
        pids = {pid for pid, _ in answers}
        matches = sum(got == want for (_, got), want in zip(answers, expected, strict=True))
        print(f"{len(answers)} samples from {len(pids)} spawned processes; "
              f"{matches} of {len(answers)} match the same samples taken in this process")
    print("fan_out: ok")


if __name__ == "__main__":
    main()

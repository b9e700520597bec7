"""Custom loss with two regularizers, against the embedded local service (no API key, < 30 s).

    .venv/bin/python examples/custom_loss_regularizers.py

The base loss is a *focal-style* negative log-likelihood written as a numpy loss object (value and exact
gradient; no torch needed): tokens the model already predicts well count less. Two regularizers are
composed with it in parallel: an L2 pull of the target logprobs towards -1 nat (keeps the model from
becoming over-confident on the tiny corpus) and a KL penalty against the starting model, whose
reference logprobs come from a sampling client's ``compute_logprobs``. Each step sends a forward, then
a forward_backward with weights = -d(total)/d(logprobs), then the optim_step queued right behind it.
At the end it prints the gradient-norm history kept by the GradNormTracker actor.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from _endpoint import corpus_text, corpus_windows

import tinker_actors as tinker
from tinker_actors.local import LocalService
from tinker_actors.training.regularizers import L2, KLPenalty, Logprobs, Regularizer, TermValue, reference_logprobs


class FocalNLL:
    """Σ -(1 - p)^g * log p over the weighted target tokens, divided by their count (p = exp(logprob))."""

    def __init__(self, gamma: float = 1.0) -> None:
        self.gamma = gamma

    def value_and_grad(self, data: Sequence[tinker.Datum], logprobs: Logprobs) -> TermValue:
        count = sum(lp.size for lp in logprobs)
        value, grads = 0.0, []
        for lp in logprobs:
            p = np.exp(lp)
            focus = (1.0 - p) ** self.gamma
            value += float(np.sum(-focus * lp)) / count
            # d/dl [-(1 - e^l)^g * l] = g (1 - e^l)^(g-1) e^l l - (1 - e^l)^g
            grads.append((self.gamma * (1.0 - p) ** (self.gamma - 1.0) * p * lp - focus) / count)
        return TermValue(value, grads, {"mean_logprob": float(np.mean(np.concatenate(logprobs)))})


def main(steps: int = 20) -> None:
    started = time.monotonic()
    text = corpus_text()
    rng = np.random.default_rng(0)
    with LocalService() as local, tinker.ServiceClient(base_url=local.base_url, api_key=local.api_key) as svc:
        training = svc.create_lora_training_client("tiny-bpe", rank=8, seed=0).result()
        tokens = training.get_tokenizer().encode(text, add_special_tokens=False)
        reference_model = training.save_weights_and_get_sampling_client().result()
        adam = tinker.AdamParams(learning_rate=5e-3)

        print(f"{'step':>4} {'base loss':>10} {'l2':>9} {'kl':>9} {'total':>9}")
        for step in range(steps):
            batch = corpus_windows(tokens, 32, 4, rng)
            regularizers = [
                Regularizer("l2_to_-1", L2(center=-1.0), weight=0.002),
                Regularizer("kl_to_start", KLPenalty(reference_logprobs(reference_model, batch)), weight=0.01),
            ]
            result = training.forward_backward_custom(batch, FocalNLL(), regularizers=regularizers)
            training.optim_step(adam)  # queued behind the backward: it can never overtake it
            metrics = result.result(60).metrics
            print(f"{step:>4} {metrics['custom_loss/base']:>10.4f} "
                  f"{metrics['regularizer/l2_to_-1/contribution']:>9.4f} "
                  f"{metrics['regularizer/kl_to_start/contribution']:>9.4f} {metrics['custom_loss/total']:>9.4f}")

        print("\ngradient norms w.r.t. the target logprobs (from the GradNormTracker actor):")
        print(f"{'step':>4} {'base':>9} {'l2 (w)':>9} {'kl (w)':>9} {'total':>9} spike")
        for record in training.grad_norm_history():
            weighted = {term.name: term.weighted for term in record.report.terms}
            print(f"{record.step:>4} {record.report.base:>9.5f} {weighted['l2_to_-1']:>9.5f} "
                  f"{weighted['kl_to_start']:>9.5f} {record.report.total:>9.5f} {'yes' if record.spike else ''}")
        summary = training.grad_norm_summary()
        if summary is not None:
            print(f"\ntotal norm: mean {summary.total.mean:.5f}, std {summary.total.std:.5f}, "
                  f"max {summary.total.max:.5f}, spikes {summary.spikes}")
    print(f"done in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()

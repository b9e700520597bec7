"""The real backend: the tiny numpy causal LM of :mod:`tinker_actors.local.model`."""

from __future__ import annotations

from tinker_actors.local.engine.backend import (
    AdamSettings,
    Arrays,
    BaseModelDescription,
    DatumInput,
    GeneratedSequence,
    LoraSpec,
    SampleArgs,
    SampleOutput,
    SamplerEngine,
    StepOutput,
    Trainer,
)
from tinker_actors.local.model import (
    BASE_MODELS,
    DatumArrays,
    LoraTrainer,
    PrefixCache,
    PromptTargets,
    Sampler,
    get_base_model,
)

__all__ = ["NumpyBackend"]


class _NumpySampler:
    def __init__(self, sampler: Sampler) -> None:
        self._sampler = sampler

    def sample(self, args: SampleArgs) -> SampleOutput:
        targets = None
        if args.target_rows is not None and args.target_token_ids is not None:
            targets = PromptTargets(args.target_rows, args.target_token_ids)
        out = self._sampler.sample(
            args.prompt, num_samples=args.num_samples, max_tokens=args.max_tokens,
            temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, stop=args.stop,
            seed=args.seed, prompt_logprobs=args.prompt_logprobs, topk_prompt_logprobs=args.topk_prompt_logprobs,
            prompt_logprobs_last_n=args.prompt_logprobs_last_n, topk_sample_logprobs=args.topk_sample_logprobs,
            targets=targets, prompt_alt_tokens_k=args.prompt_alt_tokens_k)
        return SampleOutput(
            sequences=[GeneratedSequence(s.tokens, s.logprobs, s.stop_reason,
                                         None if s.topk is None else (s.topk.token_ids, s.topk.logprobs))
                       for s in out.sequences],
            prompt_logprobs=out.prompt_logprobs, topk_prompt_logprobs=out.topk_prompt_logprobs,
            target_logprobs=out.target_logprobs,
            alt_tokens=None if out.alt_tokens is None else (out.alt_tokens.tokens, out.alt_tokens.logprobs),
            prompt_cache_hit_tokens=out.prompt_cache_hit_tokens)


class _NumpyTrainer:
    def __init__(self, trainer: LoraTrainer, prefix_cache: PrefixCache) -> None:
        self._trainer = trainer
        self._prefix_cache = prefix_cache

    def run(self, batch: list[DatumInput], loss_fn: str, loss_fn_config: dict[str, float | str] | None,
            *, backward: bool) -> StepOutput:
        arrays = [DatumArrays(tokens=d.tokens, loss_inputs=d.loss_fn_inputs) for d in batch]
        if backward:
            result = self._trainer.forward_backward(arrays, loss_fn, loss_fn_config)
        else:
            result = self._trainer.forward(arrays, loss_fn, loss_fn_config)
        return StepOutput(outputs=result.outputs, metrics=result.metrics)

    def optim_step(self, adam: AdamSettings) -> dict[str, float]:
        return self._trainer.optim_step(adam.learning_rate, adam.beta1, adam.beta2, adam.eps,
                                        adam.weight_decay, adam.grad_clip_norm)

    def state(self, *, with_optimizer: bool) -> Arrays:
        return self._trainer.state(with_optimizer)

    def load_state(self, arrays: Arrays, *, with_optimizer: bool) -> None:
        self._trainer.load_state(arrays, with_optimizer)

    def sampler(self) -> SamplerEngine:
        return _NumpySampler(Sampler.from_trainer(self._trainer, prefix_cache=self._prefix_cache))


class NumpyBackend:
    """Real training and sampling on the tiny numpy model (CPU-heavy: called on worker threads).

    Its samplers share one :class:`PrefixCache` (``prefix_cache``): a prompt that starts like one sampled
    before under the same weights runs only its new tokens (``prompt_cache_hit_tokens``)."""

    instant = False

    def __init__(self, prefix_cache: PrefixCache | None = None) -> None:
        self.prefix_cache = prefix_cache if prefix_cache is not None else PrefixCache()

    def base_models(self) -> list[BaseModelDescription]:
        return [self.describe(name) for name in BASE_MODELS]

    def describe(self, base_model: str) -> BaseModelDescription:
        info = get_base_model(base_model)
        return BaseModelDescription(name=info.name, arch=info.arch, tokenizer_id=info.tokenizer_id,
                                    vocab_size=info.vocab_size, context_window=info.context_window)

    def new_trainer(self, base_model: str, lora: LoraSpec) -> Trainer:
        return _NumpyTrainer(LoraTrainer(base_model, lora.rank, lora.seed, lora.train_mlp, lora.train_attn,
                                         lora.train_unembed), self.prefix_cache)

    def new_sampler(self, base_model: str, lora_arrays: Arrays | None) -> SamplerEngine:
        return _NumpySampler(Sampler(base_model, lora_arrays, prefix_cache=self.prefix_cache))

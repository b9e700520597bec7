"""Journey 4, crash and resume: a training process dies; a new one continues from its last checkpoint.

    .venv/bin/python examples/resume.py [--steps 12] [--save-every 4] [--crash-at 7]

The parent starts (or finds) the service, then runs the trainer twice as a child process:

1. the first trainer saves its state every ``--save-every`` steps, appending ``{"step", "state_path"}``
   to ``checkpoints.jsonl``, and is killed (``os._exit``) at step ``--crash-at``, with requests in flight;
2. the second trainer reads the last line, checks the run's metadata with
   ``rest.get_training_run_by_tinker_path``, rebuilds the model *with its optimizer state* from it
   (``create_training_client_from_state_with_optimizer``) and continues at the recorded step.

Batches depend only on the step number, so the resumed run sees exactly the data it would have seen.
Finally it shows a warm start (``create_training_client_from_state``: weights only, fresh optimizer).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _endpoint import corpus_text, corpus_windows, service_endpoint

import tinker_actors as tinker

CRASH_EXIT_CODE = 17


def batch_for(step: int, tokens: list[int]) -> list[tinker.Datum]:
    return corpus_windows(tokens, 48, 8, np.random.default_rng(1000 + step))


def last_checkpoint(index: Path) -> dict[str, object] | None:
    if not index.exists():
        return None
    lines = [line for line in index.read_text().splitlines() if line.strip()]
    return json.loads(lines[-1]) if lines else None


def trainer(args: argparse.Namespace) -> None:
    """One training process: fresh or resumed, depending on checkpoints.jsonl."""
    index = Path(args.run_dir) / "checkpoints.jsonl"
    with tinker.ServiceClient(base_url=os.environ["TINKER_BASE_URL"], api_key=os.environ["TINKER_API_KEY"]) as svc:
        record = last_checkpoint(index)
        if record is None:
            training = svc.create_lora_training_client(base_model=args.base_model, rank=8, seed=0).result()
            start = 0
            print(f"[trainer] fresh run {training.model_id}")
        else:
            state_path = str(record["state_path"])
            run = svc.create_rest_client().get_training_run_by_tinker_path(state_path).result(timeout=60)
            assert run.base_model == args.base_model, f"checkpoint is for {run.base_model}, not {args.base_model}"
            training = svc.create_training_client_from_state_with_optimizer(state_path).result()
            start = int(str(record["step"]))
            print(f"[trainer] resumed {run.training_run_id} (rank {run.lora_rank}) at step {start} "
                  f"as {training.model_id}")
        tokens = training.get_tokenizer().encode(corpus_text(), add_special_tokens=False)
        adam = tinker.AdamParams(learning_rate=5e-3)
        for step in range(start, args.steps):
            fwd_bwd = training.forward_backward(batch_for(step, tokens), "cross_entropy")
            training.optim_step(adam)
            if step == args.crash_at:
                print(f"[trainer] crashing at step {step} with requests in flight", flush=True)
                os._exit(CRASH_EXIT_CODE)  # no cleanup at all: the worst case
            print(f"[trainer] step {step:>3}  loss/token {fwd_bwd.result(timeout=60).metrics['loss:sum'] / 384:.3f}")
            done = step + 1
            if done % args.save_every == 0 or done == args.steps:
                path = training.save_state(f"step-{done:04d}").result(timeout=60).path
                with index.open("a") as out:  # written only after the save succeeded
                    out.write(json.dumps({"step": done, "state_path": path}) + "\n")
                print(f"[trainer] saved {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", default="tiny-bpe")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--save-every", type=int, default=4)
    parser.add_argument("--crash-at", type=int, default=7)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    parser.add_argument("--trainer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trainer:
        trainer(args)
        return

    with service_endpoint() as endpoint, tempfile.TemporaryDirectory(prefix="resume-") as run_dir:
        env = {**os.environ, "TINKER_BASE_URL": endpoint.base_url, "TINKER_API_KEY": endpoint.api_key}
        command = [sys.executable, __file__, "--trainer", "--run-dir", run_dir, "--base-model", args.base_model,
                   "--steps", str(args.steps), "--save-every", str(args.save_every)]
        first = subprocess.run([*command, "--crash-at", str(args.crash_at)], env=env, timeout=120, check=False)
        print(f"first trainer exited with {first.returncode}")
        second = subprocess.run([*command, "--crash-at", "-1"], env=env, timeout=120, check=False)
        print(f"second trainer exited with {second.returncode}")
        if second.returncode != 0:
            sys.exit(second.returncode)
        record = last_checkpoint(Path(run_dir) / "checkpoints.jsonl")
        assert record is not None and record["step"] == args.steps, record

        with tinker.ServiceClient(base_url=endpoint.base_url, api_key=endpoint.api_key) as svc:
            warm = svc.create_training_client_from_state(str(record["state_path"])).result()  # weights only
            tokens = warm.get_tokenizer().encode(corpus_text(), add_special_tokens=False)
            loss = warm.forward(batch_for(0, tokens), "cross_entropy").result(timeout=60).metrics["loss:sum"] / 384
            print(f"warm start {warm.model_id} from step {record['step']}: loss/token on batch 0 is {loss:.3f}")
    print("resume: ok")


if __name__ == "__main__":
    main()

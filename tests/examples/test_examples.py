"""Every example runs end to end against the embedded local service, as a user would run it.

Each example is a subprocess (``python examples/<name>.py``) with a timeout; the tests check its exit
status and what it prints (a loss that falls, a reward that rises, a resumed run that replays the same
losses, ...). TINKER_BASE_URL / TINKER_API_KEY are removed from the environment so that the examples
always use their own local service here.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TIMEOUT_S = 60


@functools.cache
def run_example(name: str, *args: str) -> str:
    """Run ``examples/<name>.py`` once per argument list; return its stdout (fail on a non-zero exit)."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("TINKER_BASE_URL", "TINKER_API_KEY", "TINKER_SDK")}
    env["PYTHONUNBUFFERED"] = "1"
    done = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), *args], capture_output=True, text=True,
                          env=env, timeout=TIMEOUT_S, check=False, cwd=EXAMPLES.parent)
    assert done.returncode == 0, f"{name} exited with {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"
    return done.stdout


def numbers_after(label: str, output: str) -> list[float]:
    return [float(match) for match in re.findall(rf"{label}\s+([-+]?\d+\.\d+)", output)]


def test_hello_samples_from_a_base_model() -> None:
    output = run_example("hello")
    assert "tiny-byte" in output and "tiny-bpe" in output
    assert len(re.findall(r"sample \d: .*\(20 tokens, stop=length\)", output)) == 2
    assert "hello: ok" in output


def test_sl_basic_loss_falls_and_checkpoints_are_saved() -> None:
    output = run_example("sl_basic")
    losses = numbers_after("loss/token", output)
    assert len(losses) >= 5 and losses[-1] < losses[0] - 1.0, losses
    assert "loss/token fell from" in output
    assert len(re.findall(r"saved tinker://\S+/weights/step-\d{4}", output)) == 2
    assert re.search(r"final sampler weights: tinker://\S+/sampler_weights/final", output)


def test_sl_pipelined_test_nll_falls() -> None:
    output = run_example("sl_pipelined")
    nll = numbers_after("nll/token", output)
    assert len(nll) == 3 and nll[-1] < nll[0], nll
    assert "test nll/token fell from" in output
    assert "with 3 pairs in flight" in output
    assert len(re.findall(r"^sample: ", output, re.MULTILINE)) == 4


def test_resume_replays_the_same_losses_after_a_crash() -> None:
    output = run_example("resume")
    assert "first trainer exited with 17" in output and "second trainer exited with 0" in output
    resumed_at = re.search(r"resumed \S+ \(rank 8\) at step (\d+)", output)
    assert resumed_at is not None and resumed_at.group(1) == "4"
    by_step: dict[str, list[str]] = {}
    for step, loss in re.findall(r"\[trainer\] step\s+(\d+)\s+loss/token (\S+)", output):
        by_step.setdefault(step, []).append(loss)
    # Steps 4-6 ran before the crash and again after the resume with the optimizer state: same data,
    # same weights, same optimizer moments, so the same losses.
    for step in ("4", "5", "6"):
        assert len(by_step[step]) == 2 and by_step[step][0] == by_step[step][1], by_step
    assert "resume: ok" in output


def test_rl_loop_reward_rises() -> None:
    output = run_example("rl_loop")
    rewards = numbers_after("reward", output)
    assert len(rewards) == 12
    assert max(rewards[-3:]) > min(rewards[:3]) + 0.2, rewards
    assert len(re.findall(r"checkpoint tinker://\S+/sampler_weights/rl-\d{4}", output)) == 2


def test_rl_async_drops_stale_groups_and_stops_cleanly() -> None:
    output = run_example("rl_async")
    lags = re.findall(r"policy lag \[([\d, ]*)\]", output)
    assert len(lags) == 12  # 12 steps: with fewer, sampling noise sometimes left the reward flat
    assert all(int(lag) <= 1 for lags_of_step in lags for lag in lags_of_step.split(","))
    assert re.search(r"workers produced \d+ groups; all 6 stopped cleanly", output)
    rewards = numbers_after("reward", output)
    assert max(rewards[-2:]) > min(rewards[:2]), rewards


def test_kl_reference_starts_at_zero_and_grows() -> None:
    output = run_example("kl_reference")
    kls = numbers_after(r"kl\(policy\|\|ref\)", output)
    assert len(kls) == 8
    assert abs(kls[0]) < 1e-3, kls  # step 0: the policy is the reference
    assert kls[-1] > 0.05, kls


def test_checkpoints_rolling_cleanup_publish_ttl_and_export() -> None:
    output = run_example("checkpoints")
    assert "has 5 checkpoints" in output
    assert "deleted weights/step-0000" in output and "deleted weights/step-0001" in output
    assert "kept: sampler_weights/export, weights/step-0002, weights/step-0003" in output
    assert "public while published: True" in output
    assert re.search(r"sampler weights expire at \d{4}-", output)
    assert re.search(r"downloaded \d+ bytes", output) and "checkpoint.json" in output


@pytest.fixture(scope="module")
def fan_out_output() -> str:
    return run_example("fan_out")


def test_fan_out_sweep_chat_and_spawned_workers(fan_out_output: str) -> None:
    losses = numbers_after("final loss/token", fan_out_output)
    assert len(losses) == 3
    assert re.search(r"best learning rate: \S+", fan_out_output)
    assert len(re.findall(r"^chat: The keeper", fan_out_output, re.MULTILINE)) == 3
    assert "2 samples from 2 spawned processes" in fan_out_output


def test_fan_out_spawned_workers_get_their_own_samples(fan_out_output: str) -> None:
    assert "2 of 2 match the same samples taken in this process" in fan_out_output


def summary_of(output: str) -> dict[str, object]:
    line = next(line for line in output.splitlines() if line.startswith("SUMMARY "))
    summary: dict[str, object] = json.loads(line.removeprefix("SUMMARY "))
    return summary


def test_official_sdk_compat_on_tinker_actors() -> None:
    summary = summary_of(run_example("official_sdk_compat", "--tinker-actors"))
    assert summary["loss_fell"] is True and summary["ephemeral_equals_named"] is True
    assert summary["logprobs_shape"] == [60, 19]
    assert summary["compute_logprobs"] == [8, None]


def test_official_sdk_compat_same_code_same_shapes_on_both_sdks() -> None:
    pytest.importorskip("tinker", reason="the official tinker SDK (compat extra) is not installed")
    official = summary_of(run_example("official_sdk_compat"))
    actors = summary_of(run_example("official_sdk_compat", "--tinker-actors"))
    assert "SDK: tinker 0.6.3" in run_example("official_sdk_compat")
    assert official == actors


def test_dpo_learns_the_preferences() -> None:
    output = run_example("dpo")
    accuracy = re.search(r"preference accuracy: (\d\.\d+) -> (\d\.\d+)", output)
    assert accuracy is not None and float(accuracy.group(2)) == 1.0
    losses = [float(x) for x in re.findall(r"^\s+\d+\s+(\d\.\d+)", output, re.MULTILINE)]  # the loss column
    assert losses[-1] < 0.1 < losses[0]


def test_quickstart_the_main_job_learns_saves_and_resumes() -> None:
    """`make demo` runs this: held-out loss falls, a checkpoint is saved and listed, training resumes from it."""
    output = run_example("quickstart")
    rows = [line.split() for line in output.splitlines() if re.fullmatch(r"\s*\d+\s+\d+\.\d+\s+\d+\.\d+\s*", line)]
    held_out = [float(row[2]) for row in rows]
    assert len(held_out) >= 2 and held_out[-1] < held_out[0] - 1.0, output
    saved = re.search(r"saved:\s+(tinker://\S+)", output)
    assert saved is not None and saved.group(1) in output.split("checkpoints:")[1]
    assert re.search(r"resumed training from it as \S+:train:1", output)
    assert "TrainingClientActor running" in output and "done in" in output

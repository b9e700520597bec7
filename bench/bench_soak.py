"""Soak: a training loop with sampling, for minutes or hours, under everything that goes wrong in a long run.

The local service runs in a child process (so each process's memory is its own). This process trains a
LoRA model on it (``forward_backward`` + ``optim_step``, a few steps in flight) and samples beside it, with
periodic checkpoints and recovery on and token exchange on (short-lived tokens), while a chaos thread

* adds random fault rules: 5xx, 429, connections dropped before or after the request ran, slow answers,
  "paused" polls, failed token exchanges;
* kills the TrainingClient's or the SamplingClient's actor (its supervisor restarts it);
* loses the model (dropped, or corrupted, by the service) and restarts the whole service (every loaded
  model lost, checkpoints kept): recovery recreates the model from the last checkpoint;
* and the loop swaps its sampler for one on fresh weights every few steps, closing the old one.

Every ``--interval`` seconds it prints a row and appends it to ``--jsonl``: RSS, threads, open file
descriptors, actors, tasks on the I/O loop and futures in flight (of this process and the service's),
latency p50/p99 per endpoint (``ServiceClient.stats()``), steps acknowledged to the loop vs applied by the
service (its optimizer step counter), recoveries, restarts, kills, faults. At the end it checks the ledger
(every acknowledged ``optim_step`` applied exactly once by the service, every rolled-back step reported by
recovery, no sequenced request executed twice) and compares a late window of the figures with an early one.

    .venv/bin/python bench/bench_soak.py                                    # 10 minutes
    nice -n 10 .venv/bin/python bench/bench_soak.py --seconds 3600 --jsonl soak.jsonl
    .venv/bin/python bench/bench_soak.py --seconds 120 --interval 5 --check  # exit 1 if a check fails

Results and how to read them: docs/performance.md, "Soak". The env-gated test ``tests/soak`` runs this
script and asserts the same figures with its own bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

BASE_MODEL = "tiny-byte"
TEXT = list(b"a long run through every kind of trouble, and every caller answered. ")
TABLE_ENDPOINTS = ("forward_backward", "optim_step", "asample", "retrieve_future")

# ---- the service, in a child process ----------------------------------------------------------------


def serve(options: dict[str, Any]) -> None:
    """Child process: run a LocalService with ``options`` and obey one JSON command per stdin line."""
    from tinker_actors.local import FaultRule, LocalService

    baseline: list[Any] = []  # the first tracemalloc snapshot, when --trace-server-memory asked for one
    if options.pop("trace_memory", False):
        tracemalloc.start(12)
    with LocalService(**options) as service:
        _emit({"base_url": service.base_url, "api_key": service.api_key})
        for line in sys.stdin:
            command = json.loads(line)
            op = command["op"]
            try:
                if op == "fault":
                    answer: Any = {"id": service.faults.add(FaultRule(**command["rule"]))}
                elif op == "remove":
                    answer = {"removed": service.faults.remove(command["id"])}
                elif op == "restart":
                    service.restart()
                    answer = {"restarts": service.restarts}
                elif op == "drop_model":
                    answer = {"lost": service.faults.drop_model(command["model_id"])}
                elif op == "corrupt_model":
                    answer = {"lost": service.faults.corrupt_model(command["model_id"])}
                elif op == "models":
                    answer = [state.to_json() for state in service.faults.model_states()]
                elif op == "requests":
                    counts = service.request_counts()
                    answer = {"endpoints": counts["endpoints"], "tracked": len(counts["sequenced"]),
                              "twice": [row for row in counts["sequenced"] if row["executed"] > 1]}
                elif op == "auth":
                    answer = service.auth_counts()
                elif op == "rules":
                    answer = service.faults.list_rules()
                elif op == "memory":
                    answer = _memory_growth(baseline)
                elif op == "stop":
                    _emit({"stopped": True})
                    return
                else:
                    answer = {"error": f"unknown op {op!r}"}
            except Exception as error:  # reported to the driver, which decides
                answer = {"error": repr(error)}
            _emit(answer)


def _memory_growth(baseline: list[Any], top: int = 12) -> list[str]:
    """Where the service's memory grew since the first call (tracemalloc; empty when it is not tracing)."""
    if not tracemalloc.is_tracing():
        return []
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    if not baseline:
        baseline.append(snapshot)
        return []
    lines = []
    for stat in snapshot.compare_to(baseline[0], "traceback")[:top]:
        frames = " <- ".join(f"{Path(frame.filename).name}:{frame.lineno}" for frame in stat.traceback[:6])
        lines.append(f"{stat.size_diff / 1024:+.0f} KiB in {stat.count_diff:+d} blocks: {frames}")
    return lines


def _emit(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


class ServiceProcess:
    """The driver's side of :func:`serve`: start it, send it commands (thread-safe), read its /proc figures."""

    def __init__(self, options: dict[str, Any]) -> None:
        env = dict(os.environ)
        env.pop("TINKER_API_KEY", None)
        self._process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve",
                                          json.dumps(options)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         text=True, env=env)
        self._lock = threading.Lock()
        info = self._read()
        self.base_url: str = info["base_url"]
        self.api_key: str = info["api_key"]

    @property
    def pid(self) -> int:
        return self._process.pid

    def _read(self) -> Any:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the service process ended (exit code {self._process.poll()})")
        return json.loads(line)

    def call(self, op: str, **arguments: Any) -> Any:
        assert self._process.stdin is not None
        with self._lock:
            self._process.stdin.write(json.dumps({"op": op, **arguments}) + "\n")
            self._process.stdin.flush()
            answer = self._read()
        if isinstance(answer, dict) and "error" in answer:
            raise RuntimeError(f"service command {op} failed: {answer['error']}")
        return answer

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.call("stop")
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


# ---- process figures (/proc) --------------------------------------------------------------------------


def process_figures(pid: int | str = "self") -> dict[str, float]:
    """RSS (MB), threads, open file descriptors and CPU seconds of a process, from /proc (Linux)."""
    figures: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            figures["rss_mb"] = int(line.split()[1]) / 1024
        elif line.startswith("Threads:"):
            figures["threads"] = int(line.split()[1])
    figures["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    figures["cpu_s"] = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return figures


# ---- the run -------------------------------------------------------------------------------------------


@dataclass
class Settings:
    seconds: float
    interval: float
    seed: int
    protocol: str
    token_lifetime: float
    steps_per_second: float
    pipeline: int
    samples_in_flight: int
    samples_per_second: float
    sampler_every: int
    checkpoint_every: int
    fault_every: float
    kill_every: float
    model_fault_every: float
    restart_every: float
    warmup: float
    result_timeout: float
    stall_after: float
    kill_targets: tuple[str, ...]
    trace_server_memory: bool
    trace_client_memory: bool


@dataclass
class Ledger:
    """What the training loop was told about each step (steps numbered from 1 in the order of optim_step)."""

    submitted: int = 0
    acked: Any = None  # a StepSet (a few ranges): the loop's own memory stays flat however long it runs
    rolled_back: set[int] = field(default_factory=set)  # a call of the step raised StepRolledBackError
    not_sent: set[int] = field(default_factory=set)     # the optim_step was never sent (NotSentError)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)  # other outcomes, by type
    hung: int = 0


@dataclass
class Counts:
    kills: dict[str, int] = field(default_factory=lambda: {"training": 0, "sampling": 0})
    faults: int = 0
    model_faults: int = 0
    restarts: int = 0
    sampler_swaps: int = 0
    not_sent: collections.Counter[str] = field(default_factory=collections.Counter)  # calls a kill stopped
    samples: collections.Counter[str] = field(default_factory=collections.Counter)
    chaos_errors: collections.Counter[str] = field(default_factory=collections.Counter)


class Soak:
    def __init__(self, settings: Settings, out: IO[str] | None) -> None:
        import tinker_actors as tinker
        from tinker_actors.config import Config, PollBackoff, RetryPolicy

        self.settings = settings
        self.out = out
        self.rng = random.Random(settings.seed)
        self.lock = threading.Lock()
        from tinker_actors.recovery import StepSet

        self.ledger = Ledger(acked=StepSet())
        self.counts = Counts()
        self.rows: list[dict[str, Any]] = []
        self.stopping = threading.Event()
        self.chaos_stopped = threading.Event()
        self.step_futures: dict[int, tuple[Any, Any]] = {}  # step -> (forward_backward, optim_step), unresolved
        self.samples_pending = 0
        self.started = time.monotonic()
        self.server = ServiceProcess({
            "api_key": "tml-soak-admin", "long_poll_s": 1.0, "gap_timeout_s": 1.0, "result_ttl_s": 120.0,
            "session_timeout_s": 120.0, "fault_seed": settings.seed, "token_lifetime": settings.token_lifetime,
            "protocol_flags": {"pjwt_auth_enabled": True}, "trace_memory": settings.trace_server_memory})
        self.memory_baseline_taken = False
        self.client_memory_baseline: list[Any] = []
        if settings.trace_client_memory:
            tracemalloc.start(12)
        self.config = Config(
            api_key=self.server.api_key, base_url=self.server.base_url, protocol=settings.protocol,
            heartbeat_interval=2.0, no_progress_timeout=60.0,
            retry=RetryPolicy(max_retries=12, base_delay=0.05, max_delay=1.0, deadline=90.0),
            poll_backoff=PollBackoff(initial=0.02, max=0.25))
        self.tinker = tinker
        self.before = process_figures()
        self.client = tinker.ServiceClient(config=self.config)
        self.sampler: Any = None
        self.next_sampler: Any = None

    # -- the training loop (main thread) --

    def train(self) -> None:
        from tinker_actors.recovery import CheckpointPolicy, RecoveryPolicy

        tinker = self.tinker
        training = self.training = client_of(self.client.create_lora_training_client(base_model=BASE_MODEL, rank=2))
        training.enable_periodic_checkpoints(CheckpointPolicy(every_steps=self.settings.checkpoint_every,
                                                              keep_last=2))
        training.enable_recovery(RecoveryPolicy(max_attempts=20, initial_wait=0.2, max_wait=5.0))
        self.sampler = client_of(self.client.create_sampling_client(base_model=BASE_MODEL))
        threads = [threading.Thread(target=self._sampling, name="soak-sampling", daemon=True),
                   threading.Thread(target=self._chaos, name="soak-chaos", daemon=True),
                   threading.Thread(target=self._monitor, name="soak-monitor", daemon=True)]
        self.started = time.monotonic()
        for thread in threads:
            thread.start()
        adam = tinker.AdamParams(learning_rate=1e-3)
        data = [datum(TEXT[i:i + 24]) for i in range(0, 40, 8)]
        period = 1.0 / self.settings.steps_per_second
        started = self.started
        deadline = started + self.settings.seconds
        next_step_at = started
        pending_swap: Any = None
        pending: collections.deque[int] = collections.deque()
        step = 0
        while time.monotonic() < deadline or (not self.chaos_stopped.is_set()):
            if time.monotonic() >= deadline:
                self.stopping.set()  # chaos winds down; the loop goes on until it has
            step += 1
            with self.lock:
                self.ledger.submitted = step
                self.step_futures[step] = (training.forward_backward([data[step % len(data)]], "cross_entropy"),
                                           training.optim_step(adam))
            pending.append(step)
            while len(pending) >= self.settings.pipeline:
                self._settle(pending.popleft())
            if step % self.settings.sampler_every == 0 and pending_swap is None:
                pending_swap = training.save_weights_and_get_sampling_client_future()
            if pending_swap is not None and pending_swap.done():
                try:
                    self.next_sampler = pending_swap.result(timeout=1)
                except Exception as error:
                    with self.lock:
                        self.counts.samples[f"swap:{type(error).__name__}"] += 1
                pending_swap = None
            # Paced, without catching up after a pause (a burst would only measure the burst).
            next_step_at = max(next_step_at + period, time.monotonic())
            time.sleep(max(0.0, next_step_at - time.monotonic()))
        while pending:
            self._settle(pending.popleft())
        last = step
        for step in range(last + 1, last + 4):  # a few calm steps: a model lost at the very end is recovered
            with self.lock:
                self.ledger.submitted = step
                self.step_futures[step] = (training.forward_backward([data[0]], "cross_entropy"),
                                           training.optim_step(adam))
            self._settle(step)
        if pending_swap is not None:
            with contextlib.suppress(Exception):
                pending_swap.result(timeout=self.settings.result_timeout).close()
        for thread in threads:
            thread.join(timeout=self.settings.result_timeout)

    def _settle(self, step: int) -> None:
        """Wait for both calls of ``step`` and write what the loop learned into the ledger."""
        from tinker_actors.errors import NotSentError, TinkerTimeoutError
        from tinker_actors.recovery import StepRolledBackError

        with self.lock:
            backward, update = self.step_futures[step]
        # What each call ended with: "ok", "rolled_back", "not_sent" (never left the client: a killed actor's
        # queue), "hung" (no answer within the timeout) or the type of any other error.
        ended: dict[str, str] = {}
        deadline = time.monotonic() + self.settings.result_timeout  # one wait for the step, not one per call
        for name, future in (("forward_backward", backward), ("optim_step", update)):
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
                ended[name] = "ok"
            except StepRolledBackError as error:
                # Steps are numbered in the order of the optim_step calls: the same number as ours, unless a call
                # never reached the client's actor (then everything after it is off by one: an error).
                ended[name] = "rolled_back" if error.step == step else f"StepRolledBackError(step {error.step})"
            except TinkerTimeoutError:
                ended[name] = "hung"
            except NotSentError:
                ended[name] = "not_sent"
            except Exception as error:
                ended[name] = type(error).__name__
        expected = {"ok", "rolled_back", "not_sent"}
        with self.lock:
            del self.step_futures[step]
            for name, how in ended.items():
                if how not in expected:
                    self.ledger.errors[f"{name}:{how}"] += 1
                elif how == "not_sent":
                    self.counts.not_sent[name] += 1
            if "rolled_back" in ended.values():
                self.ledger.rolled_back.add(step)
            elif ended["optim_step"] == "ok":
                self.ledger.acked = self.ledger.acked.with_step(step)
            elif ended["optim_step"] == "not_sent":
                self.ledger.not_sent.add(step)
            elif ended["optim_step"] == "hung":
                self.ledger.hung += 1

    # -- sampling (its own thread) --

    def _sampling(self) -> None:
        from tinker_actors.errors import TinkerTimeoutError

        tinker = self.tinker
        prompt = tinker.ModelInput.from_ints(TEXT[:6])
        params = tinker.SamplingParams(max_tokens=4, temperature=1.0)
        period = self.settings.samples_in_flight / self.settings.samples_per_second
        while not self.stopping.is_set():
            round_started = time.monotonic()
            if self.next_sampler is not None:  # fresh weights: the old sampler's samples have all ended
                old, self.sampler, self.next_sampler = self.sampler, self.next_sampler, None
                old.close()
                with self.lock:
                    self.counts.sampler_swaps += 1
            sampler = self.sampler
            futures = [sampler.sample(prompt, 1, params) for _ in range(self.settings.samples_in_flight)]
            with self.lock:
                self.samples_pending = len(futures)
            deadline = time.monotonic() + self.settings.result_timeout  # one wait for the round
            for future in futures:
                try:
                    future.result(timeout=max(0.0, deadline - time.monotonic()))
                    key = "ok"
                except TinkerTimeoutError:
                    key = "hung"
                except Exception as error:  # a killed actor's samples: EXPECTED_SAMPLE_OUTCOMES
                    key = type(error).__name__
                with self.lock:
                    self.counts.samples[key] += 1
                    self.samples_pending -= 1
            time.sleep(max(0.0, round_started + period - time.monotonic()))
        if self.next_sampler is not None:
            self.next_sampler.close()
        self.sampler.close()

    # -- chaos (its own thread) --

    def _chaos(self) -> None:
        settings, rng = self.settings, self.rng
        clock = time.monotonic()
        every = {"fault": settings.fault_every, "kill": settings.kill_every, "model": settings.model_fault_every,
                 "restart": settings.restart_every}
        every = {kind: mean for kind, mean in every.items() if mean > 0}  # 0: that kind of trouble is off
        next_at = {kind: clock + rng.expovariate(1 / mean) for kind, mean in every.items()}
        armed: collections.deque[tuple[float, int]] = collections.deque()  # (added at, rule id)
        while not self.stopping.wait(0.1):
            now = time.monotonic()
            while armed and now - armed[0][0] > 20.0:  # spent or not, a rule lives 20 s (the list stays short)
                self._quietly("remove", self.server.call, "remove", id=armed.popleft()[1])
            for kind, at in list(next_at.items()):
                if now < at:
                    continue
                # Kills of the two clients' actors count against their supervisor's restart intensity (more than
                # 3 restarts in 5 s make it give up, by design: docs/concepts/failures.md): kept 2.5 s apart.
                next_at[kind] = now + max(2.5 if kind == "kill" else 0.5, rng.expovariate(1 / every[kind]))
                if kind == "fault":
                    answer = self._quietly("fault", self.server.call, "fault", rule=random_fault(rng))
                    if answer is not None:
                        armed.append((now, answer["id"]))
                        with self.lock:
                            self.counts.faults += 1
                elif kind == "kill":
                    self._kill(rng.choice(settings.kill_targets))
                elif kind == "model":
                    self._lose_model(rng)
                else:
                    if self._quietly("restart", self.server.call, "restart") is not None:
                        with self.lock:
                            self.counts.restarts += 1
        while armed:
            self._quietly("remove", self.server.call, "remove", id=armed.popleft()[1])
        self.chaos_stopped.set()

    def _kill(self, which: str) -> None:
        client = self.training if which == "training" else self.sampler
        try:
            client.actor.resolve(5.0).proxy().crash(RuntimeError("soak: killed on purpose")).get(timeout=5)
        except RuntimeError as error:
            if "killed on purpose" not in str(error):
                self._chaos_error(f"kill:{type(error).__name__}")
                return
        except Exception as error:
            self._chaos_error(f"kill:{type(error).__name__}")
            return
        with self.lock:
            self.counts.kills[which] += 1

    def _lose_model(self, rng: random.Random) -> None:
        how = rng.choice(("drop_model", "corrupt_model", "drop_on_optim", "corrupt_on_forward_backward"))
        if how in ("drop_model", "corrupt_model"):
            answer = self._quietly(how, self.server.call, how, model_id=self.training.model_id)
            lost = answer is not None and answer["lost"]
        else:
            action, endpoint = ("drop_model", "optim_step") if how == "drop_on_optim" else (
                "corrupt_model", "forward_backward")
            lost = self._quietly(how, self.server.call, "fault",
                                 rule={"endpoint": endpoint, "action": action, "times": 1}) is not None
        if lost:
            with self.lock:
                self.counts.model_faults += 1

    def _quietly(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except Exception as error:
            self._chaos_error(f"{what}:{type(error).__name__}")
            return None

    def _chaos_error(self, key: str) -> None:
        with self.lock:
            self.counts.chaos_errors[key] += 1

    # -- figures (their own thread) --

    def _monitor(self) -> None:
        started = self.started
        last_cpu, last_server_cpu, last_at = self.before["cpu_s"], 0.0, started
        last_samples = 0
        next_at = started + self.settings.interval
        printed_header = False
        progress = ((-1, -1), started)  # ((steps acknowledged, samples ok), when both last changed)
        stall_reported = False
        while True:
            finished = self.chaos_stopped.wait(max(0.0, next_at - time.monotonic()))
            next_at += self.settings.interval
            now = time.monotonic()
            row = self.sample_row(now - started)
            elapsed = max(now - last_at, 1e-9)
            row["cpu_pct"] = round(100 * (row["cpu_s"] - last_cpu) / elapsed, 1)
            row["server_cpu_pct"] = round(100 * (row["server"]["cpu_s"] - last_server_cpu) / elapsed, 1)
            samples_done = sum(self.counts.samples.values())
            row["samples_per_s"] = round((samples_done - last_samples) / elapsed, 1)
            last_cpu, last_server_cpu, last_at, last_samples = (row["cpu_s"], row["server"]["cpu_s"], now,
                                                                samples_done)
            self.rows.append(slim(row))  # what the flatness check reads (a full row is kept in --jsonl)
            if self.out is not None:
                self.out.write(json.dumps(row) + "\n")
                self.out.flush()
            if not printed_header:
                print(TABLE_HEADER, flush=True)
                printed_header = True
            print(table_row(row), flush=True)
            if row["t"] >= self.settings.warmup:
                if self.settings.trace_server_memory and not self.memory_baseline_taken:
                    self.memory_baseline_taken = self._quietly("memory", self.server.call, "memory") is not None
                if self.settings.trace_client_memory and not self.client_memory_baseline:
                    _memory_growth(self.client_memory_baseline)
            done = (row["steps"]["acked"], row["samples"].get("ok", 0))
            if done[0] != progress[0][0] and done[1] != progress[0][1]:  # training and sampling both moved on
                progress, stall_reported = (done, now), False
            elif now - progress[1] >= self.settings.stall_after and not stall_reported:
                stall_reported = True
                self.report_stall(now - progress[1])
            if finished:
                return

    def sample_row(self, t: float) -> dict[str, Any]:
        import pykka

        row: dict[str, Any] = {"t": round(t, 1), **process_figures()}
        row["actors"] = len(pykka.ActorRegistry.get_all())
        row["io_tasks"] = self._io_tasks()
        row["server"] = process_figures(self.server.pid)
        with self.lock:
            ledger = self.ledger
            row["futures_in_flight"] = 2 * len(self.step_futures) + self.samples_pending
            row["steps"] = {"submitted": ledger.submitted, "acked": len(ledger.acked),
                            "rolled_back": len(ledger.rolled_back), "not_sent": len(ledger.not_sent),
                            "errors": sum(ledger.errors.values()), "hung": ledger.hung}
            counts = self.counts
            row["chaos"] = {"faults": counts.faults, "model_faults": counts.model_faults,
                            "restarts": counts.restarts, "kills": sum(counts.kills.values()),
                            "sampler_swaps": counts.sampler_swaps, "errors": sum(counts.chaos_errors.values())}
            row["samples"] = dict(counts.samples)
        try:
            reports = self.training.recovery_status().recoveries
        except Exception as error:  # the client is gone (its supervisor gave up): the row says so
            row["client_error"] = repr(error)
            reports = ()
        row["recoveries"] = len(reports)
        row["steps"]["applied"] = self.server_step(self.training.model_id)
        row["steps"]["reported_rolled_back"] = len({s for r in reports for s in r.rolled_back_steps})
        row["latency"] = {name: {"count": stats.count, "errors": stats.errors, "retries": stats.retries,
                                 "p50_ms": round(stats.p50 * 1000, 1), "p99_ms": round(stats.p99 * 1000, 1)}
                          for name, stats in sorted(self.client.stats().items())}
        return row

    def report_stall(self, seconds: float) -> None:
        """Training or sampling made no progress for ``seconds``: print (and record) what the client and the
        service are doing."""
        async def stacks() -> list[str]:
            described = []
            for task in asyncio.all_tasks():
                frames = task.get_stack(limit=8)
                where = " <- ".join(f"{Path(f.f_code.co_filename).name}:{f.f_lineno} {f.f_code.co_name}"
                                    for f in reversed(frames))
                described.append(f"{task.get_name()}: {where}")
            return described

        with self.lock:
            waiting = sorted(self.step_futures)
        stall: dict[str, Any] = {"t": round(time.monotonic() - self.started, 1), "seconds": round(seconds, 1),
                                 "steps_waiting": waiting, "model_id": self.training.model_id}
        for what, call in (("recovery", lambda: repr(self.training.recovery_status())),
                           ("checkpoints", lambda: repr(self.training.checkpoint_status())),
                           ("models", lambda: self.server.call("models")),
                           ("rules", lambda: self.server.call("rules")),
                           ("tasks", lambda: asyncio.run_coroutine_threadsafe(
                               stacks(), self.client.runtime.ioloop.loop).result(timeout=5)),
                           ("tree", self.client.runtime.tree)):
            try:
                stall[what] = call()
            except Exception as error:
                stall[what] = repr(error)
        print(f"STALL: training or sampling made no progress for {seconds:.0f} s\n"
              + json.dumps(stall, indent=1, default=str), file=sys.stderr, flush=True)
        if self.out is not None:
            self.out.write(json.dumps({"stall": stall}, default=str) + "\n")
            self.out.flush()

    def _io_tasks(self) -> int:
        async def count() -> int:
            return len(asyncio.all_tasks())

        loop = self.client.runtime.ioloop.loop
        try:
            return asyncio.run_coroutine_threadsafe(count(), loop).result(timeout=5)
        except Exception:
            return -1

    def server_step(self, model_id: str) -> int | None:
        """The service's optimizer step counter of ``model_id`` (None: not in memory, or not readable now)."""
        try:
            for state in self.server.call("models"):
                if state["model_id"] == model_id:
                    step: int | None = state["optimizer_step"]
                    return step
        except Exception:
            return None
        return None

    # -- the end --

    def finish(self) -> dict[str, Any]:
        """The ledger check, the service's duplicate check, and the figures after closing the client."""
        training = self.training
        deadline = time.monotonic() + self.settings.result_timeout
        while training.recovery_status().recovering and time.monotonic() < deadline:
            time.sleep(0.1)
        status = training.recovery_status()
        reported = {step for report in status.recoveries for step in report.rolled_back_steps}
        ledger = self.ledger
        applied = self.server_step(training.model_id)
        acked = set(ledger.acked)
        survived = acked - reported
        everything = set(range(1, ledger.submitted + 1))
        unaccounted = sorted(everything - acked - reported - ledger.not_sent)
        requests = self.server.call("requests")
        try:
            checkpoints = training.checkpoint_status()
        except Exception as error:
            self._chaos_error(f"checkpoint_status:{type(error).__name__}")
            checkpoints = None
        summary: dict[str, Any] = {
            "seconds": self.rows[-1]["t"] if self.rows else 0.0,
            "steps_submitted": ledger.submitted,
            "steps_acked": len(ledger.acked),
            "steps_rolled_back_reported": len(reported),
            "steps_acked_then_rolled_back": len(acked & reported),
            "steps_failed_rolled_back": len(ledger.rolled_back),
            "rolled_back_not_reported": sorted(ledger.rolled_back - reported),
            "steps_not_sent": len(ledger.not_sent),
            "calls_not_sent": dict(self.counts.not_sent),
            "steps_unaccounted": unaccounted[:20],
            "step_errors": dict(ledger.errors),
            "hung": ledger.hung,
            "applied_by_service": applied,
            "expected_applied": len(survived),
            "executed_twice": requests["twice"][:20],
            "recoveries": len(status.recoveries),
            "recovery_failed": repr(status.failed) if status.failed is not None else None,
            "checkpoints_saved": checkpoints.saves if checkpoints is not None else 0,
            "checkpoint_failures": checkpoints.save_failures if checkpoints is not None else 0,
            "kills": dict(self.counts.kills),
            "faults": self.counts.faults,
            "model_faults": self.counts.model_faults,
            "restarts": self.counts.restarts,
            "sampler_swaps": self.counts.sampler_swaps,
            "samples": dict(self.counts.samples),
            "chaos_errors": dict(self.counts.chaos_errors),
            "service_requests": {name: {"received": counts["received"], "executed": counts["executed"]}
                                 for name, counts in requests["endpoints"].items() if counts["received"]},
            "auth": self.server.call("auth"),
            "tree_gave_up": "gave_up" in self.client.runtime.tree(),
        }
        if self.memory_baseline_taken:
            summary["server_memory_growth"] = self.server.call("memory")
        if self.client_memory_baseline:
            summary["client_memory_growth"] = _memory_growth(self.client_memory_baseline)
        summary["ledger_exact"] = bool(
            applied == len(survived) and not unaccounted and not summary["rolled_back_not_reported"]
            and not requests["twice"] and ledger.hung == 0 and not ledger.errors)
        self.client.close()
        time.sleep(1.0)
        after = process_figures()
        summary["threads_before_client"] = self.before["threads"]
        summary["threads_after_close"] = after["threads"]
        summary["fds_before_client"] = self.before["fds"]
        summary["fds_after_close"] = after["fds"]
        summary["flatness"] = flatness(self.rows, self.settings.warmup)
        self.server.stop()
        return summary


def client_of(created: Any) -> Any:
    """The client a ``create_*`` call gave: the client itself, or (protocol 0.38's style) a future of it."""
    from tinker_actors.futures import APIFuture

    return created.result(timeout=120) if isinstance(created, APIFuture) else created


def datum(tokens: list[int]) -> Any:
    import tinker_actors as tinker

    return tinker.Datum(model_input=tinker.ModelInput.from_ints(tokens[:-1]),
                        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)})


def random_fault(rng: random.Random) -> dict[str, Any]:
    """One rule the client is expected to ride out (retried, re-polled, re-sent under the same seq id)."""
    endpoint = rng.choice(("forward_backward", "optim_step", "asample", "retrieve_future", "session_heartbeat",
                           "save_weights", "save_weights_for_sampler", "auth_token"))
    kind = rng.choice(("5xx", "5xx", "429", "drop", "drop_after", "slow", "paused"))
    times = rng.randint(1, 3)
    if kind == "5xx":
        return {"endpoint": endpoint, "status": rng.choice((500, 502, 503)), "times": times}
    if kind == "429":
        return {"endpoint": endpoint, "status": 429, "retry_after": 0.2, "times": times}
    if kind == "drop":
        return {"endpoint": endpoint, "action": "drop", "times": 1}
    if kind == "drop_after":
        return {"endpoint": endpoint, "action": "drop_after", "times": 1}
    if kind == "slow":
        return {"endpoint": endpoint, "action": "delay", "delay_s": round(rng.uniform(0.2, 2.0), 2), "times": times}
    return {"endpoint": "retrieve_future", "status": 408, "queue_state": "paused_capacity", "times": times}


def slim(row: dict[str, Any]) -> dict[str, Any]:
    """The figures of a row the flatness check compares."""
    kept = {key: row[key] for key in ("t", "rss_mb", "threads", "fds", "actors", "io_tasks", "futures_in_flight")}
    kept["server"] = {key: row["server"][key] for key in ("rss_mb", "threads", "fds")}
    return kept


# ---- flatness ---------------------------------------------------------------------------------------------


def windows(rows: list[dict[str, Any]], warmup: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """An early and a late window after ``warmup`` s, each a fifth of what follows the warm-up (two rows or more)."""
    after = [row for row in rows if row["t"] >= warmup]
    size = max(2, len(after) // 5)
    return after[:size], after[-size:]


def flatness(rows: list[dict[str, Any]], warmup: float) -> dict[str, Any]:
    """What would grow with a leak, late against early: RSS as the medians of the early and the late window;
    counts (threads, fds, actors, tasks, futures) as the highest of the first half after the warm-up against the
    highest of the late window (a count dips while the service restarts, so one early window can be low)."""
    early, late = windows(rows, warmup)
    after = [row for row in rows if row["t"] >= warmup]
    first_half = after[:max(2, len(after) // 2)]
    if not early or not late:
        return {}

    def pick(window: list[dict[str, Any]], key: str) -> list[float]:
        return [float(row["server"][key[7:]] if key.startswith("server_") else row[key]) for row in window]

    result: dict[str, Any] = {"early_t": [early[0]["t"], early[-1]["t"]], "late_t": [late[0]["t"], late[-1]["t"]]}
    for key in ("rss_mb", "server_rss_mb"):
        result[key] = {"early": round(statistics.median(pick(early, key)), 1),
                       "late": round(statistics.median(pick(late, key)), 1)}
        result[key]["growth"] = round(result[key]["late"] - result[key]["early"], 1)
    for key in ("threads", "fds", "actors", "io_tasks", "futures_in_flight", "server_threads", "server_fds"):
        result[key] = {"early_max": max(pick(first_half, key)), "late_max": max(pick(late, key))}
    return result


# ---- printing ---------------------------------------------------------------------------------------------

TABLE_HEADER = ("     t |   rss thr fds act tsk  fut |  srv rss thr fds | steps ack/applied rolled recov | "
                "rst kill flt | fwd_bwd p50/p99 ms | optim p50/p99 ms | sample p50/p99 ms | smp/s cpu%")


def table_row(row: dict[str, Any]) -> str:
    steps, chaos, latency = row["steps"], row["chaos"], row["latency"]

    def pair(name: str) -> str:
        stats = latency.get(name)
        return f"{stats['p50_ms']:6.0f}/{stats['p99_ms']:<7.0f}" if stats else f"{'-':>6}/{'-':<7}"

    applied = steps["applied"] if steps["applied"] is not None else "-"
    kept = steps["acked"] - steps["reported_rolled_back"]
    return (f"{row['t']:6.0f} | {row['rss_mb']:5.0f} {row['threads']:3.0f} {row['fds']:3.0f} {row['actors']:3d} "
            f"{row['io_tasks']:3d} {row['futures_in_flight']:4d} | {row['server']['rss_mb']:7.0f} "
            f"{row['server']['threads']:3.0f} {row['server']['fds']:3.0f} | {steps['acked']:12d} "
            f"{steps['reported_rolled_back']:6d} {kept:6d}/{applied!s:<7} {row['recoveries']:5d} | "
            f"{chaos['restarts']:3d} {chaos['kills']:4d} {chaos['faults']:3d} | {pair('forward_backward'):>18} | "
            f"{pair('optim_step'):>16} | {pair('asample'):>17} | {row['samples_per_s']:5.1f} {row['cpu_pct']:4.0f}")


# What a sample (or a sampler swap) may end with under this chaos: a killed sampling actor fails its samples in
# flight (ClientStoppedError, retryable) and those queued behind the kill (CrashedBeforeSendError, a NotSentError;
# NotSentError once the client closed); a swap's save queued behind a training-actor kill was never sent.
EXPECTED_SAMPLE_OUTCOMES = frozenset({"ok", "ClientStoppedError", "NotSentError", "CrashedBeforeSendError",
                                      "swap:NotSentError", "swap:CrashedBeforeSendError"})


def problems(summary: dict[str, Any], *, rss_growth_mb: float, thread_slack: int, fd_slack: int) -> list[str]:
    """What failed, in words (empty: every check passed)."""
    found: list[str] = []
    if not summary["ledger_exact"]:
        found.append("the ledger is not exact")
    odd = {key: count for key, count in summary["samples"].items() if key not in EXPECTED_SAMPLE_OUTCOMES}
    if odd:
        found.append(f"samples that hung or failed unexpectedly: {odd}")
    flat = summary["flatness"]
    if flat:
        if flat["rss_mb"]["growth"] > rss_growth_mb:
            found.append(f"client RSS grew {flat['rss_mb']['growth']} MB (bound {rss_growth_mb})")
        for key, slack in (("threads", thread_slack), ("fds", fd_slack), ("actors", 2)):
            if flat[key]["late_max"] > flat[key]["early_max"] + slack:
                found.append(f"{key}: late max {flat[key]['late_max']} > early max {flat[key]['early_max']} + {slack}")
    return found


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600.0, help="how long to run (default 600)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between rows (default 10)")
    parser.add_argument("--jsonl", default=None, help="append one JSON object per row, then the summary")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--protocol", default="0.38", choices=("0.38", "0.6.3"))
    parser.add_argument("--token-lifetime", type=float, default=6.0, help="seconds a token lives (default 6)")
    parser.add_argument("--steps-per-second", type=float, default=4.0)
    parser.add_argument("--pipeline", type=int, default=3, help="training steps in flight")
    parser.add_argument("--samples-in-flight", type=int, default=8)
    parser.add_argument("--samples-per-second", type=float, default=16.0)
    parser.add_argument("--sampler-every", type=int, default=40, help="steps between fresh samplers")
    parser.add_argument("--checkpoint-every", type=int, default=10, help="steps between periodic checkpoints")
    parser.add_argument("--fault-every", type=float, default=3.0,
                        help="mean seconds between random fault rules (0: none; the same for the next three)")
    parser.add_argument("--kill-every", type=float, default=30.0, help="mean seconds between actor kills")
    parser.add_argument("--kill-targets", nargs="+", default=["training", "sampling"],
                        choices=("training", "sampling"), help="whose actors are killed")
    parser.add_argument("--model-fault-every", type=float, default=90.0, help="mean seconds between lost models")
    parser.add_argument("--restart-every", type=float, default=120.0, help="mean seconds between service restarts")
    parser.add_argument("--warmup", type=float, default=None, help="seconds left out of the flatness check "
                        "(default: a tenth of the run, at least 30)")
    parser.add_argument("--result-timeout", type=float, default=180.0, help="longest wait for one result")
    parser.add_argument("--stall-after", type=float, default=60.0,
                        help="print what the client and the service are doing after this long without progress")
    parser.add_argument("--trace-server-memory", action="store_true",
                        help="trace the service's allocations (tracemalloc; slower) and print where they grew "
                        "after the warm-up")
    parser.add_argument("--trace-client-memory", action="store_true",
                        help="the same for this process (the client)")
    parser.add_argument("--check", action="store_true", help="exit 1 if the ledger or the flatness check fails")
    parser.add_argument("--rss-growth-mb", type=float, default=20.0, help="--check: bound on client RSS growth")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings(
        seconds=args.seconds, interval=args.interval, seed=args.seed, protocol=args.protocol,
        token_lifetime=args.token_lifetime, steps_per_second=args.steps_per_second, pipeline=args.pipeline,
        samples_in_flight=args.samples_in_flight, samples_per_second=args.samples_per_second,
        sampler_every=args.sampler_every, checkpoint_every=args.checkpoint_every, fault_every=args.fault_every,
        kill_every=args.kill_every, model_fault_every=args.model_fault_every, restart_every=args.restart_every,
        warmup=args.warmup if args.warmup is not None else max(30.0, args.seconds / 10),
        result_timeout=args.result_timeout, stall_after=args.stall_after,
        trace_server_memory=args.trace_server_memory, trace_client_memory=args.trace_client_memory,
        kill_targets=tuple(args.kill_targets))
    with _output(args.jsonl) as out:
        soak = Soak(settings, out)
        try:
            soak.train()
            summary = soak.finish()
        except BaseException:
            soak.server.stop()
            raise
        if out is not None:
            out.write(json.dumps({"summary": summary}) + "\n")
    print(json.dumps(summary, indent=1))
    found = problems(summary, rss_growth_mb=args.rss_growth_mb, thread_slack=4, fd_slack=8)
    print("soak: " + ("; ".join(found) if found else "ledger exact, figures flat"), flush=True)
    return 1 if args.check and found else 0


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[str] | None]:
    if path is None:
        yield None
        return
    with open(path, "a", encoding="utf-8") as out:
        yield out


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(json.loads(sys.argv[2]))
    else:
        sys.exit(main())

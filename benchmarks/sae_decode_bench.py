"""SAE decode benchmark: our CPU top-k vs SAELens's own encode + torch.topk, side by side on the same weights.

Run with the bench venv (it has sae-lens):  .venv-bench/bin/python benchmarks/sae_decode_bench.py
Without sae-lens the comparison uses the same formula written in torch and says so.

CPU: d_in=768, d_sae=24576, k=64 at T=64 and T=512; prints tokens/s, the ratio to SAELens, the bare float32 GEMM for
reference, and whether the feature sets are identical. GPU (only when CUDA is available): d_in=4096, d_sae=131072,
T=8192, k=64: ours (bf16 addmm in row blocks + grouped top-k + fp32 rescoring) vs SAELens's default fp32 encode + topk
vs the bare bf16 GEMM, both from input already on the device (`TorchTopK.topk_tensor`) and end to end from a numpy
host array (`TorchTopK.topk`, what the service calls), with a breakdown and the host share.

`--int8-probe` adds the measurements behind NOT shipping a two-stage CPU path (int8 candidates with a rigorous error
bound, fp32 rescoring): the int8 GEMM time and how many candidates per row a provable bound leaves (see
`int8_probe`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sae import load_dictionary  # noqa: E402
from sae.testing import random_weights, write_saelens_dictionary  # noqa: E402


def best_of(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def saelens_encoder(folder: Path, device: str = "cpu"):
    """(label, encode_fn) using SAELens itself when installed, else the same formula in torch."""
    import torch

    try:
        from sae_lens import SAE

        model = SAE.load_from_disk(str(folder), device=device)
        model.eval()

        def encode(x):
            with torch.no_grad():
                return model.encode(x)

        return f"SAELens {__import__('sae_lens').__version__} encode + torch.topk", encode
    except ImportError:
        d = load_dictionary(folder)
        W = torch.as_tensor(np.asarray(d.W_enc), device=device)
        b_enc = torch.as_tensor(np.asarray(d.spec.tensors["b_enc"]), device=device)
        b_dec = torch.as_tensor(np.asarray(d.b_dec), device=device)

        def encode(x):
            with torch.no_grad():
                return torch.relu((x - b_dec) @ W + b_enc)

        return "torch formula relu((x-b_dec)@W_enc+b_enc) + torch.topk (sae-lens NOT installed)", encode


def same_features(idx_a, val_a, idx_b, val_b) -> float:
    """Fraction of rows whose active feature sets agree."""
    agree = 0
    for r in range(idx_a.shape[0]):
        a = {int(i) for i, v in zip(idx_a[r], val_a[r]) if v > 0}
        b = {int(i) for i, v in zip(idx_b[r], val_b[r]) if v > 0}
        agree += a == b
    return agree / idx_a.shape[0]


def cpu_section(args) -> None:
    import torch

    d_in, d_sae, k = 768, 24576, 64
    print(f"== CPU: d_in={d_in} d_sae={d_sae} k={k}; numpy {np.__version__}, torch {torch.__version__}, "
          f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()}")
    w = random_weights(d_in, d_sae, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_saelens_dictionary(Path(tmp) / "layer_0", w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"])
        ours = load_dictionary(folder)
        label, encode = saelens_encoder(folder)
        print(f"baseline: {label}")
        W = np.ascontiguousarray(w["W_enc"])
        for T in (64, 512):
            x = np.random.default_rng(T).standard_normal((T, d_in)).astype(np.float32)
            xt = torch.from_numpy(x)
            out = np.empty((T, d_sae), np.float32)
            t_gemm = best_of(lambda: np.matmul(x, W, out=out), args.repeats)
            t_ours = best_of(lambda: ours.topk(x, k), args.repeats)
            t_ref = best_of(lambda: torch.topk(encode(xt), k, dim=-1), args.repeats)
            idx, val = ours.topk(x, k)
            ref = torch.topk(encode(xt), k, dim=-1)
            agree = same_features(idx, val, ref.indices.numpy(), ref.values.numpy())
            max_err = float(np.abs(val - ref.values.numpy()).max())
            print(f"T={T:4d}  ours {T / t_ours:9.0f} tok/s ({t_ours * 1e3:7.1f} ms)  "
                  f"saelens {T / t_ref:9.0f} tok/s ({t_ref * 1e3:7.1f} ms)  ratio {t_ref / t_ours:5.2f}x  "
                  f"| bare fp32 GEMM {t_gemm * 1e3:7.1f} ms (ours = {t_ours / t_gemm:4.2f}x GEMM)  "
                  f"| identical feature sets {agree * 100:.1f}% rows, max |dv| {max_err:.2e}")


def gpu_random_weights(d_in: int, d_sae: int, device: str, seed: int = 0) -> dict[str, np.ndarray]:
    """`sae.testing.random_weights` drawn with torch on `device`: the same distribution (unit-norm decoder rows, encoder
    ~ decoder transpose + 0.1 noise), but seconds instead of a minute of float64 numpy at d_sae=131072."""
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    W_dec = torch.randn(d_sae, d_in, generator=g, device=device)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    W_enc = W_dec.T + 0.1 * torch.randn(d_in, d_sae, generator=g, device=device)
    b_enc = -0.1 + 0.05 * torch.randn(d_sae, generator=g, device=device)
    b_dec = 0.1 * torch.randn(d_in, generator=g, device=device)
    out = {"W_enc": W_enc, "W_dec": W_dec, "b_enc": b_enc, "b_dec": b_dec}
    return {name: t.float().contiguous().cpu().numpy() for name, t in out.items()}


def gpu_section(args) -> None:
    """ours (`TorchTopK`, the library's torch path) vs the fp32 encode + topk vs the bare bf16 GEMM.

    `--gpu-device cpu --gpu-dims 256,4096,512,64` runs the same code on torch's CPU backend at a small size (with the
    GPU's bf16 candidate dtype), as a smoke test on a machine without CUDA; the figures are then meaningless.
    """
    import torch

    device = args.gpu_device
    if device == "cuda" and not torch.cuda.is_available():
        print("== GPU: skipped (CUDA is not available on this machine; no figures measured)")
        return
    from sae.torch_backend import TorchTopK

    cuda = device == "cuda"
    d_in, d_sae, T, k = args.gpu_dims
    name = torch.cuda.get_device_name() if cuda else "torch CPU backend (SMOKE TEST, figures meaningless)"
    print(f"== GPU: {name} d_in={d_in} d_sae={d_sae} T={T} k={k}; torch {torch.__version__}, "
          f"allow_tf32 matmul={torch.backends.cuda.matmul.allow_tf32}", flush=True)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    phase = time.perf_counter()

    def lap(what: str) -> None:
        nonlocal phase
        now = time.perf_counter()
        print(f"  setup: {what} {now - phase:.1f} s", flush=True)
        phase = now

    w = gpu_random_weights(d_in, d_sae, device)
    lap("random weights (torch on device, copied to host)")
    tmp_dir = args.tmp_dir
    if tmp_dir is None and os.path.isdir("/dev/shm"):
        # memory-backed when there is room for it (3x the two float32 matrices), else the default temporary folder
        free = shutil.disk_usage("/dev/shm").free
        tmp_dir = "/dev/shm" if free > 3 * 8 * d_in * d_sae else None
    with tempfile.TemporaryDirectory(dir=tmp_dir) as tmp:
        print(f"  dictionary folder under {tmp}", flush=True)
        folder = write_saelens_dictionary(Path(tmp) / "layer_0", w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"])
        del w
        lap(f"wrote SAELens folder, float32 ({sum(f.stat().st_size for f in folder.iterdir()) / 2**30:.2f} GiB)")
        dictionary = load_dictionary(folder)
        lap("load_dictionary (memory-mapped, finiteness scan)")
        # on CUDA the library's default (bf16 candidates); on the CPU smoke test bf16 too, so the same path runs
        ours = TorchTopK(dictionary, device, None if cuda else torch.bfloat16)
        sync()
        lap(f"TorchTopK prepared ({ours.dtype}, block_elems={ours.block_elems} ({ours.block_rows()} rows), "
            f"margin={ours.margin}; W32_T stride {tuple(ours.W32_T.stride())})")
        label, encode = saelens_encoder(folder, device)
        sync()
        lap("baseline encoder prepared")
        x = np.random.default_rng(1).standard_normal((T, d_in)).astype(np.float32)
        xt = torch.from_numpy(x).to(device)
        sync()

        def timed(fn):
            def run():
                fn()
                sync()
            return best_of(run, args.repeats)

        def ref_host():  # the baseline end to end from the host array: pageable upload, encode, topk, download
            r = torch.topk(encode(torch.from_numpy(x).to(device)), k, dim=-1)
            return r.indices.cpu(), r.values.cpu()

        x_lo = xt.to(ours.dtype)
        with torch.inference_mode():
            t_gemm = timed(lambda: x_lo @ ours.W_lo)
            t_ref = timed(lambda: torch.topk(encode(xt), k, dim=-1))
            t_ref_host = timed(ref_host)
        t_dev = timed(lambda: ours.topk_tensor(xt, k))
        t_host = timed(lambda: ours.topk(x, k))
        idx, val = ours.topk(x, k)
        d_idx, d_val = (a.cpu().numpy() for a in ours.topk_tensor(xt, k))
        ref = torch.topk(encode(xt), k, dim=-1)
        ref_idx, ref_val = ref.indices.cpu().numpy(), ref.values.cpu().numpy()
        del ref
        agree = same_features(idx, val, ref_idx, ref_val)
        agree_dev = same_features(d_idx, d_val, ref_idx, ref_val)
        max_err = float(np.abs(val - np.maximum(ref_val, 0)).max())
        gemm = str(ours.dtype).replace("torch.", "")
        print(f"baseline: {label}")
        print(f"bare {gemm} GEMM      {T / t_gemm:10.0f} tok/s ({t_gemm * 1e3:7.1f} ms)  input on the device")
        print(f"saelens fp32 device {T / t_ref:10.0f} tok/s ({t_ref * 1e3:7.1f} ms)  input on the device")
        print(f"saelens fp32 host   {T / t_ref_host:10.0f} tok/s ({t_ref_host * 1e3:7.1f} ms)  numpy in, numpy out")
        print(f"ours device input   {T / t_dev:10.0f} tok/s ({t_dev * 1e3:7.1f} ms)  = {t_dev / t_gemm:.2f}x bare-GEMM "
              f"time (target <= 3x), fp32/ours time {t_ref / t_dev:.2f}x; identical feature sets "
              f"{agree_dev * 100:.1f}% rows")
        print(f"ours host numpy     {T / t_host:10.0f} tok/s ({t_host * 1e3:7.1f} ms)  = {t_host / t_gemm:.2f}x bare-GEMM "
              f"time, fp32/ours time from host {t_ref_host / t_host:.2f}x; identical feature sets {agree * 100:.1f}% "
              f"rows; max |dv| vs fp32 reference {max_err:.2e}")
        x_ro = x.copy()
        x_ro.flags.writeable = False  # the staging's other branch (numpy copy for read-only input)
        ro_idx, ro_val = ours.topk(x_ro, k)
        same_out = all(np.array_equal(a, b) for a, b in ((idx, d_idx), (val, d_val), (idx, ro_idx), (val, ro_val)))
        print(f"check: host (writable and read-only) and device entry points give the same output: {same_out}")

        # Where ours spends its time (the calls TorchTopK makes, pieces timed separately on the whole input).
        with torch.inference_mode():
            m = min(d_sae, k + ours.margin)
            t_prep = timed(lambda: ours.sae_in(xt))
            xp = ours.sae_in(xt)
            t_cand = timed(lambda: ours.candidates(xp, m))
            cand = ours.candidates(xp, m)
            t_resc = timed(lambda: ours.rescore(xp, cand))
            t_up = timed(lambda: [None for _ in ours._upload(x)])  # the host path's staging alone, no decode
            t_pageable = timed(lambda: torch.from_numpy(x).to(device))
        t_check = timed(lambda: dictionary.check_input(x))  # SAEDecodeService.decode runs it before any backend
        rest = t_dev - t_prep - t_cand - t_resc
        print(f"breakdown (device input): prepare on device {t_prep * 1e3:.1f} ms | candidates (row blocks of "
              f"{ours.block_rows()}: bf16 addmm + grouped top-{m}, group {ours.group or 'auto'}) {t_cand * 1e3:.1f} ms "
              f"| fp32 rescoring {t_resc * 1e3:.1f} ms | rest (final topk, finiteness, outputs) {rest * 1e3:.1f} ms")
        print(f"host share: upload alone via pinned staging {t_up * 1e3:.1f} ms ({x.nbytes / t_up / 1e9:.1f} GB/s; "
              f"pageable .to(device) {t_pageable * 1e3:.1f} ms) | host numpy end to end minus device input "
              f"{(t_host - t_dev) * 1e3:.1f} ms = {(t_host - t_dev) / t_host * 100:.0f}% of the host path | not in "
              f"these figures: the service's host-side check_input before decoding {t_check * 1e3:.1f} ms")
        # Diagnostics (not the library's defaults): plain torch.topk instead of the grouped selection, other blocks.
        variants = [("plain torch.topk over d_sae (group=1)", {"group": 1})]
        variants += [(f"block_elems 2^{e} ({max(1, (1 << e) // d_sae)} rows)", {"block_elems": 1 << e})
                     for e in (26, 28) if (1 << e) != ours.block_elems]
        for what, change in variants:
            saved = {name: getattr(ours, name) for name in change}
            for name, value in change.items():
                setattr(ours, name, value)
            t_var = timed(lambda: ours.topk_tensor(xt, k))
            v_idx, v_val = (a.cpu().numpy() for a in ours.topk_tensor(xt, k))
            for name, value in saved.items():
                setattr(ours, name, value)
            print(f"diagnostic: {what}: device input {t_var * 1e3:.1f} ms = {t_var / t_gemm:.2f}x GEMM; identical "
                  f"feature sets {same_features(v_idx, v_val, ref_idx, ref_val) * 100:.1f}% rows")
        lap("measurements")


def int8_probe(args) -> None:
    """Why the CPU path has no int8 first stage: the provable bound is far too loose at d_in=768.

    Stage 1 would be fbgemm's int8 GEMM on x_hat (per-row 7-bit: x_r / a_r rounded to [-63, 63]; a dummy row spanning
    [-63, 64] forces fbgemm's dynamic quantisation to scale 1, zero point 63, so x_hat is known exactly) against W_hat
    (per-column symmetric int8). With s = x.w + b and s_hat = x_hat.w_hat + b, Cauchy-Schwarz gives the rigorous
    |s - s_hat| <= ||x - x_hat|| ||w_hat|| + ||x|| ||w - w_hat|| (+ float rounding of the dequantisation, ~1e-5 here,
    covered by a 2^-20 |s_hat| slack). A column must be rescored when s_hat + bound >= the k-th largest s_hat - bound.
    Also printed: the approximate rank a heuristic margin would need (not provable, so not used).
    """
    import warnings

    import torch

    warnings.filterwarnings("ignore", message=".*quantize.*deprecated.*")
    torch.backends.quantized.engine = "fbgemm"
    d_in, d_sae, k = 768, 24576, 64
    w = random_weights(d_in, d_sae, seed=0)
    Wt = torch.from_numpy(np.ascontiguousarray(w["W_enc"].T))
    b = torch.from_numpy(w["b_enc"])
    qw = torch.quantize_per_channel(Wt, (Wt.abs().amax(1) / 127).double(), torch.zeros(d_sae, dtype=torch.long), 0,
                                    torch.qint8)
    W_hat = qw.dequantize()
    w_hat_norm, w_err_norm = W_hat.norm(dim=1), (Wt - W_hat).norm(dim=1)
    packed = torch.ops.quantized.linear_prepack(qw, None)
    print(f"== int8 first-stage probe (fbgemm, engine {torch.backends.quantized.engine}; not used by the library)")
    for T in (64, 512):
        x = torch.from_numpy(np.random.default_rng(T).standard_normal((T, d_in)).astype(np.float32) - w["b_dec"])
        W_np, x_np = np.ascontiguousarray(w["W_enc"]), x.numpy()

        def stage1():
            a = x.abs().amax(1, keepdim=True) / 63
            q = torch.round(x / a)
            span = torch.zeros(1, d_in)
            span[0, 0], span[0, 1] = -63, 64
            return a, q, torch.ops.quantized.linear_dynamic(torch.cat([q, span]), packed, True)[:T]

        t_int8 = best_of(stage1, args.repeats)
        t_fp32 = best_of(lambda: x_np @ W_np, args.repeats)
        a, q, y = stage1()
        s_hat = a * y + b
        bound = ((x - a * q).norm(dim=1, keepdim=True) * w_hat_norm + x.norm(dim=1, keepdim=True) * w_err_norm
                 + s_hat.abs() * 2.0 ** -20)
        s = x @ Wt.T + b
        assert bool(((s - s_hat).abs() <= bound).all()), "error bound violated"
        kth_lower = torch.topk(s_hat - bound, k, dim=1).values[:, -1:]
        n_cand = ((s_hat + bound) >= kth_lower).sum(1).float()
        rank = torch.argsort(torch.argsort(-s_hat, dim=1), dim=1)
        need = torch.gather(rank, 1, torch.topk(s, k, dim=1).indices).max(1).values + 1
        print(f"T={T:4d}  int8 GEMM incl. row quantisation {t_int8 * 1e3:6.1f} ms vs fp32 GEMM {t_fp32 * 1e3:6.1f} ms "
              f"({t_fp32 / t_int8:4.2f}x)  | rigorous bound mean {float(bound.mean()):.2f} = "
              f"{float(bound.mean() / s.std()):.2f} sigma(score), true error <= "
              f"{float(((s - s_hat).abs() / bound).max()) * 100:.0f}% of it  | candidates/row to rescore: "
              f"{float(n_cand.mean()):.0f} mean, {float(n_cand.max()):.0f} max (k={k}); a heuristic margin would "
              f"need rank {float(need.float().mean()):.0f} mean, {int(need.max())} max")


def dims(text: str) -> tuple[int, int, int, int]:
    parts = tuple(int(v) for v in text.split(","))
    if len(parts) != 4:
        raise argparse.ArgumentTypeError("expected d_in,d_sae,T,k")
    return parts  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--skip-cpu", action="store_true", help="only the GPU section")
    parser.add_argument("--skip-gpu", action="store_true")
    parser.add_argument("--gpu-dims", type=dims, default=(4096, 131072, 8192, 64), metavar="D_IN,D_SAE,T,K")
    parser.add_argument("--gpu-device", default="cuda", help="'cpu' runs the GPU section as a small smoke test")
    parser.add_argument("--tmp-dir", default=None, help="where the GPU section writes its dictionary (~4 GiB)")
    parser.add_argument("--int8-probe", action="store_true", help="also measure the rejected int8 first stage")
    args = parser.parse_args()
    if not args.skip_cpu:
        cpu_section(args)
    if args.int8_probe:
        int8_probe(args)
    if not args.skip_gpu:
        gpu_section(args)


if __name__ == "__main__":
    main()

"""Where corpus encoding time goes, and how far listrank (and sentence-transformers) are from the
bound of this CPU: issue 12's "≥ 1.2× sentence-transformers at equal precision, or within 10% of
the bound".

On the same texts (SciFact title + abstract), in the batches listrank's `Encoder.encode` forms
(longest first, 64 per batch, each padded to its longest), bf16 on both sides, one process, runs
interleaved, best and median of the repeats:

1. listrank `Encoder.encode` (bf16 autocast) and sentence-transformers `encode` under the same
   `torch.autocast("cpu", bfloat16)`;
2. options listrank could take: `torch.compile` of the transformer (after a warm-up, whose
   seconds are reported) and the weights cast to bf16 (no autocast);
3. the kernels alone, on the same batch shapes: the six layers' linear layers (bf16 GEMMs with the
   model's own weights), the attention (`scaled_dot_product_attention` with the batches' real
   padding masks, as BERT calls it), and the rest (the measured listrank time minus both);
4. the bounds: (a) GEMMs + attention at the speed torch's kernels reach here; (b) every matmul
   FLOP (attention's too) at the GEMMs' measured GFLOP/s — what "the bf16 matmul bound" means.

    LISTRANK_DATA=../shared/data python benchmarks/bench_encode_bound.py [--docs 300] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch


def best_and_median(fn, repeats: int) -> tuple[float, float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="beir/scifact")
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile row (its warm-up is ~40 s)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from sentence_transformers import SentenceTransformer

    from listrank.datasets import resolve
    from listrank.encoder import Encoder, default_model_path

    texts = [d.full_text() for d in resolve(args.dataset).corpus[: args.docs]]
    n, bs = len(texts), args.batch_size
    st = SentenceTransformer(str(default_model_path()), device="cpu")
    st.max_seq_length = args.max_length
    enc = Encoder(max_length=args.max_length, precision="bf16", device="cpu")

    def st_bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return st.encode(texts, batch_size=bs, convert_to_numpy=True)

    contenders = {"sentence-transformers encode (bf16 autocast)": st_bf16,
                  "listrank Encoder.encode (bf16 autocast)": lambda: enc.encode(texts, batch_size=bs)}
    pure = Encoder(max_length=args.max_length, precision="fp32", device="cpu")
    pure.transformer.to(torch.bfloat16)
    contenders["listrank, weights cast to bf16 (no autocast)"] = lambda: pure.encode(texts, batch_size=bs)
    compile_s = None
    if not args.no_compile:
        compiled = Encoder(max_length=args.max_length, precision="bf16", device="cpu")
        compiled.transformer = torch.compile(compiled.transformer, dynamic=True)
        start = time.perf_counter()
        compiled.encode(texts[: 2 * bs], batch_size=bs)
        compile_s = time.perf_counter() - start
        contenders["listrank + torch.compile (bf16 autocast)"] = lambda: compiled.encode(texts, batch_size=bs)

    # the batches listrank forms: longest (by characters) first, each padded to its longest
    order = np.argsort([-len(t) for t in texts], kind="stable")
    batches = [enc.tokenize([texts[i] for i in order[s:s + bs]]) for s in range(0, n, bs)]
    real_tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    padded_tokens = sum(b["attention_mask"].numel() for b in batches)
    cfg = enc.transformer.config
    layers, hidden, heads = cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads
    head_dim = hidden // heads
    linears = [m for m in enc.transformer.encoder.modules() if isinstance(m, torch.nn.Linear)]
    weights = [(m.weight.to(torch.bfloat16), m.bias.to(torch.bfloat16)) for m in linears]

    def gemms():
        for b in batches:
            rows = b["input_ids"].numel()
            x = torch.randn(rows, hidden, dtype=torch.bfloat16)
            wide = torch.randn(rows, cfg.intermediate_size, dtype=torch.bfloat16)
            for w, bias in weights:
                torch.nn.functional.linear(wide if w.shape[1] != hidden else x, w, bias)

    masks = []
    for b in batches:
        keep = b["attention_mask"].bool()[:, None, None, :]
        masks.append(None if bool(keep.all()) else keep)

    def attention():
        for b, mask in zip(batches, masks):
            size, length = b["input_ids"].shape
            q = torch.randn(size, heads, length, head_dim, dtype=torch.bfloat16)
            for _ in range(layers):
                torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=mask)

    gemm_flop = sum(2 * b["input_ids"].numel() * w.numel() for b in batches for w, _ in weights)
    attn_flop = sum(layers * 4 * b["input_ids"].shape[0] * b["input_ids"].shape[1] ** 2 * hidden for b in batches)
    kernels = {"GEMMs alone (the linear layers, listrank's batch shapes)": gemms,
               "attention alone (scaled_dot_product_attention, real masks)": attention}

    with torch.inference_mode():
        for fn in list(contenders.values()) + list(kernels.values()):
            fn()  # warm-up: allocator, oneDNN primitives
        timings: dict[str, list[float]] = {name: [] for name in (*contenders, *kernels)}
        reference = st_bf16()
        cosine = {}
        for _ in range(args.repeats):
            for name, fn in {**contenders, **kernels}.items():
                start = time.perf_counter()
                out = fn()
                timings[name].append(time.perf_counter() - start)
                if name in contenders:
                    cosine[name] = float(np.mean(np.sum(out * reference, 1) / np.linalg.norm(out, axis=1)
                                                 / np.linalg.norm(reference, axis=1)))

    best = {name: min(t) for name, t in timings.items()}
    median = {name: statistics.median(t) for name, t in timings.items()}
    g, a = best["GEMMs alone (the linear layers, listrank's batch shapes)"], best["attention alone (scaled_dot_product_attention, real masks)"]
    gemm_rate = gemm_flop / g
    listrank_s = best["listrank Encoder.encode (bf16 autocast)"]
    st_s = best["sentence-transformers encode (bf16 autocast)"]
    bound_kernels = g + a
    bound_flops = (gemm_flop + attn_flop) / gemm_rate
    print(f"{n} docs, {real_tokens:,} tokens ({padded_tokens / real_tokens - 1:.1%} padding), batch {bs}, "
          f"{args.threads} thread(s), {platform.processor() or platform.machine()}, torch {torch.__version__}")
    if compile_s is not None:
        print(f"torch.compile warm-up (first {2 * bs} docs): {compile_s:.1f} s")
    print(f"{'':58s} {'docs/s best':>11s} {'median':>8s}  vs s-t   cosine vs s-t")
    for name in contenders:
        print(f"{name:58s} {n / best[name]:11.1f} {n / median[name]:8.1f}  {st_s / best[name]:5.2f}×  {cosine[name]:.5f}")
    for name in kernels:
        print(f"{name:58s} {best[name]:8.2f} s  ({best[name] / listrank_s:.0%} of listrank's time)")
    rest = listrank_s - g - a
    print(f"{'the rest (embeddings, layer norms, GELU, casts, tokenizer)':58s} {rest:8.2f} s  ({rest / listrank_s:.0%})")
    print(f"GEMM speed: {gemm_rate / 1e9:.0f} GFLOP/s; attention: {attn_flop / a / 1e9:.0f} GFLOP/s "
          f"({attn_flop / (gemm_flop + attn_flop):.0%} of the matmul FLOPs)")
    print(f"bound (a) GEMMs + attention at torch's speed: {n / bound_kernels:.1f} docs/s "
          f"= {st_s / bound_kernels:.2f}× sentence-transformers; listrank at {bound_kernels / listrank_s:.0%} of it")
    print(f"bound (b) every matmul FLOP at the GEMM speed: {n / bound_flops:.1f} docs/s "
          f"= {st_s / bound_flops:.2f}× sentence-transformers; listrank at {bound_flops / listrank_s:.0%} of it")
    if args.json:
        from listrank.atomic import atomic_write

        with atomic_write(args.json) as fh:
            json.dump({"docs": n, "threads": args.threads, "tokens": real_tokens, "padded_tokens": padded_tokens,
                       "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                       "compile_warmup_s": compile_s, "best_s": best, "median_s": median, "cosine_vs_st": cosine,
                       "gemm_gflops": gemm_rate / 1e9, "attention_gflops": attn_flop / a / 1e9,
                       "bound_kernels_docs_s": n / bound_kernels, "bound_flops_docs_s": n / bound_flops}, fh, indent=1)


if __name__ == "__main__":
    main()

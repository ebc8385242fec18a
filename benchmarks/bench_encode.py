"""Corpus encoding speed: listrank's Encoder vs sentence-transformers `encode`, side by side.

Same model (the bundled all-MiniLM-L6-v2), same texts (SciFact title + abstract), same max length,
batch size and torch threads, in one process, runs interleaved so machine load hits both alike.
Each precision is compared with itself: listrank fp32 vs sentence-transformers fp32, listrank
bf16 autocast vs sentence-transformers `encode` under the same `torch.autocast("cpu", bfloat16)`.

With `--device cuda` both sides run on the GPU (`SentenceTransformer(device="cuda")`, `Encoder(device="cuda")`):
the weights stay fp32 on both sides, and bf16 is `torch.autocast("cuda", bfloat16)` for both (what the
Encoder itself does on CUDA; it never casts the model), fp32 is plain fp32 on both (torch's defaults,
TF32 off). Each contender's warm-up is one untimed encode of all the texts (every batch shape, the
CUDA caching allocator filled), and each timing is taken after `torch.cuda.synchronize()`. The
GPU's name is printed and written to the JSON. For all of SciFact: `--docs 5183 --batch-size 256`.

    LISTRANK_DATA=../shared/data python benchmarks/bench_encode.py [--docs 1000] [--repeats 2] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from listrank.datasets import resolve
from listrank.encoder import Encoder, bf16_supported, default_model_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="beir/scifact")
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads for both [default: torch's]")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where both sides run [default: cpu]")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit(f"{parser.prog}: error: --device cuda, but torch {torch.__version__} sees no CUDA GPU")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"

    from sentence_transformers import SentenceTransformer

    texts = [d.full_text() for d in resolve(args.dataset).corpus[: args.docs]]
    model_path = str(default_model_path())
    st = SentenceTransformer(model_path, device=args.device)
    st.max_seq_length = args.max_length
    def st_bf16(t):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return st.encode(t, batch_size=args.batch_size, convert_to_numpy=True)

    contenders = {
        "sentence-transformers (fp32)": lambda t: st.encode(t, batch_size=args.batch_size, convert_to_numpy=True),
        "sentence-transformers (bf16)": st_bf16,
    }
    # which sentence-transformers row each listrank row is compared with: the same precision
    baseline_of = {}
    for precision in ("fp32", "bf16"):
        enc = Encoder(max_length=args.max_length, precision=precision, device=args.device)
        default = "bf16" if bf16_supported(device) else "fp32"  # what precision=auto picks here
        label = f"listrank ({precision}{', default' if precision == default else ''})"
        contenders[label] = (lambda e: lambda t: e.encode(t, batch_size=args.batch_size))(enc)
        baseline_of[label] = f"sentence-transformers ({precision})"

    for fn in contenders.values():  # warm-up: first calls pay for allocation and kernel selection
        fn(texts if cuda else texts[: args.batch_size])  # on CUDA: every batch shape once
    if cuda:
        torch.cuda.synchronize()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn(texts)
            if cuda:
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)

    from listrank.doctor import machine_info

    print(f"{len(texts)} docs of {args.dataset}, max length {args.max_length}, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}, {machine_info()['cpu']} ({', '.join(machine_info()['cpu_isa'])}), "
          f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}")
    gpu = torch.cuda.get_device_name(device) if cuda else None
    if cuda:
        print(f"device cuda: {gpu}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
              f"bf16 supported: {torch.cuda.is_bf16_supported()}, TF32 matmul: {torch.backends.cuda.matmul.allow_tf32}")
    print(f"{'encoder':34s} {'docs/s (best)':>14s} {'docs/s (median)':>16s} {'ratio vs ST, same precision':>28s}")
    rows = []
    for name, ts in times.items():
        best, median = len(texts) / min(ts), len(texts) / statistics.median(ts)
        base = baseline_of.get(name, name)
        ratio = best / (len(texts) / min(times[base]))
        rows.append({"encoder": name, "docs_per_s_best": best, "docs_per_s_median": median, "ratio": ratio,
                     "baseline": base})
        print(f"{name:34s} {best:14.1f} {median:16.1f} {ratio:27.2f}x")
    if args.json:
        report = {"docs": len(texts), "threads": torch.get_num_threads(), "rows": rows}
        if cuda:
            report.update(device="cuda", gpu=gpu, batch_size=args.batch_size, max_length=args.max_length,
                          repeats=args.repeats, torch=torch.__version__, cuda=torch.version.cuda)
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()

"""Gradient caching on the CPU: peak memory and step time of one batch, with and without it.

Each setting runs in a fresh subprocess (so peak memory is that setting's own): the bundled
all-MiniLM-L6-v2, fp32, one batch of `--batch-size` queries x `--group-size` passages of real
graded lists (msmarco/dl19-pool + dl20-pool test qrels, the same batch for every setting), max
length `--max-length`, length buckets as `listrank train` defaults on the CPU (4), the Wasserstein
loss, one AdamW step per training step. Reported per setting:

* peak RSS: `resource.getrusage(RUSAGE_SELF).ru_maxrss` at the end (tracemalloc does not see torch's
  CPU allocations), and the RSS before the first step (model, data and tokenised batch loaded), so
  the difference is what the training step itself added at its peak;
* seconds per step: the median of `--steps` timed steps (forward, loss, backward, AdamW);
* the loss of the first step and the gradient norm before the optimizer step. They differ a
  little between settings because the model is in training mode: dropout draws other masks for a
  chunk than for the whole batch (with dropout off they agree to 1e-5, tests/test_train_gradcache.py).

    OMP_NUM_THREADS=2 LISTRANK_DATA=../shared/data HF_HUB_OFFLINE=1 \\
        python benchmarks/bench_gradcache.py [--batch-size 64] [--chunks 0,8] [--steps 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def rss_mib() -> float:
    """Current resident set size (Linux /proc), MiB."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(args) -> dict:
    import torch

    from listrank import losses
    from listrank.encoder import Encoder
    from listrank.train.config import SourceConfig
    from listrank.train.data import EpochBatches, load_sources
    from listrank.train.step import BiEncoder, micro_step

    torch.manual_seed(0)
    data = load_sources([SourceConfig("msmarco/dl19-pool", split="test"), SourceConfig("msmarco/dl20-pool", split="test")])
    data.prepare(args.loss, args.group_size, "repeat")
    if len(data.lists) < args.batch_size:
        raise SystemExit(f"only {len(data.lists)} usable lists for a batch of {args.batch_size}")
    encoder = Encoder(None, pooling="mean", normalize=False, max_length=args.max_length, device="cpu", precision="fp32")
    encoder.transformer.pooler.requires_grad_(False)
    encoder.train()
    batches = EpochBatches(data.lists, tokenizer=encoder.tokenizer, group_size=args.group_size,
                           batch_size=args.batch_size, world_size=1, rank=0, seed=0, epoch=0,
                           query_max_length=args.max_length, passage_max_length=args.max_length)
    item = batches[0]
    tokens = int(item["q_attention_mask"].sum() + item["p_attention_mask"].sum())
    model = BiEncoder(encoder, args.length_buckets)
    loss_fn = losses.get(args.loss)
    optimizer = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad], lr=1e-5)

    class World1:
        world, rank = 1, 0

    rss_before = rss_mib()
    times, first = [], {}
    for i in range(args.steps):
        t0 = time.perf_counter()
        value = micro_step(model, item, loss_fn, device=torch.device("cpu"), autocast=lambda: torch.autocast("cpu", enabled=False),
                           d=World1(), temperature=1.0, scale=1.0, chunk=args.chunk)
        norm = float(torch.nn.utils.clip_grad_norm_([p for p in encoder.parameters() if p.grad is not None], float("inf")))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        if i == 0:
            first = {"loss": value, "grad_norm": norm}
        print(f"  chunk {args.chunk}: step {i + 1}/{args.steps} {times[-1]:.1f} s, peak RSS {peak_rss_mib():.0f} MiB",
              file=sys.stderr, flush=True)
    return {"chunk": args.chunk, "batch_size": args.batch_size, "group_size": args.group_size,
            "max_length": args.max_length, "length_buckets": args.length_buckets, "real_tokens": tokens,
            "rss_before_step_mib": round(rss_before, 1), "peak_rss_mib": round(peak_rss_mib(), 1),
            "step_peak_over_before_mib": round(peak_rss_mib() - rss_before, 1),
            "step_seconds": [round(t, 2) for t in times], "median_step_seconds": round(statistics.median(times), 2),
            "first_loss": first["loss"], "first_grad_norm": first["grad_norm"],
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--group-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--length-buckets", type=int, default=4)
    ap.add_argument("--loss", default="wasserstein")
    ap.add_argument("--chunks", default="0,8", help="comma-separated --grad-cache-chunk values (0 = off)")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--chunk", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    rows = []
    for chunk in [int(c) for c in args.chunks.split(",")]:
        cmd = [sys.executable, __file__, "--child", "--chunk", str(chunk), "--batch-size", str(args.batch_size),
               "--group-size", str(args.group_size), "--max-length", str(args.max_length),
               "--length-buckets", str(args.length_buckets), "--loss", args.loss, "--steps", str(args.steps)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    report = {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average": os.getloadavg(), "rows": rows}
    print(f"{'chunk':>6} {'peak RSS MiB':>13} {'step peak MiB':>14} {'s/step':>8} {'loss':>12} {'grad norm':>12}")
    for r in rows:
        print(f"{r['chunk'] or 'off':>6} {r['peak_rss_mib']:>13.0f} {r['step_peak_over_before_mib']:>14.0f} "
              f"{r['median_step_seconds']:>8.1f} {r['first_loss']:>12.6g} {r['first_grad_norm']:>12.6g}")
    print(f"CPU: {report['cpu']} ({report['cores']} cores), load average {report['load_average'][0]:.1f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()

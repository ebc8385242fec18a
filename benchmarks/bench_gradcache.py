"""Gradient caching on the CPU (or a CUDA GPU): peak memory and step time of one batch, with and without it.

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

With `--device cuda` the same runs on the GPU (`torch.device("cuda")`), each setting still in its own
subprocess, and what changes is:

* precision: `--precision fp32` (default; TF32 off, torch's default) or `bf16` =
  `torch.autocast("cuda", bfloat16)` around the forwards, as `listrank train` does (the weights, the
  loss and AdamW stay fp32). On the CPU `--precision bf16` is `torch.autocast("cpu", bfloat16)`;
* length buckets: `listrank train`'s CUDA default, 1 (off), unless `--length-buckets` is given;
* peak memory: `torch.cuda.max_memory_allocated()` over the timed steps, in MiB. The batch is moved
  to the GPU and the model, batch and optimizer are loaded before `torch.cuda.reset_peak_memory_stats()`;
  `torch.cuda.memory_allocated()` at that moment is reported as "before", and peak - before is what
  the training step added at its peak (AdamW's state, created by the first step, included). RSS is
  not reported;
* timing: `torch.cuda.synchronize()` before each step starts and before it is read; the first step
  also pays for CUDA/cuBLAS start-up, so use `--steps 3` or more (the median counts);
* a setting that runs out of GPU memory is reported as OOM (with the peak reached) and the others run.

The two pools have 97 usable lists; `--cycle-lists` repeats them (in order) to fill a larger batch,
e.g. `--batch-size 1024`: the memory and time of such a batch are real, its loss is not comparable.

    OMP_NUM_THREADS=2 LISTRANK_DATA=../shared/data HF_HUB_OFFLINE=1 \\
        python benchmarks/bench_gradcache.py [--batch-size 64] [--chunks 0,8] [--steps 2] [--json out.json]
    python benchmarks/bench_gradcache.py --device cuda --precision bf16 --batch-size 1024 --chunks 64 --steps 3
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


def mib(n_bytes: int) -> float:
    return n_bytes / 2**20


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
    usable = len(data.lists)
    if args.cycle_lists and usable < args.batch_size:  # the lists again, in order, until a batch is full
        data.lists = [data.lists[i % usable] for i in range(args.batch_size)]
    if len(data.lists) < args.batch_size:
        raise SystemExit(f"only {len(data.lists)} usable lists for a batch of {args.batch_size} (--cycle-lists repeats them)")
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    encoder = Encoder(None, pooling="mean", normalize=False, max_length=args.max_length, device=device, precision="fp32")
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

    bf16 = args.precision == "bf16"
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)  # noqa: E731
    if cuda:  # the batch on the GPU before the baseline (micro_step's .to(device) is then a no-op)
        item = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in item.items()}
        torch.cuda.synchronize()
        cuda_before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = rss_mib()
    times, first, oom = [], {}, None
    for i in range(args.steps):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        try:
            value = micro_step(model, item, loss_fn, device=device, autocast=autocast,
                               d=World1(), temperature=1.0, scale=1.0, chunk=args.chunk)
            norm = float(torch.nn.utils.clip_grad_norm_([p for p in encoder.parameters() if p.grad is not None], float("inf")))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize()
        except torch.OutOfMemoryError as e:
            if not cuda:
                raise
            oom = str(e).splitlines()[0]
            print(f"  chunk {args.chunk}: step {i + 1}/{args.steps} out of GPU memory, peak "
                  f"{mib(torch.cuda.max_memory_allocated(device)):.0f} MiB", file=sys.stderr, flush=True)
            break
        times.append(time.perf_counter() - t0)
        if i == 0:
            first = {"loss": value, "grad_norm": norm}
        if cuda:
            print(f"  chunk {args.chunk}: step {i + 1}/{args.steps} {times[-1]:.3f} s, peak GPU "
                  f"{mib(torch.cuda.max_memory_allocated(device)):.0f} MiB", file=sys.stderr, flush=True)
        else:
            print(f"  chunk {args.chunk}: step {i + 1}/{args.steps} {times[-1]:.1f} s, peak RSS {peak_rss_mib():.0f} MiB",
                  file=sys.stderr, flush=True)
    if not cuda:
        return {"chunk": args.chunk, "batch_size": args.batch_size, "group_size": args.group_size,
                "max_length": args.max_length, "length_buckets": args.length_buckets, "real_tokens": tokens,
                "rss_before_step_mib": round(rss_before, 1), "peak_rss_mib": round(peak_rss_mib(), 1),
                "step_peak_over_before_mib": round(peak_rss_mib() - rss_before, 1),
                "step_seconds": [round(t, 2) for t in times], "median_step_seconds": round(statistics.median(times), 2),
                "first_loss": first["loss"], "first_grad_norm": first["grad_norm"],
                "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                **({"precision": args.precision} if bf16 else {})}
    peak = torch.cuda.max_memory_allocated(device)
    return {"chunk": args.chunk, "batch_size": args.batch_size, "group_size": args.group_size,
            "max_length": args.max_length, "length_buckets": args.length_buckets, "real_tokens": tokens,
            "usable_lists": usable, "cycled_lists": len(data.lists) > usable,
            "device": "cuda", "gpu": torch.cuda.get_device_name(device), "precision": args.precision,
            "oom": oom, "cuda_before_step_mib": round(mib(cuda_before), 1), "cuda_peak_mib": round(mib(peak), 1),
            "step_peak_over_before_mib": round(mib(peak - cuda_before), 1),
            "cuda_max_reserved_mib": round(mib(torch.cuda.max_memory_reserved(device)), 1),
            "step_seconds": [round(t, 4) for t in times],
            "median_step_seconds": round(statistics.median(times), 4) if times else None,
            "first_loss": first.get("loss"), "first_grad_norm": first.get("grad_norm"),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "cuda": torch.version.cuda}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--group-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--length-buckets", type=int, default=None,
                    help="length-sorted chunks per forward (default: listrank train's own, 4 on CPU, 1 = off on CUDA)")
    ap.add_argument("--loss", default="wasserstein")
    ap.add_argument("--chunks", default="0,8", help="comma-separated --grad-cache-chunk values (0 = off)")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="bf16 = torch.autocast(device, bfloat16) around the forwards")
    ap.add_argument("--cycle-lists", action="store_true",
                    help="repeat the usable lists to fill a batch larger than their count (97 in the two pools): "
                         "for memory and time only, the duplicates change the loss")
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--chunk", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.length_buckets is None:
        args.length_buckets = 1 if args.device == "cuda" else 4  # as listrank's Trainer picks them
    if args.child:
        print(json.dumps(child(args)))
        return
    cuda = args.device == "cuda"
    if cuda:
        import torch

        if not torch.cuda.is_available():
            sys.exit(f"{ap.prog}: error: --device cuda, but torch {torch.__version__} sees no CUDA GPU")
    rows = []
    for chunk in [int(c) for c in args.chunks.split(",")]:
        cmd = [sys.executable, __file__, "--child", "--chunk", str(chunk), "--batch-size", str(args.batch_size),
               "--group-size", str(args.group_size), "--max-length", str(args.max_length),
               "--length-buckets", str(args.length_buckets), "--loss", args.loss, "--steps", str(args.steps),
               "--device", args.device, "--precision", args.precision] + (["--cycle-lists"] if args.cycle_lists else [])
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=not cuda)
        if proc.returncode != 0:  # CUDA only: report the setting as failed and run the others
            print(f"chunk {chunk}: the subprocess failed (exit {proc.returncode}), see above", file=sys.stderr)
            rows.append({"chunk": chunk, "failed": f"exit {proc.returncode}"})
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    if cuda:
        gpu = next((r["gpu"] for r in rows if "gpu" in r), None)
        report = {"device": "cuda", "gpu": gpu, "precision": args.precision, "cpu": cpu_model(), "cores": os.cpu_count(),
                  "load_average": os.getloadavg(), "rows": rows}
        print(f"{'chunk':>6} {'before MiB':>11} {'peak GPU MiB':>13} {'step peak MiB':>14} {'s/step':>8} "
              f"{'loss':>12} {'grad norm':>12}")
        for r in rows:
            if "failed" in r:
                print(f"{r['chunk'] or 'off':>6} failed ({r['failed']})")
                continue
            step_s = f"{r['median_step_seconds']:>8.3f}" if r["median_step_seconds"] is not None else f"{'OOM':>8}"
            loss = f"{r['first_loss']:>12.6g}" if r["first_loss"] is not None else f"{'-':>12}"
            norm = f"{r['first_grad_norm']:>12.6g}" if r["first_grad_norm"] is not None else f"{'-':>12}"
            print(f"{r['chunk'] or 'off':>6} {r['cuda_before_step_mib']:>11.0f} {r['cuda_peak_mib']:>13.0f} "
                  f"{r['step_peak_over_before_mib']:>14.0f} {step_s} {loss} {norm}"
                  + (" (out of memory)" if r["oom"] else ""))
        print(f"GPU: {gpu}, {args.precision}, batch {args.batch_size} x group {args.group_size}, max length "
              f"{args.max_length}, length buckets {args.length_buckets}; CPU: {report['cpu']} ({report['cores']} cores)")
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(report, fh, indent=2)
        if any("failed" in r for r in rows):
            sys.exit(1)
        return
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

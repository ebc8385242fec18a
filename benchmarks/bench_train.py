"""Training throughput: listrank's trainer vs sentence-transformers' trainer, side by side.

Both train the same model (the bundled all-MiniLM-L6-v2) on the same data in one process:

* data: the graded lists of `--dataset` (msmarco/dl19-pool, split test). The groups are built
  once with listrank's own sampling (`EpochBatches.groups`, seeded by (seed, epoch), epochs
  following one another as in `listrank train`), so both sides see exactly the same
  (query, group-size passages) tuples in the same order. For sentence-transformers each tuple
  becomes a row `anchor, positive, negative_1 .. negative_{G-1}` (the passage with the highest
  label is the positive, the others stay in listrank's order as hard negatives), trained with
  `MultipleNegativesRankingLoss` and a sequential batch sampler (no shuffling, drop_last).
  listrank runs `Trainer(TrainConfig(...))` with `--loss` (wasserstein, or infonce).
* same batch (queries per step), group size, max length (queries and passages), AdamW
  (lr, weight decay 0.01, betas/eps defaults, clipping 1.0, linear warmup then linear decay, the
  same warmup steps), precision (fp32, or bf16 autocast on both sides), device, torch threads,
  DataLoader workers. sentence-transformers uses `optim=--st-optim` (default adamw_torch, the
  same `torch.optim.AdamW` as listrank; transformers' own default is adamw_torch_fused).
* timing: the first `--warmup-steps` optimizer steps are skipped, the next `--steps` are
  timed from step-end to step-end (listrank's `on_step` callback, a `TrainerCallback.on_step_end`
  for sentence-transformers); queries/s = batch * steps / seconds. Sides alternate
  (ST, listrank, ST, listrank ...) for `--repeats` rounds; the median counts.
* checks: every batch's texts (a digest of query + sorted passages per row) and the real token
  counts must be equal on both sides and equal to the groups built up front; the transformer's
  forward inputs (shapes, autocast on or off, torch threads) are recorded per step.
* device: `--device cpu` (default) or `cuda`. On the CPU, listrank runs `TrainConfig(device="cpu")`
  and sentence-transformers `SentenceTransformer(device="cpu")` with `use_cpu=True`; bf16 is
  `torch.autocast("cpu", bfloat16)` on both sides. On CUDA, listrank runs `TrainConfig(device="cuda")`
  (bf16: its `torch.autocast("cuda", bfloat16)` around the forwards; its default length buckets there
  are 1, i.e. off) and sentence-transformers `SentenceTransformer(device="cuda")` with `use_cpu=False`
  and `bf16=True` for bf16 (accelerate's `torch.autocast("cuda", bfloat16)` around the forward), never
  fp16. Weights, loss and AdamW stay fp32 on both sides, TF32 stays off (torch's default). The
  forward probe records the autocast state of the device's type and the device the transformer's
  weights are on, and the checks require `cuda` on both sides; the ST trainer's device and mixed
  precision (`bf16` or `no`, so no ACCELERATE_MIXED_PRECISION=fp16 from the environment) are
  checked too. Each step-end stamp follows a `torch.cuda.synchronize()` (both sides), and the peak
  GPU memory of each run (`torch.cuda.max_memory_allocated()`, reset after freeing the previous
  run) is reported with what was still allocated when it started.

sentence-transformers' trainer needs `accelerate` (in listrank's `dev` extra, which `make setup`
installs).

    OMP_NUM_THREADS=1 LISTRANK_DATA=../shared/data HF_HUB_OFFLINE=1 \\
        python benchmarks/bench_train.py [--steps 10] [--warmup-steps 2] [--repeats 1] [--precision bf16] [--device cuda]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def digest(rows: list[tuple[str, list[str]]]) -> str:
    """Order of rows matters, order of passages within a row does not (ST puts the positive first)."""
    payload = json.dumps([[q, sorted(ps)] for q, ps in rows], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class ForwardProbe:
    """A pre-forward hook on the transformer's input embeddings: one call per transformer forward, with
    its input shape, autocast state (of `device_type`) and torch threads, and on CUDA the device of the
    embedding weights. (Not on the transformer itself: ST calls its `.forward` directly, which skips
    module hooks.)"""

    def __init__(self, device_type: str = "cpu"):
        self.device_type = device_type
        self.current: list[dict[str, Any]] = []
        self.handle = None

    def attach(self, module) -> None:
        from transformers import PreTrainedModel

        if self.handle is not None:
            return
        target = next(m for m in module.modules() if isinstance(m, PreTrainedModel))
        self.handle = target.get_input_embeddings().register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        import torch

        record = {"shape": list(args[0].shape),
                  "autocast": bool(torch.is_autocast_enabled(self.device_type)),
                  "threads": torch.get_num_threads()}
        if self.device_type != "cpu":
            record["device"] = module.weight.device.type
        self.current.append(record)

    def flush(self) -> list[dict[str, Any]]:
        out, self.current = self.current, []
        return out


def batch_stats(rows: list[tuple[str, list[str]]], q_mask, p_masks) -> dict[str, Any]:
    return {
        "digest": digest(rows),
        "q_tokens": int(sum(int(m.sum()) for m in [q_mask])),
        "p_tokens": int(sum(int(m.sum()) for m in p_masks)),
    }


# --- listrank ------------------------------------------------------------------------------------------------

def run_listrank(args, total_steps: int, warmup: int, workdir: Path, tag: str) -> dict[str, Any]:
    import listrank.train.trainer as trainer_mod
    from listrank.train.config import SourceConfig, TrainConfig
    from listrank.train.data import EpochBatches

    class TracedBatches(EpochBatches):
        def __getitem__(self, k):
            item = super().__getitem__(k)
            mine = self.groups(self.start + k)[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
            item["bench"] = batch_stats([(ql.query, [p.text for p in g]) for ql, g in mine],
                                        item["q_attention_mask"], [item["p_attention_mask"]])
            return item

    probe = ForwardProbe(args.device)
    batches: list[dict] = []
    losses: list[float | None] = []

    class TracedTrainer(trainer_mod.Trainer):
        batches_class = TracedBatches

        def micro_step(self, model, item, *rest, **kw):
            probe.attach(model)
            batches.append(item.pop("bench"))
            return super().micro_step(model, item, *rest, **kw)

    stamps: list[float] = []
    forwards: list[list[dict]] = []

    def on_step(step: int, record: dict) -> None:
        sync()
        stamps.append(time.perf_counter())
        forwards.append(probe.flush())
        losses.append(record.get("loss"))

    config = TrainConfig(
        output=str(workdir / tag), sources=[SourceConfig(args.dataset, split=args.split)],
        loss=args.loss, group_size=args.group_size, batch_size=args.batch_size,
        query_max_length=args.max_length, passage_max_length=args.max_length,
        lr=args.lr, weight_decay=0.01, warmup_steps=warmup, max_grad_norm=1.0, max_steps=total_steps,
        seed=args.seed, precision=args.precision, num_workers=args.num_workers, device=args.device,
        save_steps=0, plot=False, progress=False, length_buckets=args.length_buckets,
    )
    t0 = time.perf_counter()
    result = TracedTrainer(config, on_step=on_step).run()
    wall = time.perf_counter() - t0
    return {"stamps": stamps, "batches": batches, "forwards": forwards, "losses": losses, "wall_s": wall,
            "reported_qps": result.queries_per_second}


# --- sentence-transformers ----------------------------------------------------------------------------------

def sequential_batches(dataset, batch_size, drop_last, **_):
    """Batches in dataset order (ST's default shuffles with a RandomSampler)."""
    from sentence_transformers.base.sampler import DefaultBatchSampler
    from torch.utils.data import SequentialSampler

    return DefaultBatchSampler(SequentialSampler(dataset), batch_size=batch_size, drop_last=drop_last)


class TracedCollator:
    """ST's collator plus the batch's digest and real token counts (under 'bench', popped again in compute_loss)."""

    def __init__(self, inner, columns: list[str]):
        self.inner = inner
        self.columns = columns

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, features):
        batch = self.inner(features)
        rows = [(f[self.columns[0]], [f[c] for c in self.columns[1:]]) for f in features]
        batch["bench"] = batch_stats(rows, batch[f"{self.columns[0]}_attention_mask"],
                                     [batch[f"{c}_attention_mask"] for c in self.columns[1:]])
        return batch


def run_st(args, dataset, total_steps: int, warmup: int, workdir: Path, tag: str) -> dict[str, Any]:
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments)
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from listrank.encoder import default_model_path

    probe = ForwardProbe(args.device)
    batches: list[dict] = []
    losses: list[float] = []
    stamps: list[float] = []
    forwards: list[list[dict]] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, targs, state, control, **kw):
            sync()
            stamps.append(time.perf_counter())
            forwards.append(probe.flush())

    class TracedTrainer(SentenceTransformerTrainer):
        def compute_loss(self, model, inputs, *a, **kw):
            probe.attach(model)
            batches.append(inputs.pop("bench"))
            loss = super().compute_loss(model, inputs, *a, **kw)
            losses.append(float(loss.detach()))
            return loss

    model = SentenceTransformer(str(default_model_path()), device=args.device)
    model.max_seq_length = args.max_length
    targs = SentenceTransformerTrainingArguments(
        output_dir=str(workdir / tag), max_steps=total_steps, per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr, weight_decay=0.01, max_grad_norm=1.0, warmup_steps=warmup,
        lr_scheduler_type="linear", optim=args.st_optim, bf16=args.precision == "bf16", fp16=False,
        use_cpu=args.device == "cpu",
        seed=args.seed, dataloader_drop_last=True, dataloader_num_workers=args.num_workers,
        batch_sampler=sequential_batches, eval_strategy="no", save_strategy="no", logging_strategy="no",
        report_to="none", disable_tqdm=True,
    )
    trainer = TracedTrainer(model=model, args=targs, train_dataset=dataset,
                            loss=MultipleNegativesRankingLoss(model), callbacks=[Stamp()])
    trainer.data_collator = TracedCollator(trainer.data_collator, dataset.column_names)
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    out = {"stamps": stamps, "batches": batches, "forwards": forwards, "losses": losses, "wall_s": wall,
           "optimizer": type(trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer")
                             else trainer.optimizer).__name__}
    if args.device != "cpu":
        out.update(st_device=str(targs.device), st_n_gpu=targs.n_gpu, st_mixed_precision=str(targs.mixed_precision),
                   st_fp16=bool(targs.fp16), st_model_device=str(next(model.parameters()).device))
    return out


def sync() -> None:
    """Wait for the GPU's queued work before a time stamp (nothing to wait for while CUDA is not initialised)."""
    import torch

    if torch.cuda.is_initialized():
        torch.cuda.synchronize()


# --- main ---------------------------------------------------------------------------------------------------

def measure(run: dict, args) -> dict[str, Any]:
    a, b = args.warmup_steps, args.warmup_steps + args.steps
    stamps = run["stamps"]
    seconds = stamps[b - 1] - stamps[a - 1]
    window = run["forwards"][a:b]
    padded = [sum(math.prod(f["shape"]) for f in fw) for fw in window]
    return {
        "seconds": seconds,
        "queries_per_s": args.batch_size * args.steps / seconds,
        "s_per_step": seconds / args.steps,
        "step_s": [round(y - x, 4) for x, y in zip(stamps[a - 1 : b - 1], stamps[a:b])],
        "forward_calls_per_step": statistics.mean(len(fw) for fw in window),
        "padded_tokens_per_step": statistics.mean(padded),
        "autocast": sorted({f["autocast"] for fw in window for f in fw}),
        "torch_threads": sorted({f["threads"] for fw in window for f in fw}),
        "wall_s": run["wall_s"],
        "losses": run["losses"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="msmarco/dl19-pool")
    ap.add_argument("--split", default="test")
    ap.add_argument("--loss", default="wasserstein", choices=["wasserstein", "infonce"], help="listrank's loss")
    ap.add_argument("--batch-size", type=int, default=16, help="queries per step (both)")
    ap.add_argument("--group-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=256, help="tokens per query and per passage (both)")
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--warmup-ratio", type=float, default=0.05, help="lr warmup, as a share of all steps (both)")
    ap.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    ap.add_argument("--warmup-steps", type=int, default=2, help="untimed steps before them (>= 1)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (both)")
    ap.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (both)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="bf16 = autocast on the device (both)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where both sides train")
    ap.add_argument("--length-buckets", type=int, default=None,
                    help="listrank's length-sorted chunks per forward (default: its own, 4 on CPU, 1 = off on CUDA)")
    ap.add_argument("--st-optim", default="adamw_torch", help="transformers optim name for the ST side")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default="runs/bench/train.json")
    args = ap.parse_args()
    if args.warmup_steps < 1 or args.steps < 1:
        ap.error("--warmup-steps and --steps must be >= 1 (timing starts at the end of a step)")
    import importlib.util

    if importlib.util.find_spec("accelerate") is None:
        ap.error("sentence-transformers' trainer needs accelerate: make setup (the dev extra), or pip install accelerate")
    # The Rust tokenizers' thread pool obeys RAYON_NUM_THREADS: keep tokenisation to the same threads.
    os.environ.setdefault("RAYON_NUM_THREADS", str(args.threads))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true" if args.threads > 1 else "false")
    os.environ.setdefault("TQDM_DISABLE", "1")  # ST's model-card and weight-loading bars

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit(f"{ap.prog}: error: --device cuda, but torch {torch.__version__} sees no CUDA GPU")
    cuda = args.device == "cuda"
    torch.set_num_threads(args.threads)
    import datasets
    import sentence_transformers
    import transformers
    from datasets import Dataset
    from rich.console import Console
    from rich.table import Table
    from transformers import AutoTokenizer

    from listrank.encoder import default_model_path
    from listrank.train.config import SourceConfig
    from listrank.train.data import EpochBatches, load_sources

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    load_before = os.getloadavg()

    # The groups, once, exactly as `listrank train` samples them (world size 1, no grad accumulation).
    data = load_sources([SourceConfig(args.dataset, split=args.split)], seed=args.seed)
    data.prepare(args.loss, args.group_size, "repeat")
    total_steps = args.warmup_steps + args.steps
    steps_per_epoch = len(data.lists) // args.batch_size
    if steps_per_epoch == 0:
        ap.error(f"{len(data.lists)} usable lists: fewer than one batch of {args.batch_size}")
    warmup = math.ceil(args.warmup_ratio * total_steps)
    steps: list[list[tuple]] = []
    epochs: dict[int, EpochBatches] = {}
    for s in range(total_steps):
        e = s // steps_per_epoch
        if e not in epochs:
            epochs[e] = EpochBatches(data.lists, tokenizer=None, group_size=args.group_size, batch_size=args.batch_size,
                                     world_size=1, rank=0, seed=args.seed, epoch=e, query_max_length=args.max_length,
                                     passage_max_length=args.max_length)
        steps.append(epochs[e].groups(s % steps_per_epoch))
    rows = []
    for groups in steps:
        for ql, group in groups:
            ordered = sorted(range(len(group)), key=lambda i: -group[i].label)  # stable: ties keep listrank's order
            pos, negs = group[ordered[0]], [group[i] for i in range(len(group)) if i != ordered[0]]
            rows.append({"anchor": ql.query, "positive": pos.text, **{f"negative_{i + 1}": n.text for i, n in enumerate(negs)}})
    st_data = Dataset.from_list(rows)
    expected = [digest([(ql.query, [p.text for p in g]) for ql, g in groups]) for groups in steps]

    tok = AutoTokenizer.from_pretrained(str(default_model_path()))
    timed = [g for groups in steps[args.warmup_steps :] for g in groups]
    q_len = [len(x) for x in tok([ql.query for ql, _ in timed], truncation=True, max_length=args.max_length)["input_ids"]]
    p_len = [len(x) for x in tok([p.text for _, g in timed for p in g], truncation=True, max_length=args.max_length)["input_ids"]]
    untruncated = [len(x) for x in tok([p.text for _, g in timed for p in g])["input_ids"]]

    console.print(f"{args.dataset}:{args.split}: {len(data.lists)} lists, {steps_per_epoch} steps/epoch, "
                  f"{total_steps} steps ({args.warmup_steps} untimed) = {total_steps / steps_per_epoch:.1f} epochs; "
                  f"batch {args.batch_size} x group {args.group_size}, max length {args.max_length}, {args.precision}, "
                  f"threads {args.threads}, workers {args.num_workers}, lr warmup {warmup} step(s)")
    console.print(f"timed steps: mean tokens per passage {statistics.mean(p_len):.1f} "
                  f"({sum(u > args.max_length for u in untruncated)} of {len(untruncated)} truncated), "
                  f"per query {statistics.mean(q_len):.1f}; load average {load_before[0]:.2f}")
    gpu = torch.cuda.get_device_name() if cuda else None
    if cuda:
        console.print(f"device cuda: {gpu}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
                      f"bf16 supported: {torch.cuda.is_bf16_supported()}, TF32 matmul: {torch.backends.cuda.matmul.allow_tf32}")

    results: dict[str, list[dict]] = {"sentence-transformers": [], "listrank": []}
    checks: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        for rep in range(args.repeats):
            for side in results:
                load = os.getloadavg()[0]
                if cuda:  # free the previous run's model and optimizer, then measure this run's own peak
                    gc.collect()
                    torch.cuda.synchronize()
                    torch.cuda.empty_cache()
                    cuda_start = torch.cuda.memory_allocated()
                    torch.cuda.reset_peak_memory_stats()
                if side == "listrank":
                    run = run_listrank(args, total_steps, warmup, Path(tmp), f"listrank-{rep}")
                else:
                    run = run_st(args, st_data, total_steps, warmup, Path(tmp), f"st-{rep}")
                if cuda:
                    torch.cuda.synchronize()
                    run["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
                    run["cuda_allocated_at_start_mib"] = round(cuda_start / 2**20, 1)
                got = [b["digest"] for b in run["batches"]]
                if got != expected:
                    bad = next((i for i, (x, y) in enumerate(zip(got, expected)) if x != y), min(len(got), len(expected)))
                    checks.append(f"{side} repeat {rep}: batch texts differ from the prepared groups (first at step {bad + 1})")
                m = measure(run, args)
                m.update(repeat=rep, load_avg_1m=load, first_batch_digest=got[0] if got else None,
                         q_tokens_per_step=[b["q_tokens"] for b in run["batches"]],
                         p_tokens_per_step=[b["p_tokens"] for b in run["batches"]])
                if "optimizer" in run:
                    m["optimizer"] = run["optimizer"]
                for key in ("cuda_peak_mib", "cuda_allocated_at_start_mib", "st_device", "st_n_gpu", "st_mixed_precision",
                            "st_fp16", "st_model_device"):
                    if key in run:
                        m[key] = run[key]
                if cuda:
                    m["devices"] = sorted({f.get("device") for fw in run["forwards"] for f in fw}, key=str)
                results[side].append(m)
                console.print(f"[{rep}] {side:22s} {m['queries_per_s']:7.3f} queries/s ({m['s_per_step']:.2f} s/step, "
                              f"{m['forward_calls_per_step']:.0f} forwards/step, {m['padded_tokens_per_step']:.0f} "
                              f"padded tokens/step, autocast {m['autocast']}), first batch {m['first_batch_digest']}"
                              + (f", peak GPU {m['cuda_peak_mib']:.0f} MiB (at start {m['cuda_allocated_at_start_mib']:.0f}), "
                                 f"devices {m['devices']}" if cuda else ""))
    load_after = os.getloadavg()

    st_runs, lr_runs = results["sentence-transformers"], results["listrank"]
    for a, b in zip(st_runs, lr_runs):
        if a["p_tokens_per_step"] != b["p_tokens_per_step"] or a["q_tokens_per_step"] != b["q_tokens_per_step"]:
            checks.append(f"repeat {a['repeat']}: real token counts per step differ between the sides")
    for side, runs in results.items():
        for r in runs:
            want = [args.precision == "bf16"]
            if r["autocast"] != want:
                checks.append(f"{side} repeat {r['repeat']}: autocast {r['autocast']}, expected {want}")
            if r["torch_threads"] != [args.threads]:
                checks.append(f"{side} repeat {r['repeat']}: torch threads {r['torch_threads']} during training")
            if cuda and r["devices"] != ["cuda"]:
                checks.append(f"{side} repeat {r['repeat']}: transformer weights on {r['devices']}, expected ['cuda']")
            if cuda and side == "sentence-transformers":
                want_mp = "bf16" if args.precision == "bf16" else "no"
                if (not r["st_device"].startswith("cuda") or r["st_n_gpu"] != 1 or r["st_fp16"]
                        or r["st_mixed_precision"] != want_mp or not r["st_model_device"].startswith("cuda")):
                    checks.append(f"{side} repeat {r['repeat']}: trainer device {r['st_device']} (n_gpu {r['st_n_gpu']}), "
                                  f"model on {r['st_model_device']}, mixed precision {r['st_mixed_precision']}, "
                                  f"fp16 {r['st_fp16']}; expected cuda, 1 GPU, {want_mp}, no fp16")

    median = {side: statistics.median(r["queries_per_s"] for r in runs) for side, runs in results.items()}
    ratio = median["listrank"] / median["sentence-transformers"]
    table = Table(title=f"training throughput, {args.steps} timed steps x {args.repeats} repeat(s)", title_justify="left")
    for col, justify in [("trainer", "left"), ("queries/s (median)", "right"), ("runs: queries/s", "right"),
                         ("s/step", "right"), ("forwards/step", "right"), ("padded tokens/step", "right"),
                         ("ratio vs ST", "right")] + ([("peak GPU MiB", "right")] if cuda else []):
        table.add_column(col, justify=justify)
    labels = {"sentence-transformers": f"sentence-transformers {sentence_transformers.__version__} (MNRL)",
              "listrank": f"listrank ({args.loss})"}
    for side, runs in results.items():
        table.add_row(labels[side], f"{median[side]:.3f}", ", ".join(f"{r['queries_per_s']:.3f}" for r in runs),
                      f"{statistics.median(r['s_per_step'] for r in runs):.2f}",
                      f"{runs[0]['forward_calls_per_step']:.0f}",
                      f"{statistics.median(r['padded_tokens_per_step'] for r in runs):.0f}",
                      f"{median[side] / median['sentence-transformers']:.2f}x",
                      *([f"{max(r['cuda_peak_mib'] for r in runs):.0f}"] if cuda else []))
    console.print(table)
    console.print(f"listrank / sentence-transformers = [bold]{ratio:.2f}x[/] (goal >= 1.2x); "
                  f"load average {load_before[0]:.2f} -> {load_after[0]:.2f} on {os.cpu_count()} CPUs"
                  + (f"; {gpu}" if cuda else ""))
    if checks:
        for c in checks:
            console.print(f"[red]check failed:[/] {c}")
    else:
        console.print("checks: same texts per batch on both sides (digests match the prepared groups), same real "
                      "token counts per step, autocast and threads as asked")

    out = {
        "benchmark": "bench_train",
        "settings": {**vars(args), "total_steps": total_steps, "lr_warmup_steps": warmup, "weight_decay": 0.01,
                     "max_grad_norm": 1.0, "lr_schedule": "linear warmup, linear decay",
                     "st_loss": "MultipleNegativesRankingLoss (scale 20, cos_sim)",
                     "st_batch_sampler": "sequential (DefaultBatchSampler over SequentialSampler), drop_last"},
        "data": {"lists": len(data.lists), "steps_per_epoch": steps_per_epoch, "epochs": total_steps / steps_per_epoch,
                 "report": data.report.to_json(), "expected_digests": expected,
                 "timed_mean_passage_tokens": statistics.mean(p_len), "timed_mean_query_tokens": statistics.mean(q_len),
                 "timed_truncated_passages": sum(u > args.max_length for u in untruncated),
                 "timed_passages": len(untruncated)},
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "RAYON_NUM_THREADS": os.environ.get("RAYON_NUM_THREADS"),
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                    "load_avg_before": load_before, "load_avg_after": load_after, "python": sys.version.split()[0],
                    "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                                 "sentence_transformers": sentence_transformers.__version__,
                                 "datasets": datasets.__version__},
                    **({"gpu": gpu, "cuda": torch.version.cuda} if cuda else {})},
        "median_queries_per_s": median,
        "ratio_listrank_over_st": ratio,
        "checks_failed": checks,
        "runs": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    console.print(f"wrote {args.out}")
    if checks:
        sys.exit(1)


if __name__ == "__main__":
    main()

"""The training loop of `listrank train`: bi-encoder, list-wise loss, AdamW, checkpoints, DDP.

`train(config)` runs one training job end to end:

1. sets up torch.distributed when launched by `torchrun` (`WORLD_SIZE` > 1; NCCL on CUDA, gloo on
   CPU), builds the `Encoder` (HF model + pooling + optional normalisation) and loads the data
   (`listrank.train.data`), rank 0 first so that mining caches are written once;
2. per micro-batch: query and passage embeddings of this rank's queries, all-gathered across ranks
   with autograd flowing through the local shard, `scores = q @ p.T` `[B, B*G]` over the global
   batch, the loss of `listrank.losses`. DDP averages gradients over ranks while every rank's
   gradient is only its own shard's part of the global loss's gradient, so the loss is scaled by
   the world size: the update equals that of one process on the global batch. The micro-batch
   itself (direct, or with gradient caching) is `listrank.train.step`;
3. AdamW with warmup + linear decay, gradient accumulation, clipping, bf16 autocast, gradient
   checkpointing; a non-finite loss or gradient skips the step with a warning and aborts after
   `max_nonfinite` in a row; out-of-memory errors name the knobs to turn;
4. checkpoints `checkpoints/step-N/` (model in sentence-transformers layout, optimizer, scheduler,
   RNG of every rank; written atomically) that `resume=True` continues from exactly;
5. with `--eval-dataset`/`--eval-holdout`, nDCG@10 before step 0 and every `eval_steps` steps
   (`listrank.train.validate`); the best step's model (the start model if no step beats it) is the
   final model;
6. the final model in the output folder, with `listrank.json` (base model, loss,
   hyper-parameters, data fingerprint), `train_log.jsonl` (one line per step) and
   `train_curve.png` (loss and learning rate).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from rich.markup import escape
from rich.progress import TextColumn

from listrank import __version__
from listrank.atomic import atomic_dir, atomic_write
from listrank.errors import ListrankError
from listrank.progress import progress_bar, stderr_console
from listrank.train.checkpoints import (
    CKPT_DIR, META_FILE, RNG_FILE, STATE_FILE, Checkpoint, CheckpointStore, load_weights, nonfinite_parameters,
    rng_state, set_rng_state, verify,
)
from listrank.train.config import TrainConfig, field_defaults
from listrank.train.data import DataReport, EpochBatches, TrainData, bm25_miner, dense_miner, load_sources
from listrank.train.distributed import Dist, rank0_first, rank0_only, rank0_try, setup_distributed
from listrank.train.report import plot_log, report_data, summary_table  # noqa: F401 (re-exported)
from listrank.train.step import BiEncoder, gather_with_grad, micro_step  # noqa: F401 (re-exported)
from listrank.train.validate import METRIC, ValidationSet, dataset_validation, holdout_validation, split_holdout

LOG_FILE = "train_log.jsonl"
PLOT_FILE = "train_curve.png"
BEST_DIR = "best"  # the best validated model so far (removed once the final model is written)
HOLDOUT_FILE = "validation_queries.txt"  # --eval-holdout: the held-out query ids, one a line
FORMAT = "listrank-train/1"
# Settings a resumed run may change (they do not change the arithmetic of training; the data
# itself is checked through its fingerprint, so sources may move).
RESUMABLE_CHANGES = {"output", "sources", "resume", "overwrite", "progress", "plot", "num_workers", "length_buckets", "log_steps",
                     "save_steps", "save_total_limit", "device", "max_nonfinite", "skip_invalid",
                     "grad_cache_chunk", "eval_batch_size", "keep_checkpoints"}
_DEFAULTS = field_defaults()  # a checkpoint written before a setting existed had its default
OOM_HINT = (
    "out of memory: lower --batch-size (and raise --grad-accum to keep the batch), shorten "
    "--query-max-length/--passage-max-length, lower --group-size, turn on --gradient-checkpointing, "
    "or use --precision bf16 on a GPU that supports it"
)


@dataclass
class TrainResult:
    output: Path
    steps: int
    total_steps: int
    epochs: float
    final_loss: float | None
    seconds: float
    queries_per_second: float
    skipped_steps: int
    resumed_from: int | None
    world_size: int
    global_batch: int
    data: DataReport
    fingerprint: str
    log: list[dict[str, Any]] = field(default_factory=list)
    rank: int = 0
    validation: dict[str, Any] | None = None  # see Trainer._validation_meta


# --- optimizer and schedule ----------------------------------------------------------------------------

def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and normalisation weights (the usual BERT recipe)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_eps)


def warmup_linear(warmup: int, total: int) -> Callable[[int], float]:
    """lr factor: 0 -> 1 linearly over `warmup` steps, then linearly down to 0 at `total`."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


# --- the job ---------------------------------------------------------------------------------------------

class Trainer:
    """One training job (`train()` runs one). Extension points for subclasses: `batches_class`
    (the dataset of one epoch's micro-batches) and `micro_step`."""

    batches_class = EpochBatches

    def __init__(self, config: TrainConfig, *, data_dir: str | os.PathLike | None = None,
                 on_step: Callable[[int, dict], None] | None = None):
        config.validate()
        self.config = config
        self.data_dir = data_dir
        self.on_step = on_step
        self.output = Path(config.output)
        self.d = Dist()
        self.held_out: list = []
        # validation: the best step so far and the start model's score (kept in checkpoints)
        self.best: dict[str, Any] = {"step": None, "score": None, "baseline": None}
        self.store = CheckpointStore(self.output, config.save_total_limit)
        self.prepared = False  # the output folder was checked (and made) by this run
        self.probe_texts: list[str] = []  # a query and a passage, encoded before a model is written
        self.bad_streak = 0  # non-finite steps in a row
        self.skipped = 0  # non-finite steps in all

    # -- console
    def info(self, message: str) -> None:
        if self.d.main and self.config.progress:
            stderr_console.print(message, highlight=False)

    def warn(self, message: str) -> None:
        if self.d.main:
            stderr_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)

    # -- setup
    def _prepare_output(self) -> int | None:
        """Check the output folder; returns the checkpoint step to resume from, if any."""
        out, cfg = self.output, self.config
        if out.exists() and not out.is_dir():
            raise ListrankError(f"output {out} exists and is not a folder")
        existing = [p for p in out.iterdir()] if out.exists() else []
        if cfg.resume:
            meta = out / META_FILE
            if meta.exists() and json.loads(meta.read_text()).get("finished"):
                steps = json.loads(meta.read_text()).get("steps")
                raise ListrankError(f"{out} holds a finished model ({steps} steps): nothing to resume; "
                                    "pass --overwrite instead of --resume to train it again")
            found = self.store.newest_intact(self.warn)
            if found is not None:
                return found.step
            if self.store.all():
                raise ListrankError(f"--resume: every checkpoint in {self.store.root} is damaged (see the warnings); "
                                    "nothing to resume from: start over with --overwrite")
            self.warn(f"--resume: no checkpoint in {out / CKPT_DIR}; starting from the beginning")
            out.mkdir(parents=True, exist_ok=True)
            return None
        if existing:
            ours = any((out / n).exists() for n in (META_FILE, LOG_FILE, CKPT_DIR))
            if not cfg.overwrite:
                raise ListrankError(
                    f"output folder {out} is not empty; pass --resume to continue its training or --overwrite to start over"
                )
            if not ours:
                raise ListrankError(f"refusing to --overwrite {out}: it does not look like a listrank training folder")
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        return None

    def _load_data(self, get_encoder: Callable[[], Any]) -> TrainData:
        cfg = self.config

        def miner(kind: str):
            if kind == "dense":
                return dense_miner(get_encoder())
            return bm25_miner()

        data = load_sources(cfg.sources, skip_invalid=cfg.skip_invalid, max_queries=cfg.max_queries,
                            data_dir=self.data_dir, miner_factory=miner, work_dir=self.output, seed=cfg.seed)
        if cfg.eval_holdout:
            data.lists, self.held_out = split_holdout(data.lists, cfg.eval_holdout, cfg.seed)
            data.report.held_out = len(self.held_out)
        data.prepare(cfg.loss, cfg.group_size, cfg.pad)
        return data

    def _validation_set(self) -> ValidationSet:
        cfg = self.config
        if cfg.eval_dataset:
            return dataset_validation(cfg.eval_dataset, cfg.eval_split, cfg.eval_force, data_dir=self.data_dir)
        with atomic_write(self.output / HOLDOUT_FILE) as fh:
            fh.writelines(f"{ql.query_id}\n" for ql in self.held_out)
        return holdout_validation(self.held_out, cfg.eval_holdout)

    def _device(self) -> torch.device:
        if self.config.device and self.config.device != "cuda":
            return torch.device(self.config.device)
        if torch.cuda.is_available():
            return torch.device("cuda", self.d.local_rank % torch.cuda.device_count())
        if self.config.device == "cuda":
            raise ListrankError("--device cuda: no CUDA GPU is available")
        return torch.device("cpu")

    # -- main
    def run(self) -> TrainResult:
        cfg = self.config
        self.d = setup_distributed(cfg.device)
        fresh = not self.output.exists() or (cfg.overwrite and not cfg.resume)
        try:
            return self._run()
        except torch.OutOfMemoryError:
            self._clean_up_failed(fresh)
            raise ListrankError(OOM_HINT) from None
        except RuntimeError as e:
            self._clean_up_failed(fresh)
            text = str(e)
            if "out of memory" in text or "can't allocate memory" in text or "CUDNN_STATUS_ALLOC_FAILED" in text:
                raise ListrankError(f"{OOM_HINT} ({text.splitlines()[0][:200]})") from None
            raise
        except BaseException:
            self._clean_up_failed(fresh)
            raise
        finally:
            if self.d.owns_group and dist.is_initialized():
                dist.destroy_process_group()

    def _clean_up_failed(self, fresh: bool) -> None:
        """A failed run that this command started from nothing leaves no folder behind, unless it got
        as far as a checkpoint (which `--resume` can continue from)."""
        if not (fresh and self.d.main and self.output.is_dir() and self.prepared):
            return
        if any(verify(c.path) is None for c in self.store.all()):
            return
        shutil.rmtree(self.output, ignore_errors=True)

    def _run(self) -> TrainResult:
        from listrank import losses
        from listrank.encoder import Encoder

        cfg, d = self.config, self.d
        t_start = time.perf_counter()
        resume_step = rank0_only(d, self._prepare_output)
        self.prepared = True
        loss_fn = losses.get(cfg.loss, **cfg.loss_options)
        need = losses.trait(loss_fn, "min_queries")
        if cfg.batch_size * d.world < need:
            raise ListrankError(f"the {cfg.loss} loss needs at least {need} queries per batch: raise --batch-size")
        _quiet_hf()
        device = self._device()
        built: list[Any] = []

        def get_encoder():
            if not built:
                built.append(Encoder(cfg.model, pooling=cfg.pooling, normalize=cfg.normalize,
                                     max_length=cfg.passage_max_length, device=device,
                                     precision="fp32" if cfg.precision == "fp32" else "auto",
                                     trust_remote_code=cfg.trust_remote_code))
            return built[0]

        # Data first (bad records fail fast); the encoder is built early only if mining needs it.
        data = rank0_first(d, lambda: self._load_data(get_encoder))
        if data.lists:
            self.probe_texts = [data.lists[0].query, data.lists[0].all_passages()[0].text]
        validation = rank0_try(d, self._validation_set) if (cfg.eval_dataset or cfg.eval_holdout) else None
        validating = bool(cfg.eval_dataset or cfg.eval_holdout)
        torch.manual_seed(cfg.seed)
        encoder = get_encoder()
        base_spec = encoder.spec()
        fingerprint = data.fingerprint()
        self._report_data(data)
        global_batch = cfg.batch_size * d.world
        micro_per_epoch = len(data.lists) // global_batch
        steps_per_epoch = micro_per_epoch // cfg.grad_accum
        if steps_per_epoch == 0:
            raise ListrankError(
                f"only {len(data.lists)} usable lists: fewer than one optimizer step needs "
                f"(batch {cfg.batch_size} x {d.world} rank(s) x grad-accum {cfg.grad_accum} = "
                f"{global_batch * cfg.grad_accum} queries); lower --batch-size or --grad-accum, or add data"
            )
        total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
        warmup = cfg.warmup_steps if cfg.warmup_steps is not None else math.ceil(cfg.warmup_ratio * total_steps)

        pooler = getattr(encoder.transformer, "pooler", None)
        if isinstance(pooler, torch.nn.Module):  # BERT's pooler never reaches the embeddings
            pooler.requires_grad_(False)
        if cfg.gradient_checkpointing:
            encoder.transformer.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        encoder.train()
        buckets = cfg.length_buckets if cfg.length_buckets is not None else (1 if device.type == "cuda" else 4)
        model: torch.nn.Module = BiEncoder(encoder, buckets, getattr(encoder.tokenizer, "padding_side", "right"))
        if d.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                        find_unused_parameters=True)
        optimizer = make_optimizer(encoder, cfg)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_linear(warmup, total_steps))

        step = 0
        if resume_step is not None:
            step, self.bad_streak, self.skipped = self._resume(resume_step, encoder, optimizer, scheduler, fingerprint)
            self.info(f"resuming from {self.output / CKPT_DIR / f'step-{resume_step}'} (step {step}/{total_steps})")
        log = self._read_log(step) if d.main else []
        evals = [r for r in log if "eval" in r]
        log = [r for r in log if "eval" not in r]

        use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda"
                                                and torch.cuda.is_bf16_supported())
        autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)  # noqa: E731
        meta_base = self._meta(base_spec, fingerprint, data, total_steps, global_batch, use_bf16, warmup)

        columns = (TextColumn("loss {task.fields[loss]}"), TextColumn("lr {task.fields[lr]}"),
                   TextColumn("{task.fields[qps]} q/s"))
        last_loss: float | None = next((r["loss"] for r in reversed(log) if r.get("loss") is not None), None)
        if validating and resume_step is None:
            self._validate(validation, encoder, 0, steps_per_epoch, evals)  # the untrained start
        t_loop = time.perf_counter()
        steps_run = 0
        with progress_bar(*columns, enabled=cfg.progress and d.main) as bar:
            task = bar.add_task("train", total=total_steps, completed=step, loss="-", lr="-", qps="-")
            while step < total_steps:
                epoch = step // steps_per_epoch
                it = iter(self._epoch_loader(data, encoder, epoch, step, steps_per_epoch, device))
                epoch_end = min(total_steps, (epoch + 1) * steps_per_epoch)
                while step < epoch_end:
                    t0 = time.perf_counter()
                    loss_mean, grad_norm, lr = self._optimizer_step(step, it, model, encoder, optimizer, scheduler,
                                                                    loss_fn, device, autocast)
                    nonfinite = not math.isfinite(loss_mean)
                    step += 1
                    steps_run += 1
                    dt = time.perf_counter() - t0
                    if not nonfinite:
                        last_loss = loss_mean
                    qps = global_batch * cfg.grad_accum / dt if dt > 0 else float("nan")
                    record = {"step": step, "epoch": round(step / steps_per_epoch, 4),
                              "loss": _finite_or_none(loss_mean), "lr": lr, "grad_norm": _finite_or_none(grad_norm), "queries_per_s": round(qps, 3),
                              "elapsed_s": round(time.perf_counter() - t_start, 3), "skipped": nonfinite}
                    if d.main:
                        log.append(record)
                        if step % cfg.log_steps == 0 or step == total_steps:
                            self._append_log(record)
                        bar.update(task, completed=step, loss=f"{loss_mean:.4f}", lr=f"{lr:.2e}", qps=f"{qps:.1f}")
                    if validating and (step == total_steps or (cfg.eval_steps and step % cfg.eval_steps == 0)):
                        self._validate(validation, encoder, step, steps_per_epoch, evals)
                    if cfg.save_steps and step % cfg.save_steps == 0 and step < total_steps:
                        self._save_checkpoint(encoder, optimizer, scheduler, step,
                                              {**meta_base, "steps": step, "finished": False, "last_loss": last_loss})
                    if self.on_step is not None:
                        self.on_step(step, record)
                del it
        loop_s = time.perf_counter() - t_loop
        qps_total = steps_run * global_batch * cfg.grad_accum / loop_s if loop_s > 0 and steps_run else 0.0
        seconds = time.perf_counter() - t_start
        meta = {**meta_base, "steps": step, "finished": True, "final_loss": last_loss, "skipped_steps": self.skipped,
                "seconds": round(seconds, 2), "queries_per_second": round(qps_total, 3)}
        validation_meta = None
        if d.main:
            if validating:
                validation_meta = self._validation_meta(validation, evals, step)
                meta["validation"] = validation_meta
                if self.best["step"] != step and cfg.final_model == "best":
                    self._load_best(encoder)
                self._report_validation(validation_meta)
            self._check_model(encoder, "the final model")
            self._save_final(encoder, meta)
            if validating:
                shutil.rmtree(self.output / BEST_DIR, ignore_errors=True)
            if not cfg.keep_checkpoints:  # the model is written; its checkpoints were only for resuming
                self.store.remove_all()
            if cfg.plot:
                plot_log(log, self.output / PLOT_FILE, evals)
        d.barrier()
        return TrainResult(
            output=self.output, steps=step, total_steps=total_steps, epochs=step / steps_per_epoch,
            final_loss=last_loss, seconds=seconds, queries_per_second=qps_total, skipped_steps=self.skipped,
            resumed_from=resume_step, world_size=d.world, global_batch=global_batch, data=data.report,
            fingerprint=fingerprint, log=log, rank=d.rank, validation=validation_meta,
        )

    # -- one epoch's batches, one optimizer step, one micro-batch
    def _epoch_loader(self, data: TrainData, encoder, epoch: int, step: int, steps_per_epoch: int, device):
        """The DataLoader of `epoch` from optimizer step `step` on (a resumed run starts mid-epoch)."""
        cfg, d = self.config, self.d
        batches = self.batches_class(
            data.lists, tokenizer=encoder.tokenizer, group_size=cfg.group_size, batch_size=cfg.batch_size,
            world_size=d.world, rank=d.rank, seed=cfg.seed, epoch=epoch,
            query_max_length=cfg.query_max_length, passage_max_length=cfg.passage_max_length,
            start=(step % steps_per_epoch) * cfg.grad_accum,
        )
        batches.n_batches = steps_per_epoch * cfg.grad_accum  # whole optimizer steps only
        return torch.utils.data.DataLoader(
            batches, batch_size=None, shuffle=False, num_workers=cfg.num_workers,
            generator=torch.Generator().manual_seed(cfg.seed + epoch), pin_memory=device.type == "cuda",
        )

    def _optimizer_step(self, step: int, it, model, encoder, optimizer, scheduler, loss_fn, device,
                        autocast) -> tuple[float, float, float]:
        """`grad_accum` micro-batches, then the update; a non-finite loss or gradient skips the update
        (the schedule still advances) and too many in a row abort. Returns (mean loss or nan, gradient
        norm, the lr used)."""
        cfg, d = self.config, self.d
        micro_losses: list[float] = []
        nonfinite = False
        for a in range(cfg.grad_accum):
            item = next(it)
            sync = d.world == 1 or a == cfg.grad_accum - 1
            with model.no_sync() if not sync else contextlib.nullcontext():
                loss_value = self.micro_step(model, item, loss_fn, device, autocast, d)
            if loss_value is None or not math.isfinite(loss_value):
                nonfinite = True
            else:
                micro_losses.append(loss_value)
        grad_norm = self._grad_norm(encoder)
        if nonfinite or not math.isfinite(grad_norm):
            self.bad_streak += 1
            self.skipped += 1
            what = "loss" if nonfinite else "gradient norm"
            self.warn(f"step {step + 1}: non-finite {what}; step skipped "
                      f"({self.bad_streak} in a row, abort after {cfg.max_nonfinite})")
            optimizer.zero_grad(set_to_none=True)
            if self.bad_streak >= cfg.max_nonfinite:
                raise ListrankError(
                    f"aborted: non-finite loss or gradients for {self.bad_streak} steps in a row "
                    f"(last at step {step + 1}); lower --lr, raise --temperature, use --precision fp32, "
                    f"or check the training data for empty or broken passages"
                )
            nonfinite = True
        else:
            self.bad_streak = 0
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            self._check_finite_weights(encoder, f"step {step + 1}")
        lr = scheduler.get_last_lr()[0]
        with warnings.catch_warnings():  # a skipped step still advances the schedule
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            scheduler.step()
        loss_mean = sum(micro_losses) / len(micro_losses) if micro_losses and not nonfinite else float("nan")
        return loss_mean, grad_norm, lr

    def micro_step(self, model, item, loss_fn, device, autocast, d: Dist) -> float | None:
        """Forward, loss and backward of one micro-batch; returns the loss (None if not finite).

        A subclass may wrap it to observe training (benchmarks/bench_train.py times forwards)."""
        cfg = self.config
        # DDP averages gradients over ranks; each rank holds only its shard's part of the global gradient.
        return micro_step(model, item, loss_fn, device=device, autocast=autocast, d=d, temperature=cfg.temperature,
                          scale=d.world / cfg.grad_accum, chunk=cfg.grad_cache_chunk)

    # -- validation
    def _validate(self, validation: ValidationSet | None, encoder, step: int, steps_per_epoch: int,
                  evals: list[dict]) -> None:
        """nDCG@10 now (rank 0; the others wait); a new best is written to `best/`."""
        d, cfg = self.d, self.config
        if d.main:
            t0 = time.perf_counter()
            score = validation.score(encoder, cfg.eval_batch_size, work_dir=self.output)
            if step == 0:
                self.best["baseline"] = score
            # a trained step must beat the best so far, and the start model by --eval-min-gain
            improved = self.best["score"] is None or (
                score > self.best["score"] and score >= self.best["baseline"] + cfg.eval_min_gain)
            if improved:
                if cfg.final_model == "best":  # --final-model last never loads it
                    with atomic_dir(self.output / BEST_DIR) as tmp:
                        encoder.save(tmp)
                        (tmp / "best.json").write_text(json.dumps({"step": step, "score": score}))
                self.best.update(step=step, score=score)
            record = {"step": step, "epoch": round(step / steps_per_epoch, 4), "eval": METRIC, "score": score,
                      "best": improved, "eval_seconds": round(time.perf_counter() - t0, 3)}
            evals.append(record)
            self._append_log(record)
            note = "new best" if improved else f"best {self.best['score']:.4f} at step {self.best['step']}"
            self.info(f"step {step}: validation {METRIC} {score:.4f} ({note})")
        d.barrier()

    def _load_best(self, encoder) -> None:
        folder = self.output / BEST_DIR
        saved = json.loads((folder / "best.json").read_text()) if (folder / "best.json").exists() else {}
        if saved.get("step") != self.best["step"]:
            raise ListrankError(f"{folder} holds step {saved.get('step')}, not the best validated step "
                                f"{self.best['step']} (interrupted and resumed past it?); the final model was not written")
        load_weights(encoder, folder)

    def _validation_meta(self, validation: ValidationSet, evals: list[dict], last_step: int) -> dict[str, Any]:
        best_step = self.best["step"]
        if best_step == last_step:
            final = "last step"
        elif self.config.final_model == "last":
            final = "last step (--final-model last)"
        elif best_step == 0:
            margin = self.config.eval_min_gain
            final = f"start model (no step beat step 0{f' by {margin:g}' if margin else ''})"
        else:
            final = f"best step {best_step}"
        return {"set": validation.describe(), "metric": METRIC, "eval_steps": self.config.eval_steps,
                "baseline": {"step": 0, "score": self.best["baseline"]},
                "best": {"step": best_step, "score": self.best["score"]}, "min_gain": self.config.eval_min_gain,
                "final_model": final,
                "history": [{"step": r["step"], "score": r["score"]} for r in evals]}

    def _report_validation(self, v: dict[str, Any]) -> None:
        base, best = v["baseline"]["score"], v["best"]
        last = v["history"][-1] if v["history"] else None
        if self.config.final_model == "last" and last is not None and best["step"] != last["step"]:
            self.warn(f"the final model is the last step (--final-model last): validation {METRIC} {last['score']:.4f}, "
                      f"below the best {best['score']:.4f} at step {best['step']} (start {base:.4f})")
        elif best["step"] == 0 and v["history"] and v["history"][-1]["step"] > 0:
            margin = f" by {v['min_gain']:g}" if v["min_gain"] else ""
            self.warn(f"no training step beat the start model{margin} on {v['set']['name']} ({METRIC} {base:.4f} at "
                      "step 0): the final model is the start model")
        else:
            self.info(f"validation {METRIC}: {best['score']:.4f} at step {best['step']} (start {base:.4f}); "
                      f"the final model is the {v['final_model']}")

    def _check_finite_weights(self, encoder, when: str) -> None:
        """Never go on with a model whose weights hold NaN or infinity (they give NaN scores that
        rank documents arbitrarily); finite gradients can still overflow the weights at a huge lr."""
        bad = nonfinite_parameters(encoder)
        if bad:
            self._refuse(when, f"the model's weights are not finite (NaN or infinity in {len(bad)} tensor(s), "
                               f"e.g. {bad[0]}) although the gradients were")

    def _check_model(self, encoder, when: str) -> None:
        """Before a model is written: finite weights, and finite embeddings of two training texts
        (weights of 1e30 are finite, yet every score they give is NaN)."""
        self._check_finite_weights(encoder, when)
        if self.probe_texts and not np.isfinite(encoder.encode(self.probe_texts)).all():
            self._refuse(when, "the model gives non-finite embeddings (its weights overflowed)")

    def _refuse(self, when: str, what: str) -> None:
        kept = [c for c in self.store.all() if verify(c.path) is None]
        where = f"; the newest intact checkpoint is {kept[-1].path}" if kept else ""
        raise ListrankError(f"{when}: {what}: --lr {self.config.lr:g} is too high for this model (or the data holds "
                            f"broken passages); the model was not written{where}")

    def _grad_norm(self, encoder) -> float:
        params = [p for p in encoder.parameters() if p.grad is not None]
        if not params:
            return float("nan")
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm else float("inf")
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    # -- reporting
    def _report_data(self, data: TrainData) -> None:
        report_data(data, self.config.loss, self.config.group_size, warn=self.warn, info=self.info)

    def _meta(self, base_spec, fingerprint, data: TrainData, total_steps, global_batch, use_bf16, warmup) -> dict:
        import transformers

        cfg = self.config
        return {
            "format": FORMAT,
            "listrank_version": __version__,
            "base_model": {"model": base_spec.model, "weights_sha256": base_spec.weights_sha256},
            "pooling": cfg.pooling,
            "normalize": cfg.normalize,
            "query_max_length": cfg.query_max_length,
            "passage_max_length": cfg.passage_max_length,
            "temperature": cfg.temperature,
            "loss": cfg.loss,
            "loss_options": cfg.loss_options,
            "hyperparameters": cfg.to_json(),
            "total_steps": total_steps,
            "warmup_steps": warmup,
            "world_size": self.d.world,
            "global_batch": global_batch,
            "precision": "bf16" if use_bf16 else "fp32",
            "data": {"fingerprint": fingerprint, "sources": data.source_specs, "report": data.report.to_json(),
                     # where dataset ids resolved: --data-dir, else $LISTRANK_DATA (None: neither)
                     "data_dir": str(Path(self.data_dir).resolve()) if self.data_dir else os.environ.get("LISTRANK_DATA")},
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        }

    # -- logs
    def _read_log(self, upto: int) -> list[dict]:
        """The step log up to step `upto` (a resumed run drops lines past its checkpoint)."""
        path = self.output / LOG_FILE
        if not path.exists():
            return []
        kept = []
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if rec.get("step", 0) <= upto:
                kept.append(rec)
        with atomic_write(path) as fh:
            fh.writelines(json.dumps(r) + "\n" for r in kept)
        return kept

    def _append_log(self, record: dict) -> None:
        with open(self.output / LOG_FILE, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    # -- saving
    def _save_checkpoint(self, encoder, optimizer, scheduler, step, meta) -> None:
        d = self.d
        rng = rng_state()
        if d.world > 1:
            states: list[Any] = [None] * d.world
            dist.all_gather_object(states, rng)
        else:
            states = [rng]

        def write(tmp: Path) -> None:  # rank 0 only
            encoder.save(tmp)
            torch.save({"step": step, "bad_streak": self.bad_streak, "skipped": self.skipped,
                        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "validation": json.dumps(self.best)},
                       tmp / STATE_FILE)
            torch.save({"world_size": d.world, "ranks": states}, tmp / RNG_FILE)
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2))

        self._check_model(encoder, f"checkpoint step-{step}")
        rank0_only(d, lambda: self.store.save(step, write) and None)  # a failed verify stops every rank

    def _resume(self, step, encoder, optimizer, scheduler, fingerprint) -> tuple[int, int, int]:
        ckpt = Checkpoint(step, self.store.root / f"step-{step}")
        meta = ckpt.meta()
        if meta.get("data", {}).get("fingerprint") != fingerprint:
            raise ListrankError(f"cannot resume from {ckpt.path}: the training data changed since it was written "
                                "(data fingerprint differs); start a new run with --overwrite")
        old = meta.get("hyperparameters", {})
        new = self.config.to_json()
        diff = sorted(k for k in set(old) | set(new) if k not in RESUMABLE_CHANGES and old.get(k, _DEFAULTS.get(k)) != new.get(k))
        if diff:
            raise ListrankError(f"cannot resume from {ckpt.path}: settings differ from the checkpoint's ({', '.join(diff)})")
        if meta.get("world_size") != self.d.world:
            raise ListrankError(f"cannot resume from {ckpt.path}: it was written by {meta.get('world_size')} process(es), "
                                f"this run has {self.d.world}")
        load_weights(encoder, ckpt.path)
        state = ckpt.trainer_state()
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(ckpt.rng_states()["ranks"][self.d.rank])
        if state.get("validation"):
            self.best = json.loads(state["validation"])
        return int(state["step"]), int(state["bad_streak"]), int(state["skipped"])

    def _save_final(self, encoder, meta: dict) -> None:
        """Write the model into the output folder file by file (each an atomic rename), listrank.json last."""
        out = self.output
        stale = out / META_FILE
        if stale.exists():
            stale.unlink()
        with tempfile.TemporaryDirectory(dir=out, prefix=".final.") as tmp_name:
            tmp = Path(tmp_name)
            encoder.save(tmp)
            if not encoder.normalize and (out / "2_Normalize").is_dir():
                shutil.rmtree(out / "2_Normalize")
            for path in sorted(tmp.rglob("*")):
                rel = path.relative_to(tmp)
                if path.is_dir():
                    (out / rel).mkdir(parents=True, exist_ok=True)
                else:
                    (out / rel).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(path, out / rel)
        with atomic_write(out / META_FILE) as fh:
            fh.write(json.dumps(meta, indent=2))


def _finite_or_none(x: float) -> float | None:
    """JSON has no NaN/Infinity: a skipped step logs null."""
    return x if math.isfinite(x) else None


def _quiet_hf() -> None:
    """transformers' own tqdm bars (loading/writing weights) would interleave with ours."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def train(config: TrainConfig, *, data_dir: str | os.PathLike | None = None,
          on_step: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Run a training job; see the module docstring. `on_step(step, record)` is called after each step."""
    return Trainer(config, data_dir=data_dir, on_step=on_step).run()



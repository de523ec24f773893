"""Train `demo:shapes` from a fixed seed on freshly drawn scenes.

    python -m camcap.models.demo.train --out DIR [--steps N] [--batch B]

Writes DIR/checkpoint (a camcap checkpoint folder, loadable as `hf:DIR/checkpoint`) every
`--checkpoint-every` steps and at the end, and DIR/train.log. Every item is a new scene, so
there is no overfitting to watch for; the log's `exact` column is the share of answers that
greedy decoding gets entirely right on a fixed held-out set (under teacher forcing, every
answer token being the argmax is the same thing as greedy decoding producing the answer).
Training needs no GPU: the shipped checkpoint was trained on 2 CPU cores (see docs/demo-model.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

from camcap.models.demo import data, model

logger = logging.getLogger(__name__)
SEED = 1234
HELD_OUT_SEED = 99  # the in-training check; evaluate.py draws from other seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m camcap.models.demo.train", description=__doc__.split("\n")[1])
    parser.add_argument("--out", type=Path, required=True, help="folder for the checkpoint and the log")
    parser.add_argument("--steps", type=int, default=3200, help="at most this many steps")
    parser.add_argument(
        "--minutes",
        type=float,
        default=59,
        help="time budget (setup included; 0: none): the learning rate follows whichever of the "
        "steps and the clock runs out first, and the run ends there (default: an hour with the last "
        "check and save)",
    )
    parser.add_argument("--batch", type=int, default=128, help="items per step (two questions per drawn scene)")
    parser.add_argument("--lr", type=float, default=1.5e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--patch-loss", type=float, default=1.0, help="weight of the training-only patch labels")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--lead", type=int, default=4, help="start each prompt after 0..LEAD pads, so no padding garbles it"
    )
    parser.add_argument(
        "--init",
        type=Path,
        help="continue from this checkpoint folder (its shape wins over the size flags); the new "
        "checkpoint records every stage's command",
    )
    # Two torch threads: on two quiet cores they run a step in 0.75 s, one thread in 1.26 s; the
    # scene-drawing worker process takes what the model leaves. (On a machine busy with other
    # work one thread is faster: the second waits for the busy core.)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--eval-every", type=int, default=400)
    parser.add_argument("--eval-items", type=int, default=192)
    parser.add_argument("--checkpoint-every", type=int, default=200)
    for name, value in model.describe(model.Shape()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=value)
    args = parser.parse_args(argv)
    shape = model.Shape(**{name: getattr(args, name) for name in model.describe(model.Shape())})
    train(args, shape)
    return 0


def train(args: argparse.Namespace, shape: model.Shape) -> dict[str, Any]:
    import torch

    args.out.mkdir(parents=True, exist_ok=True)
    log = (args.out / "train.log").open("a")

    def say(text: str) -> None:
        print(text, flush=True)
        log.write(text + "\n")
        log.flush()

    started = time.perf_counter()  # the time budget counts the setup too
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.init is not None:
        net, processor, earlier = model.load(args.init)
        shape = model.shape_of(earlier)
        args.stages = [*earlier.get("stages", [earlier.get("command", "")]), ""]
    else:
        net, processor = model.build(shape)
        args.stages = [""]
    encoder = data.Encoder(processor)
    params = sum(p.numel() for p in net.parameters())
    # Training-only: a linear head that names the (colour, shape) under each patch. Not saved.
    patch_head = torch.nn.Linear(shape.vision_width, data.PATCH_CLASSES + data.SIDE_CLASSES)
    say(f"# demo:shapes training: {params / 1e6:.2f} M parameters, shape {model.describe(shape)}, args {vars(args)}")

    held_rng = random.Random(HELD_OUT_SEED)
    held_out = data.training_items(held_rng, shape.image_size, args.eval_items, per_scene=1)
    decay, no_decay = [], []
    for name, param in [*net.named_parameters(), *patch_head.named_parameters()]:
        (no_decay if param.ndim < 2 or "embeddings" in name else decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.98),
    )
    budget_s = args.minutes * 60 if args.minutes else None

    smoothed = None
    report: dict[str, Any] = {}
    net.train()
    batches = iter(_loader(processor, args.seed, args.batch, shape, args.lead))
    for step in range(1, args.steps + 1):
        progress = _progress(step - 1, args.steps, args.warmup, time.perf_counter() - started, budget_s)
        lr = args.lr * _lr_factor(step - 1, args.warmup, progress)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = next(batches)
        logits, patches = data.forward(net, batch, patch_head)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten(), ignore_index=-100)
        if args.patch_loss > 0:
            labels = batch["patch_labels"]  # (images, 2, patches): what covers each patch, and its side
            aux = torch.nn.functional.cross_entropy(
                patches[..., : data.PATCH_CLASSES].flatten(0, 1), labels[:, 0].flatten()
            ) + torch.nn.functional.cross_entropy(
                patches[..., data.PATCH_CLASSES :].flatten(0, 1), labels[:, 1].flatten()
            )
            (loss + args.patch_loss * aux).backward()
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        smoothed = loss.item() if smoothed is None else 0.95 * smoothed + 0.05 * loss.item()
        elapsed = time.perf_counter() - started
        # The time budget ends the run at whatever step it reaches; the learning rate has
        # followed the same clock down its cosine, so that step is a finished run, not a cut one.
        last = step == args.steps or (budget_s is not None and elapsed >= budget_s)
        if step % args.log_every == 0 or last:
            say(f"step {step} loss {smoothed:.4f} lr {lr:.2e} elapsed {elapsed:.0f}s")
        if step % args.eval_every == 0 or last:
            exact = teacher_forced_exact(net, encoder, held_out)
            say(f"eval step {step} exact " + " ".join(f"{task}={value:.3f}" for task, value in exact.items()))
            report = {"step": step, "elapsed_s": round(elapsed), "held_out_exact": exact}
        if step % args.checkpoint_every == 0 or last:
            _save(net, processor, args, shape, params, step, report)
            say(f"checkpoint step {step} -> {args.out / 'checkpoint'}")
        if last:
            if step < args.steps:
                say(f"# stopped at step {step} of {args.steps}: the {args.minutes:g}-minute budget is spent")
            break
    say(f"# done in {time.perf_counter() - started:.0f}s")
    log.close()
    return report


def _loader(processor: Any, seed: int, batch: int, shape: model.Shape, lead: int) -> Any:
    """Batches drawn in one worker process, a few ahead of the model."""
    import torch

    class Batches(torch.utils.data.IterableDataset):
        def __iter__(self) -> Any:
            rng = random.Random(seed)
            encoder = data.Encoder(processor, shape.patch_size, lead=lead, seed=seed)
            while True:
                yield encoder.batch(data.training_items(rng, shape.image_size, batch))

    return torch.utils.data.DataLoader(Batches(), batch_size=None, num_workers=1, prefetch_factor=4)


def teacher_forced_exact(net: Any, encoder: data.Encoder, items: list[data.Item]) -> dict[str, float]:
    """Share of items (per task, and all) whose whole answer greedy decoding gets right."""
    import torch

    was_training = net.training
    net.eval()
    right: dict[str, list[bool]] = {}
    with torch.inference_mode():
        for start in range(0, len(items), 64):
            chunk = items[start : start + 64]
            batch = encoder.batch(chunk)
            predicted = data.forward(net, batch).argmax(-1)
            targets = batch["targets"]
            ok = ((predicted == targets) | (targets == -100)).all(dim=1)
            for item, good in zip(chunk, ok.tolist(), strict=True):
                right.setdefault(item.example.task, []).append(good)
                right.setdefault("all", []).append(good)
    net.train(was_training)
    return {task: sum(values) / len(values) for task, values in sorted(right.items())}


def _progress(step: int, steps: int, warmup: int, elapsed_s: float, budget_s: float | None) -> float:
    """How far along the cosine the run is (0..1): by steps after the warm-up, or by the clock
    when a time budget would run out first."""
    by_steps = (step - warmup) / max(1, steps - warmup)
    by_time = elapsed_s / budget_s if budget_s else 0.0
    return min(1.0, max(0.0, by_steps, by_time))


def _lr_factor(step: int, warmup: int, progress: float) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress))


def _save(
    net: Any, processor: Any, args: argparse.Namespace, shape: model.Shape, params: int, step: int, report: dict
) -> None:
    # Written next to the final place, then swapped in, so a reader never sees half a checkpoint.
    import shutil

    target = args.out / "checkpoint"
    staging = args.out / ".checkpoint-staging"
    shutil.rmtree(staging, ignore_errors=True)
    marker = {
        "model": "demo:shapes",
        "demo": True,
        "seed": args.seed,
        "steps_done": step,
        "steps": args.steps,
        "minutes": args.minutes,
        "batch": args.batch,
        "lr": args.lr,
        "parameters": params,
        "shape": model.describe(shape),
        "command": "python -m camcap.models.demo.train " + " ".join(sys.argv[1:]),
        # Every run that led to these weights, oldest first (one entry unless --init was used).
        "stages": [*args.stages[:-1], "python -m camcap.models.demo.train " + " ".join(sys.argv[1:])],
        "last_eval": report,
    }
    model.save(net, processor, staging, marker)
    old = args.out / ".checkpoint-old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    (args.out / "last_eval.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())

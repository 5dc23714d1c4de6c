"""Build a tiny real transformer (random BERT + WordPiece tokenizer) for fast unit tests."""

from __future__ import annotations

from pathlib import Path

SENTENCES = [
    "Los defensores de derechos humanos denunciaron amenazas.",
    "El gobernador acusó a las ONG de proteger delincuentes.",
    "La CIDH pidió frenar la campaña de estigmatización.",
    "Human rights defenders are foreign agents, the general said.",
    "El Banco de México mantuvo su tasa de interés.",
    "Las madres buscadoras encontraron restos en un predio.",
]


def build_tiny_base(out: Path) -> Path:
    """Write a 2-layer BERT with hidden size 32 and a ~300-token vocabulary to ``out``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(SENTENCES * 3, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=128)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    import torch

    torch.manual_seed(0)
    BertModel(config, add_pooling_layer=False).save_pretrained(out)
    fast.save_pretrained(out)
    return out

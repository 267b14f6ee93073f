"""HF transformers BERT checkpoint directories <-> dlnlp BERT model directories, without transformers.

The BERT name mapping, beside the model it maps onto (:mod:`dlnlp.models.bert`); :mod:`dlnlp.io.hf`
reads the generic parts of HF directories (config.json, safetensors shards, tokenizer.json or vocab.txt).

``BertModel``, ``BertForMaskedLM`` and ``BertForPreTraining`` directories are read (the backbone's
names with or without the ``bert.`` prefix); what the checkpoint holds decides the heads:

    embeddings.word_embeddings / position_embeddings / token_type_embeddings / LayerNorm
                                                    -> tok_emb / pos_emb / type_emb / emb_ln
    encoder.layer.N.attention.self.query, key, value -> blocks.N.attn.qkv (concatenated: q, k, v)
    encoder.layer.N.attention.output.dense, LayerNorm -> blocks.N.attn.proj, blocks.N.ln_1
    encoder.layer.N.intermediate.dense               -> blocks.N.mlp.fc
    encoder.layer.N.output.dense, LayerNorm          -> blocks.N.mlp.proj, blocks.N.ln_2
    pooler.dense                                     -> pooler          (BertModel, BertForPreTraining)
    cls.predictions.transform.dense, LayerNorm, bias -> mlm_dense, mlm_ln, mlm_decoder.bias
    cls.predictions.decoder.weight                   -> tied to tok_emb (an untied one is refused)
    cls.seq_relationship                             -> nsp

What dlnlp's BERT does not compute is refused with a one-line reason: relative position embeddings,
a decoder or cross-attention configuration, an activation other than GELU (exact or tanh) or ReLU,
an output matrix not tied to the input embeddings, task heads other than MLM and NSP. Export writes
the architecture that holds the model's heads (``BertForPreTraining``, ``BertForMaskedLM``,
``BertForNextSentencePrediction`` or ``BertModel``); ``BertModel.from_pretrained`` loads any of them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dlnlp.errors import InputError, ModelDirError
from dlnlp.io.hf import read_hf_config, read_hf_tokenizer, read_hf_weights

# HF hidden_act -> dlnlp activation ("gelu" is the exact erf form in both)
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}
EXPORT_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}

# backbone and head tensors outside the layers: HF module -> dlnlp module (".weight"/".bias" follow)
HF_TO_DLNLP = {
    "embeddings.word_embeddings": "tok_emb",
    "embeddings.position_embeddings": "pos_emb",
    "embeddings.token_type_embeddings": "type_emb",
    "embeddings.LayerNorm": "emb_ln",
    "pooler.dense": "pooler",
    "cls.predictions.transform.dense": "mlm_dense",
    "cls.predictions.transform.LayerNorm": "mlm_ln",
    "cls.seq_relationship": "nsp",
}
HF_TO_DLNLP_LAYER = {
    "attention.output.dense": "attn.proj",
    "attention.output.LayerNorm": "ln_1",
    "intermediate.dense": "mlp.fc",
    "output.dense": "mlp.proj",
    "output.LayerNorm": "ln_2",
}
QKV = ("query", "key", "value")
# buffers some checkpoints save, not weights
BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")


def _bert_config(directory: Path) -> dict[str, Any]:
    """A HF BERT ``config.json``, refusing what dlnlp's BERT does not compute."""
    path = directory / "config.json"
    config = read_hf_config(directory, "bert")
    position = config.get("position_embedding_type", "absolute")
    if position != "absolute":
        raise InputError(f"{path}: position_embedding_type {position!r} is not supported (only absolute, "
                         "learned positions)")
    for flag in ("is_decoder", "add_cross_attention"):
        if config.get(flag):
            raise InputError(f"{path}: {flag}=true is not supported (dlnlp's BERT is an encoder)")
    activation = config.get("hidden_act", "gelu")
    if activation not in ACTIVATIONS:
        raise InputError(f"{path}: hidden_act {activation!r} is not supported (one of {', '.join(ACTIVATIONS)})")
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
        if not isinstance(config.get(key), int):
            raise InputError(f"{path}: no integer {key!r}")
    return config


def bert_config_from_hf(config: dict[str, Any], *, mlm_head: bool, nsp_head: bool, pooler: bool):
    """The :class:`~dlnlp.models.bert.BertConfig` of a HF BERT config dict and the heads found."""
    from dlnlp.models.bert import BertConfig

    return BertConfig(
        vocab_size=config["vocab_size"],
        dim=config["hidden_size"],
        n_layer=config["num_hidden_layers"],
        n_head=config["num_attention_heads"],
        intermediate=config["intermediate_size"],
        max_len=config.get("max_position_embeddings", 512),
        type_vocab_size=config.get("type_vocab_size", 2),
        dropout=config.get("hidden_dropout_prob", 0.1),
        attn_dropout=config.get("attention_probs_dropout_prob", 0.1),
        layer_norm_eps=config.get("layer_norm_eps", 1e-12),
        activation=ACTIVATIONS[config.get("hidden_act", "gelu")],
        pad_id=config.get("pad_token_id") or 0,
        mlm_head=mlm_head,
        nsp_head=nsp_head,
        pooler=pooler,
    )


def _hf_name(name: str) -> str:
    """A HF tensor name without the ``bert.`` prefix and with TF-era ``gamma``/``beta`` as weight/bias."""
    if name.startswith("bert."):
        name = name[len("bert."):]
    if name.endswith(".gamma"):
        name = name[: -len("gamma")] + "weight"
    elif name.endswith(".beta"):
        name = name[: -len("beta")] + "bias"
    return name


def hf_to_dlnlp_state(state: dict[str, Any], where: str = "the BERT checkpoint") -> dict[str, Any]:
    """Rename a HF BERT state dict into dlnlp BERT names (q, k, v concatenated into one matrix)."""
    out: dict[str, Any] = {}
    qkv: dict[tuple[str, str], dict[str, Any]] = {}
    decoder = None
    for raw, tensor in state.items():
        name = _hf_name(raw)
        module, _, param = name.rpartition(".")
        if name in BUFFERS:
            continue
        if name == "cls.predictions.bias":
            out["mlm_decoder.bias"] = tensor
        elif name == "cls.predictions.decoder.bias":
            continue  # the same parameter as cls.predictions.bias
        elif name == "cls.predictions.decoder.weight":
            decoder = tensor
        elif module in HF_TO_DLNLP:
            out[f"{HF_TO_DLNLP[module]}.{param}"] = tensor
        elif module.startswith("encoder.layer."):
            parts = module.split(".")
            layer, rest = parts[2], ".".join(parts[3:])
            if rest in HF_TO_DLNLP_LAYER:
                out[f"blocks.{layer}.{HF_TO_DLNLP_LAYER[rest]}.{param}"] = tensor
            elif rest.startswith("attention.self.") and rest.rpartition(".")[2] in QKV:
                qkv.setdefault((layer, param), {})[rest.rpartition(".")[2]] = tensor
            else:
                raise InputError(f"{where}: unexpected tensor {raw!r} (dlnlp reads BertModel, BertForMaskedLM and "
                                 "BertForPreTraining checkpoints)")
        else:
            raise InputError(f"{where}: unexpected tensor {raw!r} (dlnlp reads BertModel, BertForMaskedLM and "
                             "BertForPreTraining checkpoints)")
    for (layer, param), parts in qkv.items():
        missing = [p for p in QKV if p not in parts]
        if missing:
            raise InputError(f"{where}: layer {layer} has no attention.self.{missing[0]}.{param}")
        out[f"blocks.{layer}.attn.qkv.{param}"] = torch.cat([parts[p] for p in QKV], 0)
    if decoder is not None and "tok_emb.weight" in out and not torch.equal(decoder, out["tok_emb.weight"]):
        raise InputError(f"{where}: the MLM decoder is not tied to the input embeddings (dlnlp's BERT ties them)")
    return out


def dlnlp_to_hf_state(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The inverse of :func:`hf_to_dlnlp_state`; the backbone's names get ``prefix`` (``"bert."`` with heads)."""
    back = {v: k for k, v in HF_TO_DLNLP.items()}
    back_layer = {v: k for k, v in HF_TO_DLNLP_LAYER.items()}
    out: dict[str, Any] = {}
    for key, tensor in state.items():
        module, _, param = key.rpartition(".")
        if key == "mlm_decoder.weight":
            continue  # tied: transformers restores it from the word embeddings
        if key == "mlm_decoder.bias":
            out["cls.predictions.bias"] = tensor
        elif module in back:
            name = back[module]
            out[(name if name.startswith("cls.") else prefix + name) + "." + param] = tensor
        elif module.endswith(".attn.qkv"):
            layer = module.split(".")[1]
            for part, piece in zip(QKV, tensor.chunk(3, 0), strict=True):
                out[f"{prefix}encoder.layer.{layer}.attention.self.{part}.{param}"] = piece
        else:
            parts = module.split(".")
            out[f"{prefix}encoder.layer.{parts[1]}.{back_layer['.'.join(parts[2:])]}.{param}"] = tensor
    return {k: v.contiguous() for k, v in out.items()}


def _sentence_max_length(source: Path) -> int | None:
    """sentence-transformers' ``max_seq_length`` (``sentence_bert_config.json``), the length it embeds at."""
    path = source / "sentence_bert_config.json"
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("max_seq_length") if path.is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None
    return value if isinstance(value, int) and value > 0 else None


def import_hf_bert(hf_dir: str | os.PathLike, out: str | os.PathLike, *, force: bool = False) -> Path:
    """Convert a HF BERT checkpoint directory into a dlnlp BERT model directory (with its tokenizer.json)."""
    from dlnlp.io.modeldir import write_model_dir
    from dlnlp.models.bert import Bert, bert_config_dict

    source = Path(hf_dir)
    hf_config = _bert_config(source)
    state = hf_to_dlnlp_state(read_hf_weights(source), f"{source}")
    config = bert_config_from_hf(hf_config, mlm_head="mlm_dense.weight" in state, nsp_head="nsp.weight" in state,
                                 pooler="pooler.weight" in state)
    try:
        model = Bert(config)
        model.load_saved_state({k: v.float() for k, v in state.items()})
    except (KeyError, RuntimeError, ValueError) as exc:
        raise InputError(f"{source}: weights do not fit the BERT config ({str(exc).splitlines()[0]})") from exc
    files: dict[str, Any] = {}
    tokenizer = read_hf_tokenizer(source)
    if tokenizer is not None:
        files["tokenizer.json"] = tokenizer
    architecture = (hf_config.get("architectures") or ["BertModel"])[0]
    extra: dict[str, Any] = {"source": {"format": "hf-bert", "path": str(source), "architecture": architecture},
                             "level": "tokenizer" if tokenizer is not None else "ids"}
    max_seq_length = _sentence_max_length(source)
    if max_seq_length is not None:
        extra["max_seq_length"] = max_seq_length
    return write_model_dir(out, bert_config_dict(config, **extra), model.state_dict_for_save(), files, force=force,
                           inputs=[source])


def export_architecture(config: Any) -> str:
    """The transformers class whose checkpoint holds exactly the heads of ``config`` (a BertConfig)."""
    if config.mlm_head and config.nsp_head:
        return "BertForPreTraining"
    if config.mlm_head:
        return "BertForMaskedLM"
    if config.nsp_head:
        return "BertForNextSentencePrediction"
    return "BertModel"


def _export_tokenizer(source: Path, tmp: Path, max_len: int, warn: Callable[[str], None]) -> None:
    """tokenizer.json (with BERT's ``[CLS] A [SEP]`` template when it has none), tokenizer_config.json, and
    vocab.txt for a WordPiece vocabulary (what transformers' slow ``BertTokenizer`` reads)."""
    from tokenizers import Tokenizer, processors

    path = source / "tokenizer.json"
    if not path.is_file():
        warn(f"{source}: no tokenizer.json, so the checkpoint holds the weights only (give HF the tokenizer that "
             "made the ids)")
        return
    tokenizer = Tokenizer.from_file(str(path))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    if tokenizer.post_processor is None and cls is not None and sep is not None:
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    (tmp / "tokenizer.json").write_text(tokenizer.to_str(), encoding="utf-8")
    tokenizer_config: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_len,
                                        "clean_up_tokenization_spaces": False}
    for key, token in (("unk_token", "[UNK]"), ("sep_token", "[SEP]"), ("pad_token", "[PAD]"),
                       ("cls_token", "[CLS]"), ("mask_token", "[MASK]")):
        if tokenizer.token_to_id(token) is not None:
            tokenizer_config[key] = token
    (tmp / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n", encoding="utf-8")
    model = json.loads(tokenizer.to_str())["model"]
    if model.get("type") == "WordPiece":
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        by_id = sorted(vocab.items(), key=lambda item: item[1])
        if [i for _, i in by_id] == list(range(len(by_id))):
            (tmp / "vocab.txt").write_text("".join(t + "\n" for t, _ in by_id), encoding="utf-8")


def export_hf_bert(directory: str | os.PathLike, hf_dir: str | os.PathLike, *, force: bool = False,
                   warn: Callable[[str], None] | None = None) -> Path:
    """Write a dlnlp BERT model directory as a HF checkpoint (config.json, model.safetensors, tokenizer files)
    that ``BertModel`` / ``BertForMaskedLM`` / ``BertForPreTraining.from_pretrained`` load, as its heads allow."""
    from dlnlp.io.atomic import atomic_directory
    from dlnlp.io.modeldir import save_weights
    from dlnlp.models.bert import load_bert

    source = Path(directory)
    model, _ = load_bert(source)
    c = model.config
    if c.activation not in EXPORT_ACTIVATIONS:
        raise ModelDirError(f"{source}: activation {c.activation!r} has no HF BERT equivalent")
    architecture = export_architecture(c)
    hf_config = {
        "architectures": [architecture],
        "model_type": "bert",
        "vocab_size": c.vocab_size,
        "hidden_size": c.dim,
        "num_hidden_layers": c.n_layer,
        "num_attention_heads": c.n_head,
        "intermediate_size": c.intermediate,
        "hidden_act": EXPORT_ACTIVATIONS[c.activation],
        "hidden_dropout_prob": c.dropout,
        "attention_probs_dropout_prob": c.attn_dropout,
        "max_position_embeddings": c.max_len,
        "type_vocab_size": c.type_vocab_size,
        "initializer_range": 0.02,
        "layer_norm_eps": c.layer_norm_eps,
        "pad_token_id": c.pad_id,
        "position_embedding_type": "absolute",
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
    }
    prefix = "" if architecture == "BertModel" else "bert."
    state = dlnlp_to_hf_state(model.state_dict_for_save(), prefix)
    with atomic_directory(hf_dir, force=force) as tmp:
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
        save_weights(state, tmp / "model.safetensors")
        _export_tokenizer(source, tmp, c.max_len, warn or (lambda message: None))
    return Path(hf_dir)

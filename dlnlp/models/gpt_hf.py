"""HF transformers GPT-2 checkpoint directories <-> dlnlp GPT model directories, without transformers.

The GPT-2 name mapping, beside the model it maps onto; :mod:`dlnlp.io.hf` reads and writes the
generic parts of HF directories.

A HF GPT-2 directory holds ``config.json`` (``model_type: gpt2``), ``model.safetensors`` and usually
``tokenizer.json``. The weights map one-to-one onto :class:`dlnlp.models.gpt.GPT`:

    transformer.wte / wpe / ln_f            -> wte / wpe / ln_f
    transformer.h.N.ln_1, ln_2              -> h.N.ln_1, h.N.ln_2
    transformer.h.N.attn.c_attn, c_proj     -> h.N.attn.qkv, h.N.attn.proj
    transformer.h.N.mlp.c_fc, c_proj        -> h.N.mlp.fc, h.N.mlp.proj
    lm_head (absent when tied)              -> lm_head

HF's ``Conv1D`` stores its weight as ``[in, out]`` (the transpose of ``nn.Linear``), so the four
projection matrices are transposed on the way in and out. Only what GPT-2 computes is accepted:
checkpoints that use ``scale_attn_by_inverse_layer_idx`` or ``reorder_and_upcast_attn`` are refused,
as are exports of dlnlp models GPT-2 cannot express (sinusoidal positions, no biases).

The vocabulary goes with the weights: a subword model's ``tokenizer.json`` is copied; a character
model's ``vocab.json`` becomes a ``tokenizers`` WordLevel ``tokenizer.json`` that gives the same ids
(one token per code point, ``<unk>`` = 0 for characters not in the vocabulary, decoded to U+FFFD
as dlnlp does) with a ``tokenizer_config.json`` so that transformers' ``AutoTokenizer`` loads it; a
sentencepiece ``tokenizer.model`` is copied as is; a model trained on ``--ids`` has no vocabulary
and exports its weights only, with a warning.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dlnlp.errors import InputError, ModelDirError
from dlnlp.io.hf import char_tokenizer_json, read_hf_config, read_hf_weights

CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
HF_TO_DLNLP_LAYER = {
    "ln_1": "ln_1", "ln_2": "ln_2",
    "attn.c_attn": "attn.qkv", "attn.c_proj": "attn.proj",
    "mlp.c_fc": "mlp.fc", "mlp.c_proj": "mlp.proj",
}
ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}


def _gpt2_config(directory: Path) -> dict[str, Any]:
    """A HF GPT-2 ``config.json``, refusing what GPT-2 in dlnlp does not compute."""
    path = directory / "config.json"
    config = read_hf_config(directory, "gpt2")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if config.get(flag):
            raise InputError(f"{path}: {flag}=true is not supported")
    if config.get("scale_attn_weights") is False:
        raise InputError(f"{path}: scale_attn_weights=false is not supported")
    activation = config.get("activation_function", "gelu_new")
    if activation not in ACTIVATIONS:
        raise InputError(f"{path}: activation_function {activation!r} is not supported")
    return config


def gpt_config_from_hf(config: dict[str, Any]):
    """The :class:`~dlnlp.models.gpt.GPTConfig` of a HF GPT-2 config dict."""
    from dlnlp.models.gpt import GPTConfig

    return GPTConfig(
        vocab_size=config["vocab_size"],
        block_size=config.get("n_positions", config.get("n_ctx", 1024)),
        n_layer=config["n_layer"],
        n_head=config["n_head"],
        n_embd=config["n_embd"],
        dropout=0.0,
        bias=True,
        tie_weights=config.get("tie_word_embeddings", True),
        position="learned",
        activation=ACTIVATIONS[config.get("activation_function", "gelu_new")],
        layer_norm_eps=config.get("layer_norm_epsilon", 1e-5),
        mlp_dim=config.get("n_inner"),
    )


def hf_to_dlnlp_state(state: dict[str, Any], n_layer: int, tie: bool) -> dict[str, Any]:
    """Rename (and transpose the Conv1D weights of) a HF GPT-2 state dict into dlnlp GPT names."""
    out: dict[str, Any] = {}
    for name, tensor in state.items():
        key = name[len("transformer."):] if name.startswith("transformer.") else name
        if key.endswith((".attn.bias", ".attn.masked_bias")) and key.count(".") == 3:
            continue  # causal-mask buffers saved by old checkpoints (h.N.attn.bias), not weights
        if key == "lm_head.weight":
            if not tie:
                out["lm_head.weight"] = tensor
            continue
        if key in ("wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"):
            out[key] = tensor
            continue
        parts = key.split(".")
        if parts[0] != "h" or len(parts) < 4:
            raise InputError(f"unexpected tensor {name!r} in the GPT-2 checkpoint")
        layer, rest = parts[1], ".".join(parts[2:-1])
        if rest not in HF_TO_DLNLP_LAYER:
            raise InputError(f"unexpected tensor {name!r} in the GPT-2 checkpoint")
        if key.endswith(CONV1D_SUFFIXES):
            tensor = tensor.t().contiguous()
        out[f"h.{layer}.{HF_TO_DLNLP_LAYER[rest]}.{parts[-1]}"] = tensor
    return out


def dlnlp_to_hf_state(state: dict[str, Any], tie: bool) -> dict[str, Any]:
    """The inverse of :func:`hf_to_dlnlp_state` (GPT2LMHeadModel names)."""
    back = {v: k for k, v in HF_TO_DLNLP_LAYER.items()}
    out: dict[str, Any] = {}
    for key, tensor in state.items():
        if key == "lm_head.weight":
            if not tie:
                out[key] = tensor
            continue
        if key.startswith("h."):
            parts = key.split(".")
            hf_rest = back[".".join(parts[2:-1])]
            name = f"transformer.h.{parts[1]}.{hf_rest}.{parts[-1]}"
            if name.endswith(CONV1D_SUFFIXES):
                tensor = tensor.t()
            out[name] = tensor.contiguous()
        else:
            out[f"transformer.{key}"] = tensor
    return out


def import_hf_gpt2(hf_dir: str | os.PathLike, out: str | os.PathLike, *, force: bool = False) -> Path:
    """Convert a HF GPT-2 checkpoint directory into a dlnlp GPT model directory."""
    from dlnlp.io.modeldir import write_model_dir
    from dlnlp.models.gpt import GPT, gpt_config_dict

    source = Path(hf_dir)
    hf_config = _gpt2_config(source)
    config = gpt_config_from_hf(hf_config)
    state = hf_to_dlnlp_state(read_hf_weights(source), config.n_layer, config.tie_weights)
    model = GPT(config)
    try:
        model.load_saved_state({k: v.float() for k, v in state.items()})
    except (KeyError, RuntimeError) as exc:
        raise InputError(f"{source}: weights do not fit the GPT-2 config ({str(exc).splitlines()[0]})") from exc
    files: dict[str, Any] = {}
    if (source / "tokenizer.json").is_file():
        files["tokenizer.json"] = (source / "tokenizer.json").read_bytes()
    extra = {"source": {"format": "hf-gpt2", "path": str(source)},
             "eos_id": hf_config.get("eos_token_id"), "bos_id": hf_config.get("bos_token_id")}
    return write_model_dir(out, gpt_config_dict(config, **extra), model.state_dict_for_save(), files, force=force)


def _export_vocabulary(source: Path, tmp: Path, config: dict[str, Any], block_size: int,
                       warn: Callable[[str], None]) -> None:
    """Write what turns text into the model's ids beside the exported weights (see the module docstring)."""
    from dlnlp.tokenization.text_codec import LEVELS, guess_level

    level = config.get("level") or guess_level(source)
    if level not in LEVELS:
        raise ModelDirError(f"{source / 'config.json'}: level {level!r} is not one of {', '.join(LEVELS)}")
    if level == "char":
        from dlnlp.tokenization.char import CharVocab

        chars = CharVocab.load(source).chars
        (tmp / "tokenizer.json").write_text(char_tokenizer_json(chars), encoding="utf-8")
        # No unk_token here: transformers would make "<unk>" an added token and split it out of text.
        tokenizer_config = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
                            "model_max_length": block_size}
        (tmp / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    elif (source / "tokenizer.json").is_file():
        shutil.copyfile(source / "tokenizer.json", tmp / "tokenizer.json")
    elif (source / "tokenizer.model").is_file():
        shutil.copyfile(source / "tokenizer.model", tmp / "tokenizer.model")
        warn(f"{source}: the sentencepiece tokenizer is copied as tokenizer.model; load it with sentencepiece "
             "(transformers' AutoTokenizer needs a tokenizer class for it)")
    elif level == "tokenizer":
        raise ModelDirError(f"{source}: a subword model without its tokenizer.json or tokenizer.model")
    else:
        warn(f"{source}: trained on token ids, so there is no vocabulary to export; the checkpoint holds the "
             "weights only (give HF the tokenizer that made the ids)")


def export_hf_gpt2(directory: str | os.PathLike, hf_dir: str | os.PathLike, *, force: bool = False,
                   warn: Callable[[str], None] | None = None) -> Path:
    """Write a dlnlp GPT model directory as a HF GPT-2 checkpoint (config.json, model.safetensors, tokenizer).

    ``warn`` receives what the checkpoint cannot carry (a model trained on ids has no vocabulary).
    """
    from dlnlp.io.atomic import atomic_directory
    from dlnlp.io.modeldir import save_weights
    from dlnlp.models.gpt import load_gpt

    source = Path(directory)
    model, dlnlp_config = load_gpt(source)
    c = model.config
    if c.position != "learned":
        raise ModelDirError(f"{source}: GPT-2 has learned positions; this model uses {c.position} ones")
    if not c.bias:
        raise ModelDirError(f"{source}: GPT-2 has biases; this model was trained without them")
    activation = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}[c.activation]
    eos = dlnlp_config.get("eos_id")
    bos = dlnlp_config.get("bos_id", eos)
    hf_config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": c.vocab_size,
        "n_positions": c.block_size,
        "n_embd": c.n_embd,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_inner": c.mlp_dim,
        "activation_function": activation,
        "layer_norm_epsilon": c.layer_norm_eps,
        "resid_pdrop": c.dropout,
        "embd_pdrop": c.dropout,
        "attn_pdrop": c.dropout,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "tie_word_embeddings": c.tie_weights,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "torch_dtype": "float32",
    }
    state = dlnlp_to_hf_state(model.state_dict_for_save(), c.tie_weights)
    with atomic_directory(hf_dir, force=force) as tmp:
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
        save_weights(state, tmp / "model.safetensors")
        _export_vocabulary(source, tmp, dlnlp_config, c.block_size, warn or (lambda message: None))
    return Path(hf_dir)

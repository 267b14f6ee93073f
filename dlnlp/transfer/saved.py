"""The fine-tuned model directory: what training changed, and how to get the rest back.

    out/
      config.json        {"kind": "finetuned", "task", "labels", "head": {...}, "strategy", "top", "max_len",
                          "backbone": {"config": the backbone's config.json, "source": {"path", "sha256", ...},
                                       "saved": "all" | "trained"}}
      model.safetensors  every weight ("all"), or the head and the trainable backbone weights ("trained")
      tokenizer.json     (or the backbone's vocabulary) when the whole model is saved
      metrics.jsonl, checkpoint/

With ``saved: "trained"`` (the backbone wholly or partly frozen: ``--strategy features``, ``top`` or a prompt
strategy, whose config.json adds ``"prompt"``: :class:`dlnlp.transfer.prompt.PromptConfig`)
the frozen weights are read from ``source.path``, whose content hash must still be ``source.sha256``:
a head trained on one backbone refuses another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dlnlp.errors import ModelDirError
from dlnlp.io.modeldir import WEIGHTS_NAME, load_weights, make_config, read_config
from dlnlp.models.registry import get_family
from dlnlp.transfer.backbone import Backbone, content_hash, load_backbone, rebuild_backbone
from dlnlp.transfer.model import FineTuned, HeadConfig, apply_strategy

KIND = "finetuned"
FORMAT_VERSION = 1


def finetuned_config(model: FineTuned, *, strategy: str, top: int, max_len: int, **extra: Any) -> dict[str, Any]:
    """config.json of a fine-tuned directory (see the module docstring); call after :func:`apply_strategy`."""
    saved = "all" if model.backbone_trains_whole() else "trained"
    backbone = {"config": model.backbone.config, "source": model.backbone.source, "saved": saved}
    return make_config(KIND, FORMAT_VERSION, task=model.config.task, labels=model.labels,
                       head=model.config.to_dict(), strategy=strategy, top=top, max_len=max_len, backbone=backbone,
                       **extra)


def codec_files(model: FineTuned) -> dict[str, bytes]:
    """The tokenizer/vocabulary files a self-contained directory needs (none for a head-only one)."""
    return dict(model.backbone.codec_files) if model.backbone_trains_whole() else {}


def check_backbone_source(source: dict[str, Any], where: Path) -> Path:
    """The referenced backbone's path, refused when it is gone or its content changed."""
    path = Path(source.get("path", ""))
    if not path.is_dir():
        raise ModelDirError(f"{where}: holds the trained part only and its backbone {path} is gone (put the backbone "
                            "back there, or fine-tune with --strategy full for a self-contained directory)")
    found = content_hash(path)
    if found != source.get("sha256"):
        raise ModelDirError(f"{where}: its backbone {path} has changed (content hash {found[:12]}..., trained on "
                            f"{str(source.get('sha256'))[:12]}...); the head only fits the backbone it was trained on")
    return path


def _saved_prompt(config: dict[str, Any], state: dict[str, Any], backbone: Backbone) -> Any:
    """The prompt module of a prompt strategy's directory (a deep prompt's MLP is folded in ``state``)."""
    if not config.get("prompt"):
        return None
    from dlnlp.transfer.prompt import PromptConfig, build_prompt

    prompt_config = PromptConfig.from_dict(config["prompt"])
    prompt_config.init = "random"  # the saved weights replace the start
    if "prompt.prefix" in state:
        prompt_config.projection = 0  # folded when saved
    return build_prompt(prompt_config, backbone.model.token_embedding())


def load_finetuned(directory: str | Path, device: str | torch.device = "cpu") -> tuple[FineTuned, dict[str, Any]]:
    """A fine-tuned model directory: the model in eval mode on ``device`` and its config.json."""
    directory = Path(directory)
    config = read_config(directory, KIND, (FORMAT_VERSION,))
    if not (directory / WEIGHTS_NAME).is_file():
        raise ModelDirError(f"{directory}: no {WEIGHTS_NAME} yet (training saves it at the first validation)")
    try:
        head = HeadConfig.from_dict(config["head"])
        info = config["backbone"]
        saved = info["saved"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelDirError(f"{directory}/config.json: not a fine-tuned model's config ({exc})") from exc
    if saved == "all":
        backbone_config = info["config"]
        family = get_family(backbone_config.get("kind", "?"), directory / "config.json")
        skeleton = family.build(family.config_class.from_dict(backbone_config["model"]))
        codec = family.codec(directory, backbone_config, skeleton) if family.codec is not None else None
        files = {p.name: p.read_bytes() for p in directory.iterdir()
                 if p.is_file() and p.name.startswith(("tokenizer.", "vocab."))}
        backbone: Backbone = rebuild_backbone(backbone_config, codec, info["source"], files,
                                              keep_mlm_head=head.verbalizer is not None)
    else:
        path = check_backbone_source(info["source"], directory)
        backbone = load_backbone(path, keep_mlm_head=head.verbalizer is not None)
    state = load_weights(directory)
    model = FineTuned(backbone, head, config.get("labels"), prompt=_saved_prompt(config, state, backbone))
    apply_strategy(model, config.get("strategy", "full"), int(config.get("top") or 0))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelDirError(f"{directory}/{WEIGHTS_NAME}: weights do not fit the config "
                            f"({str(exc).splitlines()[0]})") from exc
    return model.to(device).eval(), config

"""``dlnlp gpt prompt-tune``: learn a soft prompt for a frozen GPT on a target corpus (LM loss).

    summary = prompt_tune("brown-gpt", ["mr-positive.txt"], "mr-prompt", TrainConfig(lr=3e-2, ...),
                          length=20, init="random", val="mr-positive-dev.txt")

The corpus is encoded by the model's own codec; training draws random windows of ``block_size - K``
tokens (the prompt takes the first K positions) through the shared trainer (AdamW, warmup and decay,
clipping, validation, best weights, checkpoints, ``--resume``). The output directory holds the prompt
only (:mod:`dlnlp.transfer.lm_prompt`). :func:`tune_lm` is the same flow on an LM already loaded, with
or without a prompt and with the LM trainable or not (the benchmark's full fine-tuning baseline).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlnlp.errors import InputError, OptionError, checked
from dlnlp.io.corpus import CorpusOptions
from dlnlp.io.modeldir import RunOutput, read_config, write_config
from dlnlp.kernels.device import resolve_device, seed_everything
from dlnlp.models.registry import load_model
from dlnlp.progress import log
from dlnlp.recipes.lm import read_eval_text
from dlnlp.training.checkpoint import read_checkpoint_meta
from dlnlp.training.config import TrainConfig
from dlnlp.training.data import RandomWindows
from dlnlp.training.trainer import Trainer
from dlnlp.transfer.backbone import content_hash
from dlnlp.transfer.lm_prompt import KIND, PromptedLM, load_soft_prompt, soft_prompt_config, stream_loss

__all__ = ["load_soft_prompt", "prompt_tune", "tune_lm"]
from dlnlp.transfer.prompt import PromptConfig, SoftPrompt, build_prompt


def _lm(model_dir: str | Path) -> Any:
    loaded = load_model(model_dir, "cpu")
    model = loaded.model
    if not hasattr(model, "token_embedding") or not hasattr(getattr(model, "config", None), "block_size"):
        raise InputError(f"{model_dir}: a {loaded.config.get('kind')!r} model: soft prompts need a dlnlp GPT")
    return loaded


def tune_lm(lm: torch.nn.Module, prompt: SoftPrompt | None, train_ids: np.ndarray, val_ids: np.ndarray | None,
            config: TrainConfig, *, batch_size: int, out_dir: Path | None = None, train_lm: bool = False,
            on_save: Any = None, resume: bool = False) -> dict[str, Any]:
    """Train ``prompt`` (and the LM with ``train_lm``) on ``train_ids``; returns losses and speed."""
    model = PromptedLM(lm, prompt)
    lm.requires_grad_(train_lm)
    if prompt is not None:
        prompt.requires_grad_(True)
    seq_len = lm.config.block_size - model.length
    if seq_len < 1:
        raise OptionError(f"--prompt-length {model.length} leaves no room in the block size {lm.config.block_size}")
    source = RandomWindows(train_ids, batch_size, seq_len, seed=config.seed)
    val_t = torch.as_tensor(val_ids) if val_ids is not None else None
    before = stream_loss(model, val_t)[0] if val_t is not None else None

    def val_fn(net: torch.nn.Module) -> dict[str, float]:
        return {"val_loss": stream_loss(net, val_t)[0]}

    def loss_fn(net: torch.nn.Module, batch: Any, state: Any) -> tuple[torch.Tensor, Any]:
        return net(*batch), None

    trainer = Trainer(model, config, source, out_dir=out_dir, loss_fn=loss_fn,
                      val_fn=val_fn if val_t is not None else None, on_save=on_save, resume=resume)
    result = trainer.fit()
    after = stream_loss(model, val_t)[0] if val_t is not None else None
    return {"steps": result.steps, "train_seconds": round(result.elapsed, 3), "val_loss_before": before,
            "val_loss": after, "best_val_loss": result.best_value,
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "tokens_per_step": batch_size * seq_len}


def prompt_tune(model_dir: str | Path, train: Sequence[str] | None, out: str | Path, config: TrainConfig, *,
                length: int = 20, init: str = "random", val: Sequence[str] | str | None = None,
                batch_size: int = 16, options: CorpusOptions | None = None, force: bool = False,
                resume: bool = False) -> dict[str, Any]:
    """Learn a ``length``-vector soft prompt for the GPT in ``model_dir`` on ``train``; save it in ``out``."""
    loaded = _lm(model_dir)
    lm, codec = loaded.model, loaded.codec
    started = time.perf_counter()
    train_ids = read_eval_text(train, codec, options).ids
    val_ids = read_eval_text([val] if isinstance(val, (str, Path)) else val, codec, options).ids if val else None
    source = {"path": str(Path(model_dir).resolve()), "sha256": content_hash(model_dir)}
    with RunOutput(out, force=force, resume=resume, inputs=[*(train or []), model_dir]) as output:
        if resume:
            saved = read_config(output.path, KIND)
            prompt_config = PromptConfig.from_dict(saved["prompt"])
            prompt_config.init = "random"  # the checkpoint replaces the start
            meta = read_checkpoint_meta(output.path)
            stops = {k: v for k, v in (("max_steps", config.max_steps), ("epochs", config.epochs),
                                       ("max_time", config.max_time)) if v is not None}
            config = TrainConfig.from_dict(meta["config"]).replace(quiet=config.quiet, device=config.device, **stops)
        else:
            prompt_config = PromptConfig(strategy="prompt", length=length, init=init, dim=lm.config.n_embd)
        checked(prompt_config)
        checked(config)
        seed_everything(config.seed)
        tokenizer = getattr(codec, "tokenizer", None)
        tokenize = tokenizer.encode if tokenizer is not None else (lambda text: codec.encode(text, "text"))
        prompt = build_prompt(prompt_config, lm.token_embedding(), tokenize=tokenize,
                              specials=[codec.eos_id], seed=config.seed)
        if not resume:
            write_config(output.path, soft_prompt_config(prompt, source, loaded.config))
        if not config.eval_interval and val_ids is not None:
            config = config.replace(eval_interval=max(1, (config.max_steps or 100) // 10))
        lm.to(resolve_device(config.device))
        summary = tune_lm(lm, prompt, train_ids, val_ids, config, batch_size=batch_size, out_dir=output.path,
                          on_save=output.commit, resume=resume)
    summary.update(out=str(Path(out)), prompt_length=prompt_config.length,
                   total_seconds=round(time.perf_counter() - started, 3))
    log(f"learned a {prompt_config.length}-vector soft prompt ({summary['trainable_parameters']:,} parameters); "
        f"validation loss {summary['val_loss_before']} -> {summary['val_loss']}", quiet=config.quiet)
    return summary

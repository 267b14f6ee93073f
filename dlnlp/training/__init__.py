"""The one trainer loop every Torch model in dlnlp trains with.

How a model plugs in
--------------------
The trainer needs three things:

1. **A model** (``nn.Module``) that maps a batch to a scalar loss. By default the trainer calls
   ``model(*batch)`` (``model(**batch)`` for a dict batch) and takes the loss from the result: a
   tensor, a dict with ``"loss"`` or an object with ``.loss``. A *stateful* model (class attribute
   ``stateful = True``, e.g. an RNN trained with truncated BPTT) is called as
   ``model(*batch, state=state)`` and returns ``(loss, new_state)``; the trainer carries the state
   from batch to batch, detaches it at each, resets it when the data says so, and saves it in the
   checkpoint. Anything else: pass ``loss_fn(model, batch, state) -> (loss, state)``.
2. **Training batches**: a batch source (``next_batch() -> (batch, reset)``, ``epochs_done``,
   ``batches_per_epoch``, ``state_dict()``/``load_state_dict()``), such as
   :class:`~dlnlp.training.data.StreamBatches` (BPTT streams) or
   :class:`~dlnlp.training.data.RandomWindows` (random windows, for GPT); or any re-iterable of
   batches (a list, a DataLoader), read epoch after epoch. A batch is a tensor, a tuple/list of
   tensors (inputs first, targets last) or a dict; the trainer moves it to the device.
3. **Validation** (optional): ``val_data`` with ``iter_eval()`` or a re-iterable of batches (the loss
   is averaged weighted by the number of target tokens, those equal to ``ignore_index`` left out),
   or ``val_fn(model) -> {"val_loss": x, ...}`` (any other metrics beside it, e.g. ``accuracy``).

For transfer learning, ``Trainer`` also takes ``param_groups`` (each group at its own base rate,
scaled by the schedule; :func:`layer_decay_groups` builds layer-wise decay), leaves frozen
parameters out of the optimizer, takes ``aux_modules`` (a teacher: on the device, in eval mode, not
trained nor saved), and keeps the best weights by ``best_metric``/``best_mode`` of the config.

:class:`TrainConfig` holds the optimizer (AdamW, fused on CUDA, or SGD with momentum), schedule
(constant/linear/cosine with warmup, decayed over steps or over the ``max_time`` budget), clipping,
accumulation, precision (bf16/fp16 autocast on CUDA, GradScaler for fp16), stop criteria
(``max_steps``, ``epochs``, ``max_time``), validation and logging intervals, seed and ``compile``.

:meth:`Trainer.fit` writes into ``out_dir``: ``model.safetensors`` (best weights by validation
loss, or ``best_metric``; the last ones without validation), ``checkpoint/`` (model, optimizer, schedule position, RNG
states, data position and recurrent state, for ``resume=True``, which continues the same loss curve
step for step), ``metrics.jsonl``. Ctrl-C or SIGTERM saves a checkpoint and raises
:class:`TrainingInterrupted` (a ``KeyboardInterrupt``: the CLI exits 130). A NaN/inf loss raises
:class:`NonFiniteLoss` and keeps the last good checkpoint.

Example::

    import torch
    from torch import nn
    from dlnlp.training import Trainer, TrainConfig

    class Regressor(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 1)

        def forward(self, x, y):                      # batch = (x, y) -> loss
            return nn.functional.mse_loss(self.linear(x).squeeze(-1), y)

    x = torch.randn(64, 4)
    batches = [(x[i:i + 16], x[i:i + 16].sum(-1)) for i in range(0, 64, 16)]
    config = TrainConfig(lr=0.05, max_steps=200, eval_interval=50, schedule="cosine", device="cpu")
    result = Trainer(Regressor(), config, batches, val_data=batches, out_dir="run").fit()
    print(result.final_val_loss)
"""

from dlnlp.training.config import TrainConfig
from dlnlp.training.trainer import (
    IterableSource,
    NonFiniteLoss,
    Trainer,
    TrainingInterrupted,
    TrainResult,
    build_optimizer,
    build_param_groups,
    default_loss_fn,
    detach_state,
    evaluate_loss,
    layer_decay_groups,
)

__all__ = [
    "TrainConfig", "Trainer", "TrainResult", "TrainingInterrupted", "NonFiniteLoss", "IterableSource",
    "build_optimizer", "build_param_groups", "layer_decay_groups", "default_loss_fn", "detach_state",
    "evaluate_loss",
]

"""ELECTRA's replaced-token detection (Clark et al., 2020) for pretraining dlnlp's BERT, nanoGPT-style.

    generator:      p_G(x_t | x_masked)               a BERT masked LM, fewer layers, same width
    corruption:     x^corrupt_t ~ p_G(. | x_masked)    at the masked positions, x_t elsewhere
    discriminator:  D(x^corrupt, t) = sigmoid(w^T GELU(W h_L,t))   "is token t replaced?"
    loss = L_MLM(G) + lambda * L_Disc(D),  lambda = 50            (eq. 1; L_Disc over every real token)

The discriminator learns from every token of a sequence, not only the masked 15%, which is what
makes ELECTRA several times more sample-efficient than masked-LM pretraining at small compute (the
paper's section 3.4). Details kept from the paper: the generator's sample is drawn from its softmax
at temperature 1 and no gradient flows through it (section 2: the generator is trained by maximum
likelihood, not adversarially); a sampled token equal to the original counts as "original"; the two
networks share the token, position and segment embeddings (section 3.2). The generator is smaller
by depth (half the discriminator's layers, at the discriminator's width) so that the embeddings are
shared without a projection, as DeBERTa-v3's and COCO-LM's ELECTRA-style generators are.

Only the discriminator is the pretrained model: :meth:`ElectraPretraining.exported_state_dict` is the
state of a plain :class:`~dlnlp.models.bert.Bert` without pretraining heads, which the trainer saves
as ``model.safetensors``; the generator lives in the training checkpoint only (for ``--resume``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dlnlp.kernels.transformer import activation_fn, tie_weights
from dlnlp.models.bert import IGNORE_INDEX, Bert, BertConfig

RTD_WEIGHT = 50.0  # the paper's lambda


class ElectraOutput(NamedTuple):
    """What :meth:`ElectraPretraining.forward` returns: the combined loss, its two terms, the
    discriminator's logits ``[B, T]`` and the replaced-token labels ``[B, T]`` (bool)."""

    loss: torch.Tensor
    mlm_loss: torch.Tensor
    rtd_loss: torch.Tensor
    rtd_logits: torch.Tensor
    replaced: torch.Tensor


def generator_config(config: BertConfig, layers: int) -> BertConfig:
    """The generator of a discriminator ``config``: ``layers`` blocks (0: half the discriminator's,
    at least one), the same width, a masked-LM head, no pooler and no sentence head."""
    layers = layers or max(1, config.n_layer // 2)
    return BertConfig.from_dict({**config.to_dict(), "n_layer": layers, "mlm_head": True, "nsp_head": False,
                                 "pooler": False})


class ElectraPretraining(nn.Module):
    """Generator + discriminator + the discriminator's binary head; ``model(**batch)`` takes the masked-LM
    batches of :class:`dlnlp.training.bert_data.PretrainingBatches` (without sentence labels)."""

    def __init__(self, config: BertConfig, generator_layers: int = 0, rtd_weight: float = RTD_WEIGHT) -> None:
        super().__init__()
        if config.mlm_head or config.nsp_head:
            raise ValueError("the discriminator's config must have no masked-LM or next-sentence head")
        self.rtd_weight = rtd_weight
        self.discriminator = Bert(config)
        self.generator = Bert(generator_config(config, generator_layers))
        for name in ("tok_emb", "pos_emb", "type_emb"):
            setattr(self.generator, name, getattr(self.discriminator, name))
        tie_weights(self.generator.mlm_decoder, self.generator.tok_emb)
        # ElectraDiscriminatorPredictions: dense, activation, one logit a token
        self.rtd_dense = nn.Linear(config.dim, config.dim)
        self.rtd_act = activation_fn(config.activation)
        self.rtd_out = nn.Linear(config.dim, 1)
        for layer in (self.rtd_dense, self.rtd_out):
            nn.init.normal_(layer.weight, mean=0.0, std=0.02)
            nn.init.zeros_(layer.bias)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        mlm_labels: torch.Tensor | None = None,
        nsp_labels: torch.Tensor | None = None,
    ) -> ElectraOutput:
        """``input_ids`` masked as for BERT, ``mlm_labels`` the original ids at the selected positions
        (-100 elsewhere); the discriminator reads the original sequence with the selected positions
        replaced by the generator's samples."""
        if mlm_labels is None:
            raise ValueError("ELECTRA pretraining needs mlm_labels: the positions the generator fills in")
        if nsp_labels is not None:
            raise ValueError("ELECTRA pretraining has no next-sentence task (use --next-sentence none)")
        generated = self.generator(input_ids, token_type_ids, attention_mask, mlm_labels=mlm_labels)
        selected = mlm_labels != IGNORE_INDEX
        with torch.no_grad():
            samples = sample_tokens(generated.mlm_logits)
            original = torch.where(selected, mlm_labels, input_ids)
            corrupted = original.clone()
            corrupted[selected] = samples
            replaced = corrupted != original
        hidden = self.discriminator.encode(corrupted, token_type_ids, attention_mask)
        rtd_logits = self.rtd_out(self.rtd_act(self.rtd_dense(hidden))).squeeze(-1)
        real = attention_mask.bool() if attention_mask is not None else torch.ones_like(replaced)
        rtd_loss = F.binary_cross_entropy_with_logits(rtd_logits[real].float(), replaced[real].float())
        loss = generated.mlm_loss + self.rtd_weight * rtd_loss
        return ElectraOutput(loss, generated.mlm_loss, rtd_loss, rtd_logits, replaced)

    def exported_state_dict(self) -> dict[str, Any]:
        """The pretrained model to keep: the discriminator's weights, a plain BERT encoder."""
        return self.discriminator.state_dict_for_save()


def sample_tokens(logits: torch.Tensor) -> torch.Tensor:
    """One token per row of ``logits`` ``[N, V]`` drawn from softmax(logits) (the Gumbel-max trick:
    argmax(logits + Gumbel noise) is an exact sample, and cheaper than a multinomial on CPU)."""
    uniform = torch.rand_like(logits, dtype=torch.float32).clamp_(1e-9, 1.0 - 1e-9)
    return (logits.float() - torch.log(-torch.log(uniform))).argmax(-1)

"""``bert pretrain`` / ``bert eval`` flows: a tiny pretraining run, resume, fixed-seed evaluation, the commands."""

from __future__ import annotations

import json
import math

import pytest

from dlnlp.errors import ModelDirError, OptionError, UsageError
from dlnlp.io.modeldir import load_weights
from dlnlp.models.bert import Bert
from dlnlp.models.registry import load_model
from dlnlp.recipes.bert import (
    PretrainSettings,
    evaluate_bert_dir,
    resume_bert_pretraining,
    start_bert_pretraining,
)
from dlnlp.tokenization.train import TrainSpec, train_tokenizer
from dlnlp.training.config import TrainConfig
from tests.conftest import run_main, shared_path

TINY = {"n_layer": 2, "n_head": 2, "dim": 32, "intermediate": 64, "max_len": 48, "dropout": 0.1,
        "attn_dropout": 0.1}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A slice of Brown (documents of 20 sentences), a held-out slice, and a WordPiece tokenizer."""
    lines = shared_path("corpora/brown/train.txt").read_text(encoding="utf-8").splitlines()
    root = tmp_path_factory.mktemp("bert")
    train, valid = lines[:1200], lines[1200:1400]
    (root / "train.txt").write_text("\n\n".join("\n".join(train[i:i + 20]) for i in range(0, len(train), 20)) + "\n")
    (root / "valid.txt").write_text("\n".join(valid) + "\n")
    (root / "wp.json").write_bytes(train_tokenizer(train, TrainSpec(model="wordpiece", vocab_size=600,
                                                                    lowercase=True)))
    return root


def _config(**kw) -> TrainConfig:
    base = {"lr": 2e-3, "max_steps": 40, "log_interval": 5, "eval_interval": 20, "device": "cpu", "quiet": True,
            "weight_decay": 0.01}
    return TrainConfig(**{**base, **kw})


def _metrics(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _pretrain(corpus, out, config: TrainConfig, **settings):
    return start_bert_pretraining([str(corpus / "train.txt")], out, dict(TINY), config,
                                  PretrainSettings(batch_size=16, **settings), tokenizer=str(corpus / "wp.json"),
                                  val=corpus / "valid.txt")


def test_pretraining_lowers_the_masked_lm_loss_and_saves_a_loadable_bert(corpus, tmp_path):
    out = tmp_path / "run"
    summary = _pretrain(corpus, out, _config(max_steps=60))
    losses = [m["loss"] for m in _metrics(out) if "loss" in m]
    assert sum(losses[-3:]) / 3 < losses[0] - 0.4
    assert summary["steps"] == 60 and summary["val_loss"] is not None
    # tokens/s counts the masked tokens only (the trainer's ignore_index), about 15% of each batch
    assert 0 < summary["tokens"] < 0.2 * 60 * 16 * TINY["max_len"]
    loaded = load_model(out, "cpu")
    assert loaded.family.kind == "bert" and loaded.config["pretrain"]["next_sentence"] == "nsp"
    assert loaded.model.config.nsp_head and loaded.model.config.vocab_size == loaded.codec.vocab_size
    # the spooled sentences are a working copy, removed at the end (--keep-data keeps them)
    assert (out / "tokenizer.json").is_file() and not (out / "data").exists()
    # an untrained BERT predicts about uniformly: ln(vocabulary) nats per masked token
    mlm_loss = evaluate_bert_dir(out, [str(corpus / "valid.txt")], device="cpu")["mlm_loss"]
    assert mlm_loss < math.log(loaded.model.config.vocab_size) - 0.4


@pytest.mark.parametrize("objective", [{}, {"objective": "electra", "next_sentence": "none"}],
                         ids=["mlm", "electra"])
def test_a_resumed_run_continues_the_same_loss_curve(corpus, tmp_path, objective):
    config = _config(max_steps=12, log_interval=1, eval_interval=6, schedule="constant")
    _pretrain(corpus, tmp_path / "whole", config, whole_word_mask=True, **objective)
    _pretrain(corpus, tmp_path / "halves", config.replace(max_steps=6), whole_word_mask=True, **objective)
    resumed = resume_bert_pretraining(tmp_path / "halves", {"max_steps": 12}, quiet=True, device="cpu")
    assert resumed["steps"] == 12
    whole = [(m["step"], m["loss"]) for m in _metrics(tmp_path / "whole") if "loss" in m]
    halves = [(m["step"], m["loss"]) for m in _metrics(tmp_path / "halves") if "loss" in m]
    assert [s for s, _ in halves] == list(range(1, 13))
    assert halves == pytest.approx(whole, abs=1e-5)


def test_electra_pretraining_keeps_its_discriminator_as_a_plain_bert(corpus, tmp_path):
    out = tmp_path / "run"
    summary = _pretrain(corpus, out, _config(max_steps=60), next_sentence="none", objective="electra",
                        mlm_prob=0.25)
    losses = [m["loss"] for m in _metrics(out) if "loss" in m]
    assert sum(losses[-3:]) / 3 < losses[0] - 2.0  # the discriminator term alone starts at 50 ln 2 ~ 35
    assert summary["steps"] == 60
    loaded = load_model(out, "cpu")
    assert loaded.family.kind == "bert" and loaded.config["pretrain"]["objective"] == "electra"
    model = loaded.model
    assert not model.config.mlm_head and not model.config.nsp_head and model.config.n_layer == TINY["n_layer"]
    saved = load_weights(out / "model.safetensors")
    assert set(saved) == set(Bert(model.config).state_dict())  # no generator, no detection head
    with pytest.raises(ModelDirError, match="ELECTRA discriminator"):
        evaluate_bert_dir(out, [str(corpus / "valid.txt")], device="cpu")
    with pytest.raises(UsageError, match="--next-sentence none"):
        _pretrain(corpus, tmp_path / "nsp", _config(), objective="electra")
    with pytest.raises(UsageError, match="--objective must be one of mlm, electra"):
        _pretrain(corpus, tmp_path / "other", _config(), objective="rtd", next_sentence="none")


def test_evaluation_gives_the_same_numbers_on_every_run(corpus, tmp_path):
    out = tmp_path / "run"
    _pretrain(corpus, out, _config(max_steps=10), next_sentence="sop")
    valid = [str(corpus / "valid.txt")]
    first = evaluate_bert_dir(out, valid, device="cpu")
    assert first == evaluate_bert_dir(out, valid, device="cpu")
    assert first["next_sentence"] == "sop" and 0 <= first["nsp_accuracy"] <= 1
    assert 0 <= first["mlm_accuracy"] <= 1 and first["perplexity"] == pytest.approx(math.exp(first["mlm_loss"]))
    assert first["masked_tokens"] > 100
    assert evaluate_bert_dir(out, valid, device="cpu", seed=1)["mlm_loss"] != first["mlm_loss"]


def test_without_a_sentence_task_the_model_has_no_next_sentence_head(corpus, tmp_path):
    out = tmp_path / "run"
    _pretrain(corpus, out, _config(max_steps=3), next_sentence="none")
    assert not load_model(out, "cpu").model.config.nsp_head
    result = evaluate_bert_dir(out, [str(corpus / "valid.txt")], device="cpu")
    assert "nsp_accuracy" not in result and result["mlm_loss"] > 0


def test_settings_out_of_range_name_the_option(corpus, tmp_path):
    with pytest.raises(OptionError, match="--mlm-prob must be in"):
        _pretrain(corpus, tmp_path / "a", _config(), mlm_prob=0.0)
    with pytest.raises(OptionError, match="--tokenizer is required"):
        start_bert_pretraining([str(corpus / "train.txt")], tmp_path / "b", dict(TINY), _config(),
                               PretrainSettings(), tokenizer=None)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_commands(corpus, tmp_path):
    out = tmp_path / "run"
    args = ["bert", "pretrain", str(corpus / "train.txt"), "--tokenizer", str(corpus / "wp.json"), "--out", str(out),
            "--layers", "1", "--heads", "2", "--dim", "16", "--intermediate", "32", "--max-len", "32",
            "--next-sentence", "sop", "--whole-word-mask", "--max-steps", "3", "--batch-size", "8",
            "--device", "cpu", "--quiet", "--json"]
    code, stdout, stderr = run_main(*args)
    assert code == 0, stderr
    assert json.loads(stdout)["steps"] == 3
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["n_layer"] == 1 and config["pretrain"]["whole_word_mask"]
    code, stdout, stderr = run_main("bert", "pretrain", "--out", out, "--resume", "--max-steps", "5", "--quiet",
                                    "--json", "--device", "cpu")
    assert code == 0, stderr
    assert json.loads(stdout)["steps"] == 5
    # --resume refuses a model option or a corpus that is not the run's, naming it (issue 20)
    for changed, message in ((["--dim", "32"], "--dim 32 differs from the run's --dim 16"),
                             (["--next-sentence", "nsp"], "--next-sentence nsp differs from the run's --next-sentence sop"),
                             ([str(corpus / "valid.txt")], "valid.txt is not the run's")):
        code, _, stderr = run_main("bert", "pretrain", *changed, "--out", out, "--resume", "--max-steps", "6",
                                   "--quiet", "--device", "cpu")
        assert code == 1 and message in stderr, stderr
    code, stdout, _ = run_main("bert", "eval", out, corpus / "valid.txt", "--device", "cpu")
    assert code == 0 and "sop accuracy" in stdout
    code, stdout, _ = run_main("bert", "eval", out, corpus / "valid.txt", "--device", "cpu", "--json")
    assert set(json.loads(stdout)) >= {"mlm_loss", "perplexity", "mlm_accuracy", "nsp_accuracy"}
    code, _, stderr = run_main(*args[:6], str(tmp_path / "bad"), "--next-sentence", "mlm")
    assert code == 2 and "--next-sentence must be one of nsp, sop, none" in stderr


def test_the_electra_command(corpus, tmp_path):
    out = tmp_path / "run"
    args = ["bert", "pretrain", str(corpus / "train.txt"), "--tokenizer", str(corpus / "wp.json"), "--out", str(out),
            "--layers", "2", "--heads", "2", "--dim", "16", "--intermediate", "32", "--max-len", "32",
            "--max-steps", "2", "--batch-size", "8", "--device", "cpu", "--quiet", "--json", "--objective", "electra"]
    code, _, stderr = run_main(*args)
    assert code == 2 and "--objective electra has no sentence task: add --next-sentence none" in stderr
    assert not out.exists()
    code, stdout, stderr = run_main(*args, "--next-sentence", "none", "--generator-layers", "1", "--rtd-weight", "20")
    assert code == 0, stderr
    assert json.loads(stdout)["steps"] == 2
    pretrain = json.loads((out / "config.json").read_text())["pretrain"]
    assert (pretrain["objective"], pretrain["generator_layers"], pretrain["rtd_weight"]) == ("electra", 1, 20.0)


@pytest.mark.parametrize("setting, message", [({"generator_layers": -1}, "--generator-layers must be >= 0"),
                                              ({"rtd_weight": 0.0}, "--rtd-weight must be > 0")])
def test_electra_settings_out_of_range_name_the_option(corpus, tmp_path, setting, message):
    with pytest.raises(OptionError, match=message):
        _pretrain(corpus, tmp_path / "run", _config(), objective="electra", next_sentence="none", **setting)
    assert not (tmp_path / "run").exists()

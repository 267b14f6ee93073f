"""Fine-tuning: heads on the first sub-token, buckets against one-at-a-time inference, frozen backbones,
resume, the backbone reference of head-only directories, and the predict/evaluate commands."""

from __future__ import annotations

import json
import random
import shutil

import pytest
import torch

from dlnlp.errors import ModelDirError, OptionError
from dlnlp.io.labeled import Example, LabelMap, Sentence
from dlnlp.io.modeldir import load_weights
from dlnlp.recipes.finetune import FinetuneSpec, finetune
from dlnlp.training.config import TrainConfig
from dlnlp.transfer.backbone import load_backbone
from dlnlp.transfer.data import collate, encode_examples, encode_sentences
from dlnlp.transfer.logreg import L2_GRID, fit_logistic
from dlnlp.transfer.model import FineTuned, HeadConfig, apply_strategy
from dlnlp.transfer.predict import compute_features, logits_in_order
from dlnlp.transfer.saved import load_finetuned
from tests.conftest import run_main
from tests.models.test_bert import make_tiny_bert_dir

POSITIVE = ["good", "great"]
NEGATIVE = ["bad", "boring"]
NOUNS = ["film", "movie", "story", "play", "films", "plays"]


def labeled_lines(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        label = i % 2
        word = rng.choice(POSITIVE if label else NEGATIVE)
        noun = rng.choice(NOUNS)
        lines.append(f"{' '.join(rng.choice(['the', 'a', 'it', 'was', 'not', 'of']) for _ in range(i % 5))} a {word} "
                     f"{noun} .\t{label}")
    return lines


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_bert_dir(tmp_path_factory.mktemp("ft") / "bert", max_len=32)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    (root / "train.tsv").write_text("text\tlabel\n" + "\n".join(labeled_lines(40)) + "\n")
    (root / "dev.tsv").write_text("text\tlabel\n" + "\n".join(labeled_lines(12, seed=1)) + "\n")
    conll = "the DT B-NP\nfilms NNS I-NP\nwas VBD B-VP\ngood JJ B-ADJP\n. . O\n\na DT B-NP\nboring JJ I-NP\n" \
            "story NN I-NP\n\n"
    (root / "train.txt").write_text(conll * 4)
    (root / "dev.txt").write_text(conll)
    return root


def config(**changes) -> TrainConfig:
    settings = dict(lr=1e-3, epochs=2, device="cpu", quiet=True, eval_interval=0, extra={"batch_size": 8})
    return TrainConfig(**{**settings, **changes})


def test_the_label_sits_on_the_first_sub_token(tiny):
    backbone = load_backbone(tiny)
    (words,) = backbone.encode_words([["the", "films", "boring", "."]])
    tok = backbone.tokenizer
    pieces = [tok.id_to_token(i) for i in words.ids]
    assert pieces == ["[CLS]", "the", "film", "##s", "boring", ".", "[SEP]"]
    assert words.starts == [1, 2, 4, 5]
    batch = collate([words], [[0, 1, 2, 3]], backbone.pad_id, backbone.segments)
    assert batch["word_index"].tolist() == [[1, 2, 4, 5]]
    # the second sentence is shorter: its missing words are padding, left out of the loss
    short = backbone.encode_words([["the", "film"]])[0]
    batch = collate([words, short], [[0, 1, 2, 3], [1, 2]], backbone.pad_id, backbone.segments)
    assert batch["labels"].tolist() == [[0, 1, 2, 3], [1, 2, -100, -100]]
    model = FineTuned(backbone, HeadConfig(task="tag", num_labels=4, dim=backbone.dim)).eval()
    logits = model(**{k: v for k, v in batch.items() if k != "labels"})
    assert logits.shape == (2, 4, 4)
    # the logits of a word depend on its first piece only: changing the head's input there moves them
    hidden = model.backbone(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]).last_hidden_state
    expected = model.head.classifier(hidden[0, [1, 2, 4, 5]])
    torch.testing.assert_close(logits[0], expected)


def test_a_word_past_the_length_limit_gets_no_position(tiny):
    backbone = load_backbone(tiny)
    (words,) = backbone.encode_words([["the", "films", "was", "good"]], max_len=5)
    assert len(words.ids) <= 5 and words.ids[-1] == backbone.sep_id
    assert words.starts == [1, 2]  # "films" keeps its first piece, "was" and "good" fall off


@pytest.mark.parametrize(("task", "pool"), [("classify", "pooler"), ("classify", "mean"), ("classify", "max"),
                                           ("pair", "cls"), ("pair", "mean"), ("tag", "mean")])
def test_buckets_predict_as_one_at_a_time(tiny, task, pool):
    backbone = load_backbone(tiny)
    torch.manual_seed(0)
    model = FineTuned(backbone, HeadConfig(task=task, num_labels=3, dim=backbone.dim, pool=pool,
                                           layers=[-1] if pool == "pooler" else [-1, -2],
                                           combine="single" if pool == "pooler" else "mix")).eval()
    texts = [line.split("\t")[0] for line in labeled_lines(11)]
    if task == "tag":
        data = encode_sentences(backbone, [Sentence(t.split(), None) for t in texts], None, None)
    else:
        examples = [Example(t, None, texts[-1 - i] if task == "pair" else None) for i, t in enumerate(texts)]
        data = encode_examples(backbone, examples, task, None, None)
    assert len(set(data.lengths())) > 2  # the batches do carry padding
    batched = logits_in_order(model, data, batch_size=4)
    for i in range(len(data)):
        one = collate([data.rows[i]], None, backbone.pad_id, backbone.segments)
        with torch.no_grad():
            alone = model(**one)[0]
        torch.testing.assert_close(batched[i], alone, atol=1e-5, rtol=1e-5)


def test_features_strategy_keeps_the_backbone_bit_identical(tiny, data, tmp_path):
    before = load_weights(tiny)
    summary = finetune(tiny, [str(data / "train.tsv")], tmp_path / "out", FinetuneSpec(strategy="features",
                       layers="mix"), config(), val=data / "dev.tsv")
    assert summary["trainable_parameters"] == (2 * 32 + 2) + 3 + 1  # linear head + mix weights (3 states) + gamma
    saved = load_weights(tmp_path / "out")
    assert set(saved) == {"head.mix.weights", "head.mix.gamma", "head.classifier.weight", "head.classifier.bias"}
    assert not (tmp_path / "out" / "tokenizer.json").exists()  # the backbone's own is used
    after = load_weights(tiny)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    model, _ = load_finetuned(tmp_path / "out")
    reference = load_backbone(tiny).state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in model.backbone.state_dict().items())
    # the head moved: its mix is no longer the uniform start
    assert not torch.equal(saved["head.mix.weights"], torch.zeros(3))


def test_a_logistic_regression_head_on_frozen_features(tiny, data, tmp_path):
    before = load_weights(tiny)
    out = tmp_path / "probe"
    result = run_main("finetune", tiny, data / "train.tsv", "--val", data / "dev.tsv", "--out", out, "--strategy",
                      "features", "--head-fit", "logreg", "--layers", "last4-concat", "--device", "cpu", "-q",
                      "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["head_fit"] == "logreg" and summary["l2"] in L2_GRID
    assert 0 <= summary["held_out_accuracy"] <= 1 and summary["best"]["accuracy"] >= 0.75
    assert set(load_weights(out)) == {"head.classifier.weight", "head.classifier.bias"}
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["l2"] == summary["l2"] and record["accuracy"] == summary["best"]["accuracy"]
    after = load_weights(tiny)
    assert all(torch.equal(before[k], after[k]) for k in before)  # the backbone stays frozen
    scores = json.loads(run_main("evaluate", out, data / "dev.tsv", "--json", "--device", "cpu").stdout)
    assert scores["accuracy"] == pytest.approx(summary["best"]["accuracy"])
    texts = [line.split("\t")[0] for line in labeled_lines(4, seed=5)]
    predicted = run_main("predict", out, "--device", "cpu", input="\n".join(texts) + "\n")
    assert predicted.returncode == 0 and len(predicted.stdout.splitlines()) == 4
    # the saved head is the fitted logistic regression of the cached features
    model, config_json = load_finetuned(out)
    assert config_json["spec"]["head_fit"] == "logreg"
    backbone = model.backbone
    encoded = encode_examples(backbone, [Example(t, None) for t in texts], "classify", None, 32)
    features = compute_features(model, encoded)
    fit = fit_logistic(model.head.combine(features_of(tiny, data, model)), train_labels(data), 2, l2=summary["l2"])
    with torch.no_grad():
        torch.testing.assert_close(model.head(features), fit.linear(model.head.combine(features)), atol=1e-3,
                                   rtol=1e-3)


def features_of(tiny, data, model):
    from dlnlp.io.labeled import read_labeled

    examples = list(read_labeled([str(data / "train.tsv")]))
    return compute_features(model, encode_examples(model.backbone, examples, "classify", LabelMap(["0", "1"]), 128))


def train_labels(data):
    return [int(line.rsplit("\t", 1)[1]) for line in (data / "train.tsv").read_text().splitlines()[1:]]


def test_the_default_head_fit_of_features(tiny, data, tmp_path):
    train = [str(data / "train.tsv")]
    logreg = finetune(tiny, train, tmp_path / "a", FinetuneSpec(strategy="features"), config())
    assert logreg["head_fit"] == "logreg" and logreg["best"] is None
    sgd = finetune(tiny, train, tmp_path / "b", FinetuneSpec(strategy="features", head_fit="sgd"), config(epochs=1))
    assert sgd["head_fit"] == "sgd" and sgd["steps"] > 0
    regress = FinetuneSpec(strategy="features", task="regress")
    assert regress.resolved_head_fit() == "sgd" and FinetuneSpec(strategy="features", layers="mix"
                                                                 ).resolved_head_fit() == "sgd"
    with pytest.raises(OptionError, match="nothing to resume"):
        finetune(tiny, train, tmp_path / "a", FinetuneSpec(), config(), resume=True)


def test_backbone_dropout_replaces_the_saved_one_and_keeps_the_weights(tmp_path):
    crammed = make_tiny_bert_dir(tmp_path / "bert", max_len=32, dropout=0.0, attn_dropout=0.0)
    saved = load_backbone(crammed)
    assert not any(isinstance(m, torch.nn.Dropout) for m in saved.model.modules())
    tuned = load_backbone(crammed, dropout=0.1)
    rates = {m.p for m in tuned.model.modules() if isinstance(m, torch.nn.Dropout)}
    assert rates == {0.1}
    reference = saved.model.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in tuned.model.state_dict().items())
    ids = torch.tensor([[2, 7, 8, 9, 3]])
    with torch.no_grad():
        torch.testing.assert_close(tuned.eval()(ids).last_hidden_state, saved.eval()(ids).last_hidden_state)
        tuned.train()
        assert not torch.allclose(tuned(ids).last_hidden_state, saved(ids).last_hidden_state)
    # a random-init baseline gets the same dropout
    fresh = load_backbone(crammed, init="random", dropout=0.1)
    assert {m.p for m in fresh.model.modules() if isinstance(m, torch.nn.Dropout)} == {0.1}
    # through the command: the option is kept with the run
    train = tmp_path / "train.tsv"
    train.write_text("text\tlabel\n" + "\n".join(labeled_lines(16)) + "\n")
    assert run_main("finetune", crammed, train, "--backbone-dropout", "0.1", "--epochs", "1", "--device", "cpu", "-q",
                    "--out", tmp_path / "out").returncode == 0
    assert json.loads((tmp_path / "out" / "config.json").read_text())["spec"]["backbone_dropout"] == 0.1


def test_top_strategy_trains_only_the_top_layers(tiny, data, tmp_path):
    finetune(tiny, [str(data / "train.tsv")], tmp_path / "out", FinetuneSpec(strategy="top", top=1), config(),
             val=data / "dev.tsv")
    saved = load_weights(tmp_path / "out")
    assert any(k.startswith("backbone.model.blocks.1.") for k in saved)
    assert not any(k.startswith(("backbone.model.blocks.0.", "backbone.model.tok_emb")) for k in saved)
    original = load_weights(tiny)
    assert not torch.equal(saved["backbone.model.blocks.1.mlp.fc.weight"], original["blocks.1.mlp.fc.weight"])
    model, _ = load_finetuned(tmp_path / "out")
    torch.testing.assert_close(model.backbone.model.blocks[0].mlp.fc.weight, original["blocks.0.mlp.fc.weight"],
                               rtol=0, atol=0)


def test_a_head_only_directory_refuses_a_changed_backbone(tiny, data, tmp_path):
    backbone = tmp_path / "backbone"
    shutil.copytree(tiny, backbone)
    finetune(backbone, [str(data / "train.tsv")], tmp_path / "out", FinetuneSpec(strategy="features"),
             config(epochs=1), val=data / "dev.tsv")
    load_finetuned(tmp_path / "out")  # fits
    make_tiny_bert_dir(tmp_path / "other", seed=7, max_len=32)
    shutil.copyfile(tmp_path / "other" / "model.safetensors", backbone / "model.safetensors")
    with pytest.raises(ModelDirError, match="has changed"):
        load_finetuned(tmp_path / "out")
    shutil.rmtree(backbone)
    with pytest.raises(ModelDirError, match="is gone"):
        load_finetuned(tmp_path / "out")


def test_resume_continues_the_same_run(tiny, data, tmp_path):
    train = [str(data / "train.tsv")]
    finetune(tiny, train, tmp_path / "straight", FinetuneSpec(), config(max_steps=6, epochs=None))
    finetune(tiny, train, tmp_path / "resumed", FinetuneSpec(), config(max_steps=3, epochs=None))
    finetune(tiny, train, tmp_path / "resumed", FinetuneSpec(), config(max_steps=6, epochs=None), resume=True)
    a, b = load_weights(tmp_path / "straight"), load_weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_full_fine_tuning_learns_and_saves_a_self_contained_directory(tiny, data, tmp_path):
    summary = finetune(tiny, [str(data / "train.tsv")], tmp_path / "out", FinetuneSpec(), config(epochs=20, lr=3e-3),
                       val=data / "dev.tsv")
    assert summary["best"]["accuracy"] >= 0.75  # the words decide the label: the model must find them
    assert (tmp_path / "out" / "tokenizer.json").is_file()
    shutil.rmtree(tiny.parent / "unused", ignore_errors=True)
    model, config_json = load_finetuned(tmp_path / "out")
    assert config_json["backbone"]["saved"] == "all" and model.labels == ["0", "1"]


def test_predict_and_evaluate_commands(tiny, data, tmp_path):
    out = tmp_path / "out"
    result = run_main("finetune", tiny, data / "train.tsv", "--val", data / "dev.tsv", "--out", out, "--epochs", "2",
                      "--lr", "1e-3", "--batch-size", "8", "--device", "cpu", "-q", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["labels"] == ["0", "1"]
    texts = [line.split("\t")[0] for line in labeled_lines(5, seed=3)]
    plain = run_main("predict", out, "--device", "cpu", input="\n".join(texts) + "\n")
    assert plain.returncode == 0, plain.stderr
    rows = [line.split("\t") for line in plain.stdout.splitlines()]
    assert len(rows) == len(texts) and all(r[0] in ("0", "1") and 0.5 <= float(r[1]) <= 1 for r in rows)
    probs = run_main("predict", out, "--json", "--probs", "--device", "cpu", input="\n".join(texts) + "\n")
    records = [json.loads(line) for line in probs.stdout.splitlines()]
    assert [r["label"] for r in records] == [r[0] for r in rows]
    assert all(abs(sum(r["probs"].values()) - 1) < 1e-4 and r["probs"][r["label"]] == r["score"] for r in records)
    # the dev file's rows by field, as in training
    by_field = run_main("predict", out, data / "dev.tsv", "--device", "cpu")
    assert len(by_field.stdout.splitlines()) == 12
    scores = run_main("evaluate", out, data / "dev.tsv", "--json", "--device", "cpu")
    result = json.loads(scores.stdout)
    assert sum(map(sum, result["confusion"])) == 12 and 0 <= result["macro_f1"] <= 1
    predicted = [line.split("\t")[0] for line in by_field.stdout.splitlines()]
    gold = [line.split("\t")[1] for line in (data / "dev.tsv").read_text().splitlines()[1:]]
    assert result["accuracy"] == pytest.approx(sum(p == g for p, g in zip(predicted, gold, strict=True)) / 12)
    table = run_main("evaluate", out, data / "dev.tsv", "--device", "cpu")
    assert "gold \\ pred" in table.stdout


def test_tagging_commands(tiny, data, tmp_path):
    out = tmp_path / "tagger"
    result = run_main("finetune", tiny, data / "train.txt", "--val", data / "dev.txt", "--task", "tag", "--out", out,
                      "--epochs", "1", "--batch-size", "4", "--device", "cpu", "-q")
    assert result.returncode == 0, result.stderr
    predicted = run_main("predict", out, data / "dev.txt", "--device", "cpu")
    blocks = predicted.stdout.strip("\n").split("\n\n")
    source = (data / "dev.txt").read_text().strip("\n").split("\n\n")
    assert len(blocks) == len(source)
    for got, given in zip(blocks, source, strict=True):
        for out_row, in_row in zip(got.splitlines(), given.splitlines(), strict=True):
            assert out_row.rsplit(" ", 1)[0] == in_row  # the input's columns, then the predicted tag
    scores = json.loads(run_main("evaluate", out, data / "dev.txt", "--json", "--device", "cpu").stdout)
    assert scores["tokens"] == 8 and scores["gold_chunks"] == 4 and 0 <= scores["f1"] <= 1


@pytest.mark.parametrize(("args", "message"), [
    (["--task", "nope"], "--task must be one of"),
    (["--strategy", "top"], "--strategy top needs --top"),
    (["--strategy", "top", "--top", "9"], "--top must be between 1 and 2"),
    (["--layer", "7"], "--layer must be between"),
    (["--pool", "pooler", "--layers", "mix"], "--pool pooler reads the last layer only"),
    (["--init", "random", "--strategy", "features"], "--init random"),
    (["--head-fit", "logreg"], "--head-fit logreg fits the head on frozen features"),
    (["--head-fit", "sgd"], "needs --strategy features"),
    (["--head-fit", "nope", "--strategy", "features"], "--head-fit must be one of"),
    (["--head-fit", "logreg", "--strategy", "features", "--task", "regress"], "serves --task classify and pair"),
    (["--head-fit", "logreg", "--strategy", "features", "--layers", "mix"], "--layers mix learns its layer weights"),
    (["--backbone-dropout", "1"], "--backbone-dropout must be in [0, 1)"),
])
def test_bad_options_are_one_line(tiny, data, tmp_path, args, message):
    result = run_main("finetune", tiny, data / "train.tsv", "--out", tmp_path / "o", "--device", "cpu", "-q", *args)
    assert result.returncode in (1, 2) and message in result.stderr, result.stderr
    assert not (tmp_path / "o").exists()


def test_an_unknown_dev_label_is_named(tiny, data, tmp_path):
    dev = tmp_path / "dev.tsv"
    dev.write_text("text\tlabel\na good film\t7\n")
    result = run_main("finetune", tiny, data / "train.tsv", "--val", dev, "--out", tmp_path / "o", "--device", "cpu",
                      "-q")
    assert result.returncode == 1 and "dev.tsv:2: label '7' is not one of the 2 known labels" in result.stderr


def test_labels_come_from_the_training_data_in_sorted_order(tiny):
    backbone = load_backbone(tiny)
    label_map = LabelMap(["neg", "pos"])
    data = encode_examples(backbone, [Example("a good film", "pos"), Example("a bad film", "neg")], "classify",
                           label_map, None)
    assert data.labels == [1, 0]
    model = FineTuned(backbone, HeadConfig(num_labels=2, dim=backbone.dim), label_map.to_list())
    apply_strategy(model, "features")
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["head.classifier.weight",
                                                                            "head.classifier.bias"]

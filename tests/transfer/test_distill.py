"""Distillation: the losses by hand, the teacher's cached outputs, students cut from the teacher's layers,
seeded augmentation that keeps labels away from the student, and students read by predict/evaluate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dlnlp.io.labeled import Example
from dlnlp.recipes.distill import DistillSpec, TeacherLabels, distill, transfer_set
from dlnlp.recipes.finetune import FinetuneSpec, finetune
from dlnlp.training.config import TrainConfig
from dlnlp.transfer.augment import Augmenter, read_pos_lexicon
from dlnlp.transfer.data import collate, encode_examples
from dlnlp.transfer.distill import (
    DistillLoss,
    build_student,
    hard_label_loss,
    layer_map,
    lm_distill_loss,
    lm_teacher_outputs,
    load_teacher,
    soft_target_loss,
    stream_segments,
    stream_windows,
    teacher_outputs,
    transfer_key,
)
from dlnlp.transfer.predict import logits_in_order
from dlnlp.transfer.saved import load_finetuned
from tests.conftest import run_main
from tests.models.test_bert import make_tiny_bert_dir
from tests.transfer.test_finetune import labeled_lines


def config(**changes) -> TrainConfig:
    settings = dict(lr=1e-3, epochs=1, device="cpu", quiet=True, eval_interval=0, extra={"batch_size": 8})
    return TrainConfig(**{**settings, **changes})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    (root / "train.tsv").write_text("text\tlabel\n" + "\n".join(labeled_lines(32)) + "\n")
    (root / "dev.tsv").write_text("text\tlabel\n" + "\n".join(labeled_lines(10, seed=1)) + "\n")
    (root / "unlabeled.txt").write_text("\n".join(line.split("\t")[0] for line in labeled_lines(12, seed=2)) + "\n")
    (root / "pos.txt").write_text("the DT B-NP\ngood JJ I-NP\nfilm NN I-NP\n\na DT B-NP\nbad JJ I-NP\ngreat JJ I-NP\n"
                                  "story NN I-NP\nmovie NN I-NP\nplay VB B-VP\nplay NN B-NP\nplay NN B-NP\n\n")
    return root


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("teacher")
    bert = make_tiny_bert_dir(root / "bert", max_len=32, n_layer=3)
    finetune(bert, [str(data / "train.tsv")], root / "ft", FinetuneSpec(max_len=32), config(epochs=2),
             val=data / "dev.tsv")
    return root / "ft"


def _softmax(xs, temperature=1.0):
    exps = [math.exp(x / temperature) for x in xs]
    return [e / sum(exps) for e in exps]


def test_the_loss_matches_a_hand_computation_with_the_t_squared_factor():
    t = [[2.0, 0.0, -1.0], [0.0, 1.0, 0.5]]
    s = [[0.5, 0.5, 0.0], [1.0, -1.0, 0.0]]
    labels = [1, -100]
    temperature, alpha = 2.0, 0.3
    kl = []
    for tr, sr in zip(t, s, strict=True):
        p, q = _softmax(tr, temperature), _softmax(sr, temperature)
        kl.append(sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True)))
    soft = temperature ** 2 * sum(kl) / 2
    hard = -math.log(_softmax(s[0])[1])  # the unlabeled second row has no hard term
    expected = alpha * soft + (1 - alpha) * hard
    logits, teacher_logits = torch.tensor(s), torch.tensor(t)
    got = DistillLoss(temperature, alpha)(logits, teacher_logits, torch.tensor(labels))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert soft_target_loss(logits, teacher_logits, temperature).item() == pytest.approx(soft, rel=1e-5)
    # T^2: the same KL at T = 4 is scaled by 16, not 4
    kl4 = sum(sum(pi * math.log(pi / qi) for pi, qi in zip(_softmax(tr, 4), _softmax(sr, 4), strict=True))
              for tr, sr in zip(t, s, strict=True)) / 2
    assert soft_target_loss(logits, teacher_logits, 4.0).item() == pytest.approx(16 * kl4, rel=1e-5)
    # the optional terms: logit MSE and 1 - cosine of the pooled vectors
    u, v = torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 1.0], [2.0, 2.0]])
    extra = DistillLoss(temperature, 1.0, hidden_weight=0.5, mse_weight=2.0)(logits, teacher_logits,
                                                                             torch.tensor(labels), u, v)
    mse = sum((a - b) ** 2 for tr, sr in zip(t, s, strict=True) for a, b in zip(sr, tr, strict=True)) / 6
    assert extra.item() == pytest.approx(soft + 0.5 * (1.0 + 0.0) / 2 + 2.0 * mse, rel=1e-5)


def test_lm_distillation_loss_by_hand_with_top_k():
    t = [3.0, 1.0, 0.0, -2.0]
    s = [0.0, 2.0, 1.0, 0.0]
    temperature, alpha, target = 2.0, 0.25, 2
    # the teacher's two most likely tokens (0 and 1), renormalized; the student's full softmax at T
    p = _softmax([t[0], t[1]], temperature)
    q = _softmax(s, temperature)
    kl = p[0] * math.log(p[0] / q[0]) + p[1] * math.log(p[1] / q[1])
    expected = alpha * temperature ** 2 * kl + (1 - alpha) * -math.log(_softmax(s)[target])
    got = lm_distill_loss(torch.tensor([[s]]), torch.tensor([[t]]), torch.tensor([[target]]),
                          temperature=temperature, alpha=alpha, top_k=2)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    full = lm_distill_loss(torch.tensor([[s]]), torch.tensor([[t]]), torch.tensor([[target]]),
                           temperature=temperature, alpha=1.0)
    pf = _softmax(t, temperature)
    assert full.item() == pytest.approx(4 * sum(a * math.log(a / b) for a, b in zip(pf, q, strict=True)), rel=1e-5)


def test_cached_teacher_outputs_equal_fresh_ones(teacher, tmp_path):
    model, info = load_teacher(teacher)
    examples = [Example(line.split("\t")[0], None) for line in labeled_lines(13, seed=3)]
    encoded = encode_examples(model.backbone, examples, "classify", None, 32)
    key = transfer_key(info["identity"], encoded)
    first = teacher_outputs(model, encoded, tmp_path, key, batch_size=4)
    assert not first.cached and isinstance(first.logits, np.memmap)
    fresh = torch.stack(logits_in_order(model, encoded, batch_size=5))
    np.testing.assert_allclose(first.logits, fresh.numpy(), rtol=1e-5, atol=1e-5)
    again = teacher_outputs(model, encoded, tmp_path, key)
    assert again.cached
    np.testing.assert_array_equal(again.logits, first.logits)
    np.testing.assert_array_equal(again.pooled, first.pooled)
    # another input set gets another key
    assert transfer_key(info["identity"], encode_examples(model.backbone, examples[:-1], "classify", None, 32)) != key


def test_layer_map_is_distilberts():
    assert layer_map(12, 6) == [0, 2, 4, 7, 9, 11]
    assert layer_map(6, 3) == [0, 2, 5]
    assert layer_map(3, 3) == [0, 1, 2]


def test_a_student_from_the_teachers_layers_reproduces_them_before_training(teacher):
    model, info = load_teacher(teacher)
    student = build_student("bert:layers=2", model, info["config"], []).eval()
    chosen = layer_map(3, 2)
    assert chosen == [0, 2]
    batch = collate(encode_examples(model.backbone, [Example("a good film .", None), Example("it was bad", None)],
                                    "classify", None, 32).rows, None, model.backbone.pad_id, True)
    inputs = (batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    with torch.no_grad():
        t = model.backbone(*inputs).hidden_states
        s = student.backbone(*inputs).hidden_states
        torch.testing.assert_close(s[0], t[0])          # embeddings copied
        torch.testing.assert_close(s[1], t[1])          # student layer 1 = teacher layer 1 (index 0)
        # student layer 2 is the teacher's layer 3 (index 2), applied to what reaches it
        mask = batch["attention_mask"].bool()
        block = model.backbone.model.blocks[chosen[1]]
        torch.testing.assert_close(s[2], block(s[1], key_padding_mask=mask))
    assert torch.equal(student.head.classifier.weight, model.head.classifier.weight)
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in model.parameters())
    # a student with all the teacher's layers is the teacher
    whole = build_student("bert:layers=3", model, info["config"], []).eval()
    with torch.no_grad():
        torch.testing.assert_close(whole(**batch), model(**batch))


def test_augmentation_is_seeded_and_carries_no_labels(data):
    lexicon = read_pos_lexicon(data / "pos.txt")
    assert lexicon["play"] == "NN" and lexicon["good"] == "JJ"
    examples = [Example(line.split("\t")[0], line.split("\t")[1], None, f"l{i}")
                for i, line in enumerate(labeled_lines(10))]
    make = lambda seed: Augmenter(("mask", "pos", "ngram"), 8, seed, lexicon=lexicon).fit(  # noqa: E731
        [e.text for e in examples])
    first, again, other = make(0).augment(examples), make(0).augment(examples), make(1).augment(examples)
    assert [e.text for e in first] == [e.text for e in again]
    assert [e.text for e in first] != [e.text for e in other]
    assert len(first) > len(examples) and all(e.label is None for e in first)
    assert any("[MASK]" in e.text for e in first)
    originals = {e.text for e in examples}
    assert not originals & {e.text for e in first}
    # POS swaps stay within the tag: every changed, unmasked word of a same-length sentence has its tag
    for e in first:
        source = examples[int(e.where.split()[0][1:])].text.split()
        words = e.text.split()
        if len(words) == len(source):
            for a, b in zip(source, words, strict=True):
                if a != b and b != "[MASK]":
                    assert lexicon[a.lower()] == lexicon[b.lower()]
    # the labels do not steer the augmentation: flipped labels give the same sentences
    flipped = [Example(e.text, "0" if e.label == "1" else "1", None, e.where) for e in examples]
    assert [e.text for e in make(0).augment(flipped)] == [e.text for e in first]
    # in the transfer set, only the labeled examples have a hard label; the others' loss is the teacher's
    transfer, gold = transfer_set(examples, [], first, TeacherLabels(["0", "1"]))
    assert gold[: len(examples)] == [int(e.label) for e in examples]
    assert set(gold[len(examples):]) == {-100}
    logits = torch.randn(len(first), 2, requires_grad=True)
    hard = hard_label_loss(logits, torch.tensor(gold[len(examples):]))
    hard.backward()
    assert hard.item() == 0 and torch.count_nonzero(logits.grad) == 0


def test_a_distilled_student_is_a_finetuned_directory(teacher, data, tmp_path):
    out = tmp_path / "student"
    summary = distill(teacher, [str(data / "train.tsv")], out, DistillSpec(student="bert:layers=1", hidden_weight=0.1,
                      unlabeled=[str(data / "unlabeled.txt")], augment=["mask", "ngram"], augment_factor=3,
                      cache_dir=str(tmp_path / "cache")), config(), val=data / "dev.tsv")
    assert summary["transfer"]["unlabeled"] == 12 and summary["transfer"]["augmented"] > 0
    assert summary["parameters"] < summary["teacher_parameters"]
    assert not summary["teacher_cache"]["reused"]
    model, saved = load_finetuned(out)
    assert saved["distill"]["student"] == "bert:layers=1" and model.backbone.num_hidden == 2
    result = run_main("evaluate", out, data / "dev.tsv", "--json", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["examples"] == 10
    (tmp_path / "in.txt").write_text("a good film .\nit was boring .\n")
    result = run_main("predict", out, tmp_path / "in.txt", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    # a second student over the same transfer set reads the teacher's outputs from the cache
    again = distill(teacher, [str(data / "train.tsv")], tmp_path / "s2", DistillSpec(
        student="bert:layers=1,dim=16,heads=2", unlabeled=[str(data / "unlabeled.txt")], augment=["mask", "ngram"],
        augment_factor=3, cache_dir=str(tmp_path / "cache")), config(), val=data / "dev.tsv")
    assert again["teacher_cache"]["reused"] and again["teacher_cache"]["path"] == summary["teacher_cache"]["path"]


def test_bilstm_student_with_pos_augmentation_through_the_cli(teacher, data, tmp_path):
    vectors = tmp_path / "vec.txt"
    vectors.write_text("3 4\ngood 1 0 0 0\nbad 0 1 0 0\nfilm 0 0 1 0\n")
    out = tmp_path / "bilstm"
    result = run_main("distill", teacher, data / "train.tsv", "--val", data / "dev.tsv", "--student",
                      f"bilstm:hidden=8,vectors={vectors}", "--augment", "mask,pos,ngram", "--augment-factor", "2",
                      "--pos-lexicon", data / "pos.txt", "--cache-dir", tmp_path / "cache", "--out", out,
                      "--epochs", "1", "--device", "cpu", "--quiet", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["parameters"] < 5000
    model, _ = load_finetuned(out)
    assert model.config.pool == "max" and model.backbone.config["kind"] == "bilstm"
    assert model.backbone.source["vectors_found"] == 3  # good, bad, film started from the vectors file
    assert model.backbone.tokenizer.token_to_id("[MASK]") is not None  # masked words are one token
    result = run_main("evaluate", out, data / "dev.tsv", "--json", "--device", "cpu")
    assert result.returncode == 0, result.stderr


def test_born_again_generations(teacher, data, tmp_path):
    out = tmp_path / "ban"
    summary = distill(teacher, [str(data / "train.tsv")], out, DistillSpec(generations=2,
                      cache_dir=str(tmp_path / "cache")), config(), val=data / "dev.tsv")
    assert [g["generation"] for g in summary["generations"]] == [1, 2]
    assert summary["generations"][1]["teacher"] == str((out / "gen1").resolve())
    assert json.loads((out / "generations.json").read_text())["generations"][0]["best"]
    model, _ = load_finetuned(out / "gen2")
    assert model.backbone.num_hidden == 4  # the teacher's architecture


@pytest.mark.parametrize(("args", "message"), [
    (["--student", "lstm"], "--student must start with"),
    (["--student", "bert:layers=9"], "1..3 layers"),
    (["--student", "bert:depth=2"], "unknown setting 'depth'"),
    (["--student", "bert:layers=1", "--alpha", "2"], "--alpha must be in [0, 1]"),
    (["--student", "bert:layers=1", "--augment", "swap"], "--augment takes"),
    (["--student", "bert:layers=1", "--augment", "pos"], "--pos-lexicon"),
    (["--student", "bilstm", "--hidden-weight", "1"], "--hidden-weight compares"),
    (["--student", "bert:layers=1", "--no-teacher-cache"], "--no-teacher-cache applies to --task lm"),
])
def test_bad_options_are_one_line(teacher, data, tmp_path, args, message):
    result = run_main("distill", teacher, data / "train.tsv", "--out", tmp_path / "x", "--device", "cpu", "--quiet",
                      "--cache-dir", tmp_path / "cache", *args)
    assert result.returncode in (1, 2), result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_lm_distillation_trains_a_gpt_student(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat. the dog sat on the log.\n" * 40)
    result = run_main("gpt", "train", corpus, "--out", tmp_path / "teacher", "--layers", "2", "--dim", "16",
                      "--heads", "2", "--block-size", "16", "--max-steps", "30", "--device", "cpu", "--quiet",
                      "--batch-size", "8")
    assert result.returncode == 0, result.stderr
    result = run_main("distill", tmp_path / "teacher", corpus, "--task", "lm", "--student", "gpt:layers=1",
                      "--top-k", "4", "--out", tmp_path / "student", "--max-steps", "10", "--batch-size", "8",
                      "--cache-dir", tmp_path / "cache",
                      "--device", "cpu", "--quiet", "--json", "--lr", "3e-3")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["parameters"] < summary["teacher_parameters"] and summary["val_loss"] is not None
    assert summary["teacher_cache"]["full"] and not summary["teacher_cache"]["reused"]  # a character model: all of it
    result = run_main("generate", tmp_path / "student", "--prompt", "the ", "--max-new-tokens", "5", "--seed", "0")
    assert result.returncode == 0, result.stderr


def test_an_hf_sequence_classification_checkpoint_is_a_teacher(tmp_path):
    from safetensors.torch import load_file, save_file

    from dlnlp.models.bert_hf import export_hf_bert

    hf = tmp_path / "hf"
    export_hf_bert(make_tiny_bert_dir(tmp_path / "bert", max_len=32), hf)
    state = load_file(str(hf / "model.safetensors"))
    state = {(k if k.startswith("bert.") else "bert." + k): v for k, v in state.items() if not k.startswith("cls.")}
    torch.manual_seed(0)
    state["classifier.weight"], state["classifier.bias"] = torch.randn(2, 32), torch.randn(2)
    save_file(state, str(hf / "model.safetensors"))
    config = json.loads((hf / "config.json").read_text())
    config.update(architectures=["BertForSequenceClassification"], id2label={"0": "neg", "1": "pos"})
    (hf / "config.json").write_text(json.dumps(config))
    model, info = load_teacher(hf)
    assert model.labels == ["neg", "pos"] and model.config.pool == "pooler"
    batch = collate(encode_examples(model.backbone, [Example("a good film", None)], "classify", None, 32).rows,
                    None, model.backbone.pad_id, True)
    with torch.no_grad():
        hidden = model.backbone(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        pooled = model.backbone.pooler(hidden.last_hidden_state)
        torch.testing.assert_close(model.eval()(**batch), pooled @ state["classifier.weight"].T + state["classifier.bias"])


# --- language models: the teacher's distribution cached over the token stream -------------------

def _tiny_gpt(vocab=11, block=16, seed=0):
    from dlnlp.models.gpt import GPT, GPTConfig

    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, n_layer=2, n_head=2, n_embd=16, block_size=block, dropout=0.0)).eval()


@pytest.mark.parametrize(("n", "block"), [(200, 16), (33, 16), (16, 16), (7, 16), (101, 15), (50, 1), (64, 2)])
def test_stream_windows_keep_every_position_once_with_half_a_block_before_it(n, block):
    windows = stream_windows(n, block)
    kept = [p for _, keep_from, keep_to in windows for p in range(keep_from, keep_to)]
    assert kept == list(range(n))
    for start, keep_from, keep_to in windows:
        assert keep_to - start == min(block, n) and 0 <= start <= keep_from < keep_to <= n
        assert start == 0 or keep_from - start >= block // 2


def test_cached_gpt_teacher_equals_a_fresh_forward_on_its_window(tmp_path):
    teacher = _tiny_gpt()
    ids = np.random.default_rng(0).integers(0, 11, 300)
    windows = stream_windows(len(ids), 16)
    rng = np.random.default_rng(1)
    for k in (11, 4):  # the whole distribution; the top 4 with their ids
        out = lm_teacher_outputs(teacher, ids, tmp_path, f"gpt{k}", k=k, batch_size=3)
        assert not out.cached and isinstance(out.logp, np.memmap) and out.logp.dtype == np.float16
        assert (out.index is None) == (k == 11)
        positions = rng.integers(0, len(ids), 40)
        logp, index = out.gather(positions)
        for row, p in enumerate(positions):
            start = next(s for s, a, b in windows if a <= p < b)
            with torch.no_grad():
                fresh = torch.log_softmax(teacher(torch.from_numpy(ids[start:start + 16])[None])[0][0, p - start], -1)
            if k == 11:
                torch.testing.assert_close(logp[row], fresh, atol=2e-3, rtol=2e-3)
            else:
                values, top = fresh.topk(4)
                torch.testing.assert_close(logp[row], values, atol=2e-3, rtol=2e-3)
                assert torch.equal(index[row], top)


@pytest.mark.parametrize("segments", [1, 3])
def test_cached_recurrent_teacher_runs_statefully_over_the_stream(tmp_path, segments):
    from dlnlp.models.rnn_lm import RNNLM, RNNLMConfig

    torch.manual_seed(0)
    teacher = RNNLM(RNNLMConfig(vocab_size=9, embed=8, hidden=12, layers=2)).eval()
    ids = np.random.default_rng(0).integers(0, 9, 120)
    out = lm_teacher_outputs(teacher, ids, tmp_path, "rnn", k=9, segments=segments, burn_in=7, chunk=16)
    assert out.context == f"stateful:segments={segments},burn_in=7"
    for start, keep_from, keep_to in stream_segments(len(ids), segments, 7):
        assert keep_from - start == min(7, keep_from)
        with torch.no_grad():  # one pass from the segment's start: its state carries over every position
            fresh = torch.log_softmax(teacher(torch.from_numpy(ids[start:keep_to])[None])[0][0], -1)
        torch.testing.assert_close(out.gather(np.arange(keep_from, keep_to))[0], fresh[keep_from - start:],
                                   atol=2e-3, rtol=2e-3)


def test_the_loss_on_a_cached_top_k_is_lm_distill_loss():
    torch.manual_seed(0)
    student, teacher, targets = torch.randn(3, 5, 20), 3 * torch.randn(3, 5, 20), torch.randint(0, 20, (3, 5))
    logp = torch.log_softmax(teacher, -1)
    values, index = logp.topk(8, dim=-1)
    for temperature, alpha in ((1.0, 0.5), (2.0, 0.8)):
        settings = dict(temperature=temperature, alpha=alpha)
        reference = lm_distill_loss(student, teacher, targets, top_k=8, **settings)
        torch.testing.assert_close(lm_distill_loss(student, values, targets, teacher_index=index, **settings),
                                   reference)
        # shuffled columns, and a --top-k below the cached k: the same truncation of the same teacher
        order = torch.randperm(8)
        torch.testing.assert_close(lm_distill_loss(student, values[..., order], targets, top_k=3,
                                                   teacher_index=index[..., order], **settings),
                                   lm_distill_loss(student, teacher, targets, top_k=3, **settings))
        # the whole distribution as log-probabilities: the logits' loss, with and without a top-k
        torch.testing.assert_close(lm_distill_loss(student, logp, targets, **settings),
                                   lm_distill_loss(student, teacher, targets, **settings))
        torch.testing.assert_close(lm_distill_loss(student, logp, targets, top_k=5, **settings),
                                   lm_distill_loss(student, teacher, targets, top_k=5, **settings))


def test_cached_batches_are_the_data_batches_with_the_teachers_rows(tmp_path):
    from dlnlp.recipes.distill import CachedTeacherWindows
    from dlnlp.training.data import RandomWindows

    teacher = _tiny_gpt()
    ids = np.random.default_rng(0).integers(0, 11, 300)
    out = lm_teacher_outputs(teacher, ids, tmp_path, "k4", k=4)
    cached, plain = CachedTeacherWindows(ids, 6, 10, out, seed=3), RandomWindows(ids, 6, 10, seed=3)
    windows = stream_windows(len(ids), 16)
    for _ in range(3):
        (x, logp, index, y), _ = cached.next_batch()
        (x0, y0), _ = plain.next_batch()
        assert torch.equal(x, x0) and torch.equal(y, y0) and logp.shape == index.shape == (6, 10, 4)
        # row (b, t) is the teacher's distribution of y[b, t]: x[b, t] read at its stream position
        b, t = 2, 7
        p = next(p for p in range(len(ids) - 10) if np.array_equal(ids[p:p + 11], torch.cat([x[b], y[b, -1:]])))
        start = next(s for s, a, e in windows if a <= p + t < e)
        with torch.no_grad():
            fresh = torch.log_softmax(teacher(torch.from_numpy(ids[start:start + 16])[None])[0][0, p + t - start], -1)
        torch.testing.assert_close(logp[b, t], fresh.topk(4).values, atol=2e-3, rtol=2e-3)


@pytest.fixture(scope="module")
def lm_teacher(tmp_path_factory):
    from dlnlp.recipes.gpt import start_gpt_training

    root = tmp_path_factory.mktemp("lm")
    corpus = root / "corpus.txt"
    corpus.write_text("the cat sat on the mat. the dog sat on the log.\n" * 40)
    start_gpt_training([str(corpus)], root / "teacher", {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16,
                                                         "dropout": 0.0},
                       config(max_steps=5, epochs=None), batch_size=8, char=True)
    return root / "teacher", corpus


def test_the_lm_teacher_cache_is_reused_and_invalidated(lm_teacher, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from dlnlp.recipes.distill import distill_lm

    teacher, corpus = lm_teacher
    spec = DistillSpec(student="gpt:layers=1", task="lm", top_k=3, cache_dir=str(tmp_path / "cache"))

    def run(name, teacher=teacher, corpus=corpus, spec=spec):
        return distill_lm(teacher, [str(corpus)], tmp_path / name, spec, config(max_steps=3, epochs=None))

    first = run("a")
    cache = first["teacher_cache"]
    assert not cache["reused"] and cache["full"] and first["teacher_seconds"] is not None
    assert cache["context"] == "windows:block=16,stride=8"
    stamp = Path(cache["path"]).stat().st_mtime_ns
    second = run("b")
    assert second["teacher_cache"]["reused"] and second["teacher_cache"]["path"] == cache["path"]
    assert Path(cache["path"]).stat().st_mtime_ns == stamp  # read, not written again
    # same steps, same seed: the student trained on the read cache is the one trained on the fresh cache
    assert second["val_loss"] == pytest.approx(first["val_loss"], abs=1e-6)
    # another corpus, another teacher: another cache
    other = tmp_path / "other.txt"
    other.write_text(corpus.read_text() + "a bird sat on the cat.\n")
    assert not run("c", corpus=other)["teacher_cache"]["reused"]
    changed = tmp_path / "teacher2"
    shutil.copytree(teacher, changed)
    weights = load_file(str(changed / "model.safetensors"))
    name = next(iter(weights))
    weights[name] = weights[name] + 0.01
    save_file(weights, str(changed / "model.safetensors"))
    moved = run("d", teacher=changed)["teacher_cache"]
    assert not moved["reused"] and moved["path"] != cache["path"]
    # the online teacher, on request
    online = run("e", spec=DistillSpec(student="gpt:layers=1", task="lm", teacher_cache=False))
    assert online["teacher_cache"] is None and online["teacher_seconds"] is None

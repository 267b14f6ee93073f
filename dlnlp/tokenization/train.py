"""Training tokenizers with HF ``tokenizers`` or ``sentencepiece``, streaming the corpus.

Models (``TrainSpec.model``):

- ``bpe`` (alias ``bytelevel-bpe``): GPT-2 style byte-level BPE. The ByteLevel pre-tokenizer maps
  every byte to a printable character (so there is no unknown token and any byte string round trips
  exactly), splits with the GPT-2 regex, and adds no prefix space; the initial alphabet is all 256
  bytes. With ``engine="sentencepiece"``, ``bpe`` is sentencepiece's BPE.
- ``char-bpe``: BPE over the characters seen in the corpus, unseen characters become ``<unk>``;
  words are split on whitespace with the Metaspace convention (a word-initial ``▁``) as in
  sentencepiece, so decoding restores the spaces.
- ``wordpiece``: BERT's WordPiece (``##`` continuation prefix, BERT pre-tokenizer, ``[UNK]``).
- ``unigram``: the Unigram LM tokenizer (Kudo 2018), with either engine.

The corpus is streamed in chunks of lines (``train_from_iterator`` for HF; ``sentence_iterator`` for
sentencepiece), so stdin, compressed files and jsonl/csv fields work the same as files; sentencepiece
reads plain UTF-8 files itself once they are validated (:func:`train_tokenizer_on_inputs`), with the
same result. The output is the engine's own file format, loadable by the engine unchanged.

Over-long lines: a line longer than ``io.corpus.max_line_chars()`` characters (1,048,576 unless
``DLNLP_MAX_LINE_CHARS`` says otherwise) is cut into pieces of that length, each trained on as a line
of its own: the engines hold a line whole, at about 150 bytes per character, and learning from pieces
of a giant line loses next to nothing. (``tokenize encode`` refuses such a line instead, since its
output must round-trip.) The file reader of sentencepiece is used only when no line is that long.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dlnlp.errors import DlnlpError, UsageError
from dlnlp.tokenization.ids import MAX_VOCAB_SIZE

if TYPE_CHECKING:
    from dlnlp.io.corpus import CorpusOptions

WORDPIECE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # BERT's, in its vocabulary's order
MODELS = ("bpe", "bytelevel-bpe", "char-bpe", "wordpiece", "unigram")
ENGINES = ("hf", "sentencepiece")
NORMALIZATIONS = ("none", "nfc", "nfd", "nfkc", "nfkd")

DEFAULT_SPECIAL_TOKENS = {
    "bpe": ["<|endoftext|>"],
    "char-bpe": ["<unk>", "<pad>", "<s>", "</s>"],
    "wordpiece": list(WORDPIECE_SPECIALS),
    "unigram": ["<unk>", "<pad>", "<s>", "</s>"],
}
UNK_TOKEN = {"char-bpe": "<unk>", "wordpiece": "[UNK]", "unigram": "<unk>"}
SP_META_PIECES = ("<unk>", "<s>", "</s>")  # sentencepiece's own pieces, ids 0-2
SP_MIN_COVERAGE = 0.98  # sentencepiece refuses a lower --character-coverage
SP_MAX_THREADS = 1024  # and more threads than this
CHUNK_LINES = 4096


@dataclass
class TrainSpec:
    """What to train; the CLI options of ``dlnlp tokenize train`` map one to one onto these fields."""

    model: str = "bpe"
    engine: str = "hf"
    vocab_size: int = 8000
    min_frequency: int = 2
    special_tokens: list[str] | None = None  # None: the model's defaults (DEFAULT_SPECIAL_TOKENS)
    normalize: str = "none"
    lowercase: bool = False
    # sentencepiece only
    character_coverage: float = 1.0
    byte_fallback: bool = False
    threads: int = 0  # 0: all cores
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model == "bytelevel-bpe":
            self.model = "bpe"
        if self.model not in MODELS:
            raise UsageError(f"--model must be one of {', '.join(MODELS)}, not {self.model!r}")
        if self.engine not in ENGINES:
            raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        if self.engine == "sentencepiece" and self.model not in ("bpe", "unigram"):
            raise DlnlpError(f"--engine sentencepiece trains bpe or unigram, not {self.model}")
        if self.normalize not in NORMALIZATIONS:
            raise UsageError(f"--normalize must be one of {', '.join(NORMALIZATIONS)}, not {self.normalize!r}")
        if not 1 <= self.vocab_size <= MAX_VOCAB_SIZE:
            raise DlnlpError(f"--vocab-size must be between 1 and {MAX_VOCAB_SIZE:,}, got {self.vocab_size}")
        if self.min_frequency < 0:
            raise DlnlpError("--min-frequency must be >= 0")
        if self.special_tokens is not None and any(not token for token in self.special_tokens):
            raise DlnlpError("--special must not be empty")
        if self.engine == "sentencepiece":
            # sentencepiece's own checks fail with an empty message; say what to change instead.
            if not SP_MIN_COVERAGE <= self.character_coverage <= 1:
                raise DlnlpError(f"--character-coverage must be between {SP_MIN_COVERAGE} and 1 for sentencepiece, "
                                 f"got {self.character_coverage:g}")
            reserved = len(SP_META_PIECES) + len(self.specials)
            if self.vocab_size <= reserved:
                raise DlnlpError(f"--vocab-size must be more than {reserved} for sentencepiece "
                                 f"({', '.join(SP_META_PIECES + tuple(self.specials))} take {reserved} ids), "
                                 f"got {self.vocab_size}")

    @property
    def specials(self) -> list[str]:
        if self.special_tokens is not None:
            return list(self.special_tokens)
        if self.engine == "sentencepiece":
            return []  # sentencepiece has its own <unk>, <s>, </s> (ids 0, 1, 2)
        return list(DEFAULT_SPECIAL_TOKENS[self.model])

    def num_threads(self) -> int:
        return self.threads if self.threads > 0 else (os.cpu_count() or 1)


# --- HF tokenizers ------------------------------------------------------------------------------
def build_hf_tokenizer(spec: TrainSpec):
    """The untrained ``tokenizers.Tokenizer`` and its trainer for ``spec`` (engine hf)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    specials = spec.specials
    unk = UNK_TOKEN.get(spec.model)
    if unk and unk not in specials:
        specials = [unk, *specials]
    if spec.model == "bpe":
        tokenizer = Tokenizer(models.BPE())
        # add_prefix_space=False: a line is encoded as it is, so decode(encode(x)) == x byte for byte.
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=spec.vocab_size, min_frequency=spec.min_frequency, special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
        )
    elif spec.model == "char-bpe":
        tokenizer = Tokenizer(models.BPE(unk_token=unk))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always")
        tokenizer.decoder = decoders.Metaspace(prepend_scheme="always")
        trainer = trainers.BpeTrainer(
            vocab_size=spec.vocab_size, min_frequency=spec.min_frequency, special_tokens=specials,
            show_progress=False,
        )
    elif spec.model == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token=unk, continuing_subword_prefix="##"))
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(
            vocab_size=spec.vocab_size, min_frequency=spec.min_frequency, special_tokens=specials,
            continuing_subword_prefix="##", show_progress=False,
        )
    else:  # unigram
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always")
        tokenizer.decoder = decoders.Metaspace(prepend_scheme="always")
        trainer = trainers.UnigramTrainer(
            vocab_size=spec.vocab_size, special_tokens=specials, unk_token=unk, show_progress=False,
        )
    steps = []
    if spec.normalize != "none":
        steps.append(getattr(normalizers, spec.normalize.upper())())
    if spec.lowercase:
        steps.append(normalizers.Lowercase())
    if steps:
        tokenizer.normalizer = steps[0] if len(steps) == 1 else normalizers.Sequence(steps)
    return tokenizer, trainer


def train_hf(blocks: Iterable[list[str]], spec: TrainSpec):
    """Train a ``tokenizers.Tokenizer`` on streamed lists of lines; returns it (``to_str()`` is
    tokenizer.json)."""
    tokenizer, trainer = build_hf_tokenizer(spec)
    # Lists of lines, not single lines: each item crosses the Python/Rust boundary once.
    tokenizer.train_from_iterator(blocks, trainer=trainer)
    return tokenizer


# --- sentencepiece ------------------------------------------------------------------------------
def sentencepiece_options(spec: TrainSpec) -> dict:
    """The ``SentencePieceTrainer.train`` keyword arguments for ``spec``."""
    from dlnlp.io.corpus import max_line_chars

    if spec.lowercase and spec.normalize not in ("nfkc", "none"):
        raise DlnlpError("--engine sentencepiece: --lowercase works with --normalize nfkc or none only")
    if spec.normalize in ("nfc", "nfd", "nfkd"):
        raise DlnlpError("--engine sentencepiece normalizes with nfkc or none only")
    # sentencepiece rule names: identity (none), nfkc, nfkc_cf (nfkc + case folding).
    rule = "nfkc_cf" if spec.lowercase else ("nfkc" if spec.normalize == "nfkc" else "identity")
    options = dict(
        model_type=spec.model,
        vocab_size=spec.vocab_size,
        normalization_rule_name=rule,
        # Keep whitespace as it is when not normalizing, so decode(encode(x)) reproduces x.
        remove_extra_whitespaces=spec.normalize != "none",
        character_coverage=spec.character_coverage,
        byte_fallback=spec.byte_fallback,
        num_threads=min(spec.num_threads(), SP_MAX_THREADS),
        minloglevel=2,
        # One "sentence" is one line, and lines are cut at io.corpus.max_line_chars() characters (at most 4
        # bytes each), which sentencepiece must all keep: its default of 4192 bytes drops longer ones silently.
        max_sentence_length=min(4 * max_line_chars(), (1 << 31) - 1),
    )
    if spec.specials:
        options["user_defined_symbols"] = spec.specials
    options.update(spec.extra)
    return options


def train_sentencepiece(blocks: Iterable[list[str]], spec: TrainSpec) -> bytes:
    """Train a sentencepiece model on streamed lists of lines; returns the serialized ``.model`` bytes."""
    return _run_sentencepiece(spec, sentence_iterator=_non_blank(blocks))


def train_sentencepiece_files(paths: Sequence[str], spec: TrainSpec) -> bytes:
    """:func:`train_sentencepiece` on plain text files that sentencepiece reads itself, with no call into
    Python per line. Check the files first with ``io.corpus.scan_text_files``: valid UTF-8 and no "\\r",
    where the two readers differ (the file reader keeps a line's trailing "\\r", the iterator drops it)."""
    if any("," in path for path in paths):
        raise DlnlpError("sentencepiece splits its file list on commas: stream a path with a comma instead")
    return _run_sentencepiece(spec, input=",".join(paths))


def _run_sentencepiece(spec: TrainSpec, **source: Any) -> bytes:
    import sentencepiece as spm

    buffer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(model_writer=buffer, **source, **sentencepiece_options(spec))
    except (RuntimeError, ValueError, OSError) as exc:
        raise DlnlpError(f"sentencepiece: {sentencepiece_message(exc)}") from exc
    return buffer.getvalue()


# "INTERNAL: src/trainer_interface.cc(94) [check] message": the check, and a message that may be empty.
_SP_ERROR = re.compile(r"^(?:[A-Z_]+: )?(?:\S+\(\d+\) \[(?P<check>.*)\] ?)?(?P<message>.*)$")
# sentencepiece's flag names in its messages, as the dlnlp options are spelled.
_SP_FLAGS = (("character_coverage with --character_coverage option", "--character-coverage"),
             ("vocab_size", "--vocab-size"), ("--character_coverage", "--character-coverage"))


def sentencepiece_message(exc: BaseException) -> str:
    """One line from a sentencepiece error: its message without the source location, or, where it has
    none (a failed internal check), the check with the options that usually cause it."""
    lines = str(exc).strip().splitlines()
    match = _SP_ERROR.match(lines[-1].strip() if lines else "")
    message = match["message"].strip() if match else ""
    if message:
        for theirs, ours in _SP_FLAGS:
            message = message.replace(theirs, ours)
        return message
    if match and match["check"]:
        return (f"training failed on an internal check ({match['check']}); check --vocab-size, --special, "
                "--character-coverage and --workers")
    return f"training failed ({type(exc).__name__}, no message); check the options and the corpus"


def _non_blank(blocks: Iterable[list[str]]) -> Iterator[str]:
    # sentencepiece counts blank lines as sentences; they carry nothing to learn.
    return (line for block in blocks for line in block if line)


# --- both ---------------------------------------------------------------------------------------
def train_tokenizer(lines: Iterable[str], spec: TrainSpec) -> bytes:
    """Train and return the file contents: tokenizer.json (hf) or a .model (sentencepiece)."""
    from dlnlp.io.corpus import iter_chunks

    return train_tokenizer_from_blocks(iter_chunks(lines, CHUNK_LINES), spec)


def train_tokenizer_from_blocks(blocks: Iterable[list[str]], spec: TrainSpec) -> bytes:
    """:func:`train_tokenizer` on lists of lines (``iter_line_blocks``: no per-line Python overhead)."""
    if spec.engine == "sentencepiece":
        return train_sentencepiece(blocks, spec)
    try:
        tokenizer = train_hf(blocks, spec)
    except Exception as exc:
        if isinstance(exc, DlnlpError):
            raise
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DlnlpError(f"tokenizers: training failed: {detail}") from exc
    return tokenizer.to_str().encode("utf-8")


@dataclass(frozen=True)
class TrainedTokenizer:
    """A trained tokenizer file's contents and what it was trained on."""

    data: bytes  # tokenizer.json (hf) or a .model (sentencepiece)
    lines: int
    chars: int


@contextmanager
def _ticking(description: str, quiet: bool, fields: Callable[[], dict] | None = None) -> Iterator[None]:
    """A progress line for a call that reports nothing while it runs (the trainers of both engines, with
    their own logs off): elapsed seconds, and ``fields()`` (lines read so far), once a second."""
    from dlnlp.progress import Progress

    done = threading.Event()
    with Progress(description, unit="s", quiet=quiet) as progress:

        def tick() -> None:
            while not done.wait(1.0):
                progress.update(1, rate=0, **(fields() if fields else {}))

        ticker = threading.Thread(target=tick, name="dlnlp-ticker", daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()


def train_tokenizer_on_inputs(inputs: Sequence[str] | None, spec: TrainSpec, options: CorpusOptions | None = None,
                              *, on_start: Callable[[], None] | None = None, quiet: bool = True
                              ) -> TrainedTokenizer:
    """Train on corpus inputs as ``io.corpus`` reads them (files, globs, ``-``, compressed, jsonl/csv).

    The input is checked before training starts and ``on_start`` is called then (to log, say), so a bad
    input fails with its own message only. sentencepiece reads plain UTF-8 files with no "\\r" and no
    over-long line itself (:func:`train_sentencepiece_files`, after one validating pass); everything else
    is streamed in blocks of lines, over-long lines cut into pieces. Unless ``quiet``, a progress line
    shows the time spent (and the lines read) while the engine trains.
    """
    from dlnlp.io.corpus import iter_line_blocks, plain_text_files, scan_text_files

    if spec.engine == "sentencepiece" and (files := plain_text_files(inputs, options)) is not None:
        scan = scan_text_files(files)
        if not scan.has_carriage_return and not scan.has_long_line:
            if on_start:
                on_start()
            with _ticking(f"training {spec.engine} {spec.model}", quiet):
                data = train_sentencepiece_files(files, spec)
            return TrainedTokenizer(data, scan.lines, scan.chars)
    lines = chars = 0

    def counting(blocks: Iterator[list[str]]) -> Iterator[list[str]]:
        nonlocal lines, chars
        for block in blocks:
            lines += len(block)
            chars += sum(map(len, block))
            yield block

    blocks = iter_line_blocks(inputs, options)
    head = []
    for block in blocks:  # up to the first text: a missing, undecodable or blank input fails here
        head.append(block)
        if any(line.strip() for line in block):
            break
    if on_start:
        on_start()
    with _ticking(f"training {spec.engine} {spec.model}", quiet, lambda: {"lines": lines}):
        data = train_tokenizer_from_blocks(counting(itertools.chain(head, blocks)), spec)
    return TrainedTokenizer(data, lines, chars)


def trained_vocab_size(data: bytes, engine: str) -> int:
    """The vocabulary size of a trained file's contents (special tokens included)."""
    if engine == "sentencepiece":
        import sentencepiece as spm

        return spm.SentencePieceProcessor(model_proto=data).get_piece_size()
    from tokenizers import Tokenizer

    return Tokenizer.from_str(data.decode("utf-8")).get_vocab_size(with_added_tokens=True)

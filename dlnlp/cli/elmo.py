"""``dlnlp elmo``: a character-aware bidirectional LSTM LM (Peters et al. 2018) and its contextual vectors."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from dlnlp.cli.options import (
    COMMON,
    EMBED,
    TRAINING,
    Device,
    EncodingErrors,
    Force,
    Inputs,
    Json,
    MaxVocab,
    OutDir,
    Precision,
    Quiet,
    Seed,
    TextField,
    TrainingOptions,
    corpus_options,
    print_json,
    training_options,
)

app = typer.Typer(
    help="ELMo: a character-aware bidirectional LSTM language model and its contextual vectors.",
    no_args_is_help=True,
)

MODEL = "Model options"
ModelDir = Annotated[
    Path, typer.Argument(help="A model directory from `dlnlp elmo train`.", show_default=False)
]
BatchLines = Annotated[
    int, typer.Option("--batch-size", help="Lines per forward pass.", rich_help_panel=COMMON)
]


def _filters(text: str) -> list[list[int]]:
    from dlnlp.errors import OptionError

    try:
        pairs = [[int(part) for part in item.split(":")] for item in text.split(",")]
    except ValueError:
        pairs = []
    if not pairs or any(len(p) != 2 or p[0] < 1 or p[1] < 1 for p in pairs):
        raise OptionError(
            f"--filters must be WIDTH:COUNT pairs separated by commas (e.g. 1:32,2:32,3:64), got {text!r}"
        )
    return pairs


def _ints(text: Optional[str], option: str) -> Optional[list[int]]:
    from dlnlp.errors import OptionError

    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise OptionError(f"{option} must be integers separated by commas, got {text!r}") from None


@app.command()
@training_options(lr=2e-3, clip=1.0, batch_size=64, eval_interval=500)
def train(
    inputs: Inputs = None,
    out: OutDir = ...,
    dim: Annotated[
        int,
        typer.Option(
            "--dim",
            help="Token vector and LSTM output width (ELMo: 512); 2x that per contextual vector.",
            rich_help_panel=MODEL,
        ),
    ] = 128,
    hidden: Annotated[
        int,
        typer.Option(
            "--hidden",
            help="LSTM cells per layer, projected to --dim (ELMo: 4096); "
            "equal to --dim: no projection (PyTorch's fused kernel, faster on CPU).",
            rich_help_panel=MODEL,
        ),
    ] = 512,
    layers: Annotated[
        int, typer.Option("--layers", help="LSTM layers per direction.", rich_help_panel=MODEL)
    ] = 2,
    residual: Annotated[
        bool,
        typer.Option(
            "--residual/--no-residual",
            help="Residual connections between LSTM layers.",
            rich_help_panel=MODEL,
        ),
    ] = True,
    filters: Annotated[
        str,
        typer.Option(
            "--filters",
            help="Character convolutions, WIDTH:COUNT,... (ELMo: 1:32,2:32,3:64,4:128,5:256,6:512,7:1024).",
            rich_help_panel=MODEL,
        ),
    ] = "1:32,2:32,3:64,4:128,5:256",
    char_dim: Annotated[
        int, typer.Option("--char-dim", help="Byte embedding size.", rich_help_panel=MODEL)
    ] = 16,
    highway: Annotated[
        int, typer.Option("--highway", help="Highway layers after the convolutions.", rich_help_panel=MODEL)
    ] = 2,
    max_chars: Annotated[
        int,
        typer.Option(
            "--max-chars",
            help="UTF-8 bytes per word with its two markers; longer words are cut.",
            rich_help_panel=MODEL,
        ),
    ] = 50,
    dropout: Annotated[
        float,
        typer.Option(
            "--dropout",
            help="Dropout on the token vectors, between layers and before the softmax.",
            rich_help_panel=MODEL,
        ),
    ] = 0.1,
    softmax: Annotated[
        str,
        typer.Option(
            "--softmax",
            help="full, adaptive (Grave et al. 2017) or sampled (Jean et al. 2015; full at evaluation).",
            rich_help_panel=MODEL,
        ),
    ] = "adaptive",
    cutoffs: Annotated[
        Optional[str],
        typer.Option(
            "--cutoffs",
            help="Adaptive softmax cluster boundaries, e.g. "
            "2000,10000 (default: 2000, 10000, 50000 below the vocabulary).",
            rich_help_panel=MODEL,
        ),
    ] = None,
    samples: Annotated[
        int,
        typer.Option("--samples", help="Sampled softmax: negative words per batch.", rich_help_panel=MODEL),
    ] = 1024,
    min_count: Annotated[
        int,
        typer.Option(
            "--min-count",
            help="Words seen fewer times in the training text are "
            "<unk> in the output vocabulary (as `dlnlp ngram train`).",
            rich_help_panel=MODEL,
        ),
    ] = 3,
    max_vocab: MaxVocab = None,
    seq_len: Annotated[
        int,
        typer.Option("--seq-len", help="BPTT window (words per stream per step).", rich_help_panel=TRAINING),
    ] = 20,
    training: TrainingOptions = None,
    device: Device = "auto",
    precision: Precision = "auto",
    seed: Seed = 0,
    force: Force = False,
    quiet: Quiet = False,
    json: Json = False,
    text_field: TextField = None,
    encoding_errors: EncodingErrors = "strict",
) -> None:
    """Train a biLM on text, one sentence per line, whitespace-tokenized.

    Example: dlnlp elmo train brown/train.txt --val brown/valid.txt --out elmo --dim 128 --hidden 512
    --layers 2 --max-time 1800
    """
    from dlnlp.models.elmo import ElmoConfig
    from dlnlp.recipes.elmo import resume_elmo_training, start_elmo_training

    if training.resume:
        result = resume_elmo_training(
            out, training.stops(), quiet=quiet, device=device, compile=training.compile,
            keep_data=training.keep_data,
        )
    else:
        model_config = ElmoConfig(
            vocab_size=1,
            max_chars=max_chars,
            char_dim=char_dim,
            filters=_filters(filters),
            highway=highway,
            dim=dim,
            hidden=hidden,
            layers=layers,
            residual=residual,
            dropout=dropout,
            softmax=softmax,
            cutoffs=_ints(cutoffs, "--cutoffs"),
            samples=samples,
        )
        config = training.train_config(device=device, precision=precision, seed=seed, quiet=quiet)
        result = start_elmo_training(
            inputs,
            out,
            model_config,
            config,
            seq_len=seq_len,
            batch_size=training.batch_size,
            min_count=min_count,
            max_vocab=max_vocab,
            val=training.val,
            val_fraction=training.val_fraction,
            options=corpus_options(text_field, encoding_errors),
            force=force,
            keep_data=training.keep_data,
        )
    if json:
        print_json(result)


@app.command("eval")
def evaluate(
    model_dir: ModelDir,
    inputs: Inputs = None,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            help="Pieces the text is cut into (at line ends), read in parallel.",
            rich_help_panel=COMMON,
        ),
    ] = 32,
    seq_len: Annotated[int, typer.Option("--seq-len", help="Words per window.", rich_help_panel=COMMON)] = 64,
    device: Device = "auto",
    json: Json = False,
    text_field: TextField = None,
    encoding_errors: EncodingErrors = "strict",
) -> None:
    """Forward, backward and mean perplexity over a whole text, counted as `dlnlp ngram eval` counts (every
    word and </s>, out-of-vocabulary words as <unk>), so that the numbers compare one to one.

    Example: dlnlp elmo eval elmo brown/valid.txt --json
    """
    from dlnlp.recipes.elmo import evaluate_elmo_dir

    result = evaluate_elmo_dir(
        model_dir,
        inputs,
        batch_size=batch_size,
        seq_len=seq_len,
        device=device,
        options=corpus_options(text_field, encoding_errors),
    )
    if json:
        print_json(result)
        return
    typer.echo(f"Forward perplexity:\t{result['forward_perplexity']:.4f}")
    typer.echo(f"Backward perplexity:\t{result['backward_perplexity']:.4f}")
    typer.echo(f"Mean perplexity:\t{result['perplexity']:.4f}")
    typer.echo(f"OOVs:\t{result['oov']}")
    typer.echo(f"Tokens:\t{result['tokens']}")
    typer.echo(f"Sentences:\t{result['sentences']}")


@app.command()
def embed(
    model_dir: ModelDir,
    inputs: Inputs = None,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="The file: .safetensors (vectors and offsets), .npy "
            "(FILE.npy and FILE.offsets.npy) or .jsonl ('-': stdout, jsonl).",
            rich_help_panel=COMMON,
            show_default=False,
        ),
    ] = ...,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="auto (from --output's suffix; else jsonl), safetensors, npy or jsonl.",
            rich_help_panel=COMMON,
        ),
    ] = "auto",
    layers: Annotated[
        str,
        typer.Option(
            "--layers",
            help="all (every hidden state: [tokens, L+1, 2 dim]), top, mean, or mix (--mix-weights).",
            rich_help_panel=EMBED,
        ),
    ] = "all",
    mix_weights: Annotated[
        Optional[str],
        typer.Option(
            "--mix-weights",
            help="--layers mix: one weight per hidden "
            "state (0 = token encoder), normalized to sum to 1 "
            "(default: equal).",
            rich_help_panel=EMBED,
        ),
    ] = None,
    batch_size: BatchLines = 32,
    device: Device = "auto",
    force: Force = False,
    quiet: Quiet = False,
    json: Json = False,
    text_field: TextField = None,
    encoding_errors: EncodingErrors = "strict",
) -> None:
    """Contextual vectors of every word of every input line, streamed in batches: hidden state 0 is the
    token encoder's ([x; x]), 1..L the LSTM layers ([forward; backward]).

    Example: dlnlp elmo embed elmo sentences.txt --layers all --output vectors.safetensors
    """
    import time

    from dlnlp.errors import OptionError
    from dlnlp.io.corpus import iter_lines
    from dlnlp.io.token_vectors import check_outputs, open_token_writer, token_format
    from dlnlp.progress import Progress
    from dlnlp.recipes.elmo import check_layers, embed_lines, embed_shape, load_encoder

    fmt = token_format(output, fmt)
    check_outputs(output, fmt, force, [*(inputs or []), model_dir])
    weights = None
    if mix_weights is not None:
        try:
            weights = [float(w) for w in mix_weights.split(",")]
        except ValueError:
            raise OptionError(
                f"--mix-weights must be numbers separated by commas, got {mix_weights!r}"
            ) from None
    if batch_size < 1:
        raise OptionError(f"--batch-size must be >= 1, got {batch_size}")
    encoder = load_encoder(model_dir, device)
    mix = check_layers(layers, encoder.num_hidden, weights)
    start = time.perf_counter()
    lines = iter_lines(inputs, corpus_options(text_field, encoding_errors), require_text=False)
    shape = embed_shape(layers, encoder.num_hidden, encoder.dim)
    with (
        Progress("embed", unit="line", quiet=quiet) as progress,
        open_token_writer(output, fmt, shape, force=force) as writer,
    ):
        for words, vectors in embed_lines(encoder, lines, layers=layers, mix=mix, batch_size=batch_size):
            for w, v in zip(words, vectors, strict=True):
                writer.write(w, v)
            progress.update(len(words))
    if json:
        print_json(
            {
                "output": str(output),
                "format": fmt,
                "lines": writer.lines,
                "tokens": writer.tokens,
                "shape": list(shape),
                "seconds": round(time.perf_counter() - start, 3),
            }
        )


@app.command()
def neighbors(
    model_dir: ModelDir,
    inputs: Inputs = None,
    sentence: Annotated[
        str, typer.Option("--sentence", "-s", help="A sentence holding --word.", show_default=False)
    ] = ...,
    word: Annotated[
        str,
        typer.Option(
            "--word", "-w", help="The word whose vector in --sentence is compared.", show_default=False
        ),
    ] = ...,
    top: Annotated[
        int, typer.Option("--top", help="Neighbours to print, closest first.", rich_help_panel=COMMON)
    ] = 10,
    layer: Annotated[
        int,
        typer.Option(
            "--layer",
            help="Hidden state compared: 0 = token encoder, 1..L the LSTM layers, negative from the top.",
            rich_help_panel=EMBED,
        ),
    ] = -1,
    same_word: Annotated[
        bool,
        typer.Option(
            "--same-word",
            help="Only occurrences of --word itself: which of its uses in the corpus read like this one.",
            rich_help_panel=EMBED,
        ),
    ] = False,
    batch_size: BatchLines = 32,
    device: Device = "auto",
    json: Json = False,
    text_field: TextField = None,
    encoding_errors: EncodingErrors = "strict",
) -> None:
    """Nearest tokens in context: the corpus words whose contextual vectors are closest (cosine) to --word's
    in --sentence; "bank" in two sentences gets two vectors, and two lists.

    Example: dlnlp elmo neighbors elmo corpus.txt --sentence "he sat on the bank of the river" --word bank
    --same-word
    """
    from dlnlp.cli.options import checked_utf8
    from dlnlp.io.corpus import iter_lines
    from dlnlp.recipes.elmo import load_encoder
    from dlnlp.recipes.elmo import neighbors as find

    checked_utf8(sentence, "--sentence")
    encoder = load_encoder(model_dir, device)
    lines = iter_lines(inputs, corpus_options(text_field, encoding_errors), require_text=False)
    index, found = find(
        encoder, sentence, word, lines, top=top, layer=layer, batch_size=batch_size, same_word=same_word
    )
    if json:
        print_json(
            {
                "word": word,
                "index": index,
                "neighbors": [
                    {
                        "score": n.score,
                        "word": n.word,
                        "line": n.line,
                        "position": n.position,
                        "text": " ".join(n.words),
                    }
                    for n in found
                ],
            }
        )
        return
    for n in found:
        marked = " ".join(f"[{w}]" if i == n.position else w for i, w in enumerate(n.words))
        typer.echo(f"{n.score:.4f}\t{n.word}\t{n.line}\t{marked}")

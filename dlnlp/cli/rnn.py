"""``dlnlp rnn``: character/subword RNN, GRU, LSTM and feed-forward (Bengio) language models."""

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from dlnlp.cli.options import (
    COMMON,
    DECODE,
    INPUT,
    TRAINING,
    Device,
    EncodingErrors,
    Force,
    Ids,
    IdsEos,
    IdsVocabSize,
    InitFrom,
    Inputs,
    Json,
    OutDir,
    Precision,
    Prime,
    Quiet,
    Seed,
    Streaming,
    Temperature,
    TextField,
    Threads,
    TopK,
    TopP,
    TrainingOptions,
    corpus_options,
    given_options,
    print_json,
    training_options,
)

app = typer.Typer(help="Recurrent (RNN/GRU/LSTM) and feed-forward neural language models.",
                  no_args_is_help=True)

MODEL = "Model options"

Cell = Annotated[str, typer.Option("--cell", help="rnn (tanh), gru, lstm, or ffnn (Bengio et al. 2003 n-gram).",
                                   rich_help_panel=MODEL)]
Layers = Annotated[int, typer.Option("--layers", help="Stacked recurrent layers.", rich_help_panel=MODEL)]
Hidden = Annotated[int, typer.Option("--hidden", help="Hidden units per layer.", rich_help_panel=MODEL)]
Embed = Annotated[int, typer.Option("--embed", help="Embedding size.", rich_help_panel=MODEL)]
Dropout = Annotated[float, typer.Option("--dropout", help="Dropout between layers and before the decoder "
                                        "(Zaremba et al. 2014).", rich_help_panel=MODEL)]
EmbedDropout = Annotated[Optional[float], typer.Option("--embed-dropout", help="Dropout on the embeddings "
                                                       "(default: --dropout).", rich_help_panel=MODEL)]
TieWeights = Annotated[bool, typer.Option("--tie-weights", help="Share the input embedding and output matrices.",
                                          rich_help_panel=MODEL)]
Context = Annotated[int, typer.Option("--context", help="ffnn: tokens of history (an (N+1)-gram model).",
                                      rich_help_panel=MODEL)]
Direct = Annotated[bool, typer.Option("--direct", help="ffnn: direct input-to-output connections.",
                                      rich_help_panel=MODEL)]
SeqLen = Annotated[int, typer.Option("--seq-len", help="BPTT window (tokens per stream per step).",
                                     rich_help_panel=TRAINING)]
TokenizerOpt = Annotated[Optional[str], typer.Option("--tokenizer", "-t", help="'char' (character level, the "
                                                     "default) or a dlnlp tokenizer file (subword level; with "
                                                     "--ids, the tokenizer that wrote them).",
                                                     rich_help_panel=INPUT)]


@app.command()
@training_options(lr=2e-3, clip=5.0, eval_interval=500)
def train(
    ctx: typer.Context,
    inputs: Inputs = None,
    out: OutDir = ...,
    cell: Cell = "lstm",
    layers: Layers = 2,
    hidden: Hidden = 256,
    embed: Embed = 64,
    dropout: Dropout = 0.0,
    embed_dropout: EmbedDropout = None,
    tie_weights: TieWeights = False,
    forget_bias: Annotated[Optional[float], typer.Option("--forget-bias", help="lstm: start the forget-gate bias "
                                                         "at this value (Jozefowicz et al. 2015: 1) instead of "
                                                         "PyTorch's uniform initialization.",
                                                         rich_help_panel=MODEL)] = None,
    context: Context = 5,
    direct: Direct = False,
    tokenizer: TokenizerOpt = None,
    ids: Ids = False,
    init_from: InitFrom = None,
    vocab_size: IdsVocabSize = None,
    eos_id: IdsEos = None,
    seq_len: SeqLen = 128,
    optimizer: Annotated[str, typer.Option("--optimizer", help="adamw or sgd.", rich_help_panel=TRAINING)] = "adamw",
    momentum: Annotated[float, typer.Option("--momentum", help="SGD momentum.", rich_help_panel=TRAINING)] = 0.9,
    training: TrainingOptions = None,
    device: Device = "auto",
    threads: Threads = None,
    precision: Precision = "auto",
    seed: Seed = 0,
    force: Force = False,
    quiet: Quiet = False,
    json: Json = False,
    text_field: TextField = None,
    encoding_errors: EncodingErrors = "strict",
    streaming: Streaming = False,
) -> None:
    """Train a language model; the model directory is usable by `rnn sample` and `rnn eval`.

    Example: dlnlp rnn train tinyshakespeare.txt --out shakes --cell lstm --layers 2 --hidden 256
    --dropout 0.1 --schedule cosine --max-time 300
    """
    from dlnlp.models.rnn_lm import RNNLMConfig
    from dlnlp.recipes.rnn import resume_rnn_training, start_rnn_training

    if training.resume:
        result = resume_rnn_training(out, training.stops(), quiet=quiet, device=device, compile=training.compile,
                                     keep_data=training.keep_data, given=given_options(ctx), inputs=inputs)
    else:
        model_config = RNNLMConfig(vocab_size=1, cell=cell, embed=embed, hidden=hidden, layers=layers,
                                   dropout=dropout, embed_dropout=embed_dropout, tie_weights=tie_weights,
                                   forget_bias=forget_bias, context=context, direct=direct)
        config = training.train_config(device=device, precision=precision, seed=seed, quiet=quiet,
                                       optimizer=optimizer, momentum=momentum)
        result = start_rnn_training(
            inputs, out, model_config, config, seq_len=seq_len, batch_size=training.batch_size,
            tokenizer=tokenizer, ids=ids, eos_id=eos_id, vocab_size=vocab_size, val=training.val,
            val_fraction=training.val_fraction,
            options=corpus_options(text_field, encoding_errors, streaming=streaming), force=force,
            keep_data=training.keep_data, init_from=init_from, given=given_options(ctx),
        )
    if json:
        print_json(result)


@app.command()
def sample(
    model_dir: Annotated[Path, typer.Argument(help="A model directory from `dlnlp rnn train`.", show_default=False)],
    prompt: Annotated[Optional[str], typer.Option("--prompt", "-p", help="Text to start from (ids for an --ids "
                                                  "model); printed before the continuation.")] = None,
    prime: Prime = None,
    length: Annotated[int, typer.Option("--length", help="Tokens to generate (fewer when end-of-text comes).",
                                        rich_help_panel=DECODE)] = 500,
    temperature: Temperature = 1.0,
    top_k: TopK = None,
    top_p: TopP = None,
    seed: Seed = 0,
    device: Device = "auto",
    threads: Threads = None,
) -> None:
    """Generate text from a trained model, streamed to stdout as it is generated.

    Example: dlnlp rnn sample shakes --prompt "ROMEO:" --length 300 --temperature 0.8 --top-k 20 --seed 1
    """
    from dlnlp.cli.options import prompt_option
    from dlnlp.decoding import DecodeConfig
    from dlnlp.decoding.text import TextGenerator
    from dlnlp.errors import DlnlpError, checked
    from dlnlp.models.rnn_lm import KIND

    config = DecodeConfig(strategy="sample", max_new_tokens=max(length, 1), temperature=temperature, top_k=top_k,
                          top_p=top_p)
    checked(config)
    if length < 0:
        raise DlnlpError(f"--length must be >= 0, got {length}")
    text, option = prompt_option(prompt, prime, default="")
    generator = TextGenerator.load(model_dir, device, kind=KIND)
    if length == 0:  # nothing to generate: the prompt, checked against the vocabulary, alone
        generator.encode([text], option)
        sys.stdout.write(text + "\n")
        return
    for _ in generator.run([text], config, seed=seed, stream=sys.stdout, where=option):
        pass


@app.command("eval")
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="A model directory from `dlnlp rnn train`.", show_default=False)],
    inputs: Inputs = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Parallel streams the text is cut into.",
                                            rich_help_panel=COMMON)] = 32,
    device: Device = "auto",
    threads: Threads = None,
    precision: Precision = "fp32",
    json: Json = False,
    text_field: TextField = None,
    encoding_errors: EncodingErrors = "strict",
) -> None:
    """Loss (nats per token), perplexity and bits per character of a model over a whole text.

    Example: dlnlp rnn eval shakes valid.txt --json
    """
    from dlnlp.recipes.rnn import evaluate_model_dir

    result = evaluate_model_dir(model_dir, inputs, batch_size=batch_size, device=device, precision=precision,
                                options=corpus_options(text_field, encoding_errors))
    if json:
        print_json(result)
    else:
        bpc = "n/a" if result["bits_per_char"] is None else f"{result['bits_per_char']:.4f}"
        print(f"loss {result['loss']:.4f} nats/token  perplexity {result['perplexity']:.3f}  "
              f"bits/char {bpc}  ({result['tokens']} tokens)")

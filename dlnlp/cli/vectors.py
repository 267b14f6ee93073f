"""``dlnlp vectors``: evaluate, query, convert and plot word vectors in any supported format.

Reads word2vec text and binary files (dlnlp's, gensim's, word2vec.c's), GloVe's header-less text
format, and dlnlp model directories of kind ``vectors``; the format is detected from the content.
"""

from pathlib import Path
from typing import Annotated, Optional

import typer

from dlnlp.cli.options import Force, Json
from dlnlp.errors import UsageError

app = typer.Typer(help="Word vectors: evaluate (analogies, similarity), neighbors, analogy, convert, plot.",
                  no_args_is_help=True)

VectorsArg = Annotated[str, typer.Argument(help="Vectors: word2vec text/binary file, GloVe text file or "
                                                "dlnlp model directory (format detected).", show_default=False)]
FormatOpt = Annotated[str, typer.Option("--format", help="Input format: auto, word2vec-text, word2vec-binary, "
                                                         "glove or dlnlp.")]
RestrictOpt = Annotated[Optional[int], typer.Option("--restrict", help="Consider only the N most frequent words "
                                                                       "(the first N rows).")]
TopnOpt = Annotated[int, typer.Option("--topn", help="How many words to print.")]


def _load(path: str, fmt: str):
    from dlnlp.models.vectors import load_word_vectors

    return load_word_vectors(path, fmt)


def _percent(value: float) -> str:
    return f"{100 * value:.2f}%"


@app.command("eval")
def eval_(
    vectors: VectorsArg,
    analogy: Annotated[Optional[list[Path]], typer.Option("--analogy", help="Analogy file(s) in the "
                                                          "questions-words.txt layout.")] = None,
    similarity: Annotated[Optional[list[Path]], typer.Option("--similarity", help="Word-pair file(s) in the "
                                                             "WordSim-353 layout (word1 TAB word2 TAB score).")] = None,
    restrict: RestrictOpt = 30000,
    method: Annotated[str, typer.Option("--method", help="Analogy method: 3cosadd, 3cosmul or both.")] = "3cosadd",
    case_sensitive: Annotated[bool, typer.Option("--case-sensitive", help="Match words exactly (default: "
                                                 "case-insensitive, as gensim).")] = False,
    sections: Annotated[bool, typer.Option("--sections", help="Also print each analogy section.")] = False,
    fmt: FormatOpt = "auto",
    json_: Json = False,
) -> None:
    """Analogy accuracy (3CosAdd/3CosMul over the --restrict most frequent words) and similarity correlation.

    Analogy accuracy is reported over all questions and over covered ones (all four words known),
    split into semantic and syntactic sections; similarity as Spearman's rho with pairs used/skipped.
    --restrict limits the analogy search (gensim's restrict_vocab); similarity uses every word.

    Example: dlnlp vectors eval vectors.bin --analogy questions-words.txt --similarity wordsim353.tsv
    """
    from dlnlp.cli.options import print_json
    from dlnlp.errors import InputError
    from dlnlp.evaluation.embeddings import evaluate_analogies, evaluate_similarity

    if not analogy and not similarity:
        raise InputError("nothing to evaluate: give --analogy FILE and/or --similarity FILE")
    methods = ["3cosadd", "3cosmul"] if method == "both" else [method]
    kv = _load(vectors, fmt)
    result: dict = {"vectors": vectors, "words": len(kv), "dim": kv.dim, "analogy": [], "similarity": []}
    for file in analogy or []:
        for m in methods:
            r = evaluate_analogies(kv, file, restrict=restrict, method=m, case_insensitive=not case_sensitive)
            if not sections:
                r.pop("sections")
            result["analogy"].append(r)
    for file in similarity or []:
        result["similarity"].append(evaluate_similarity(kv, file, case_insensitive=not case_sensitive))
    if json_:
        print_json(result)
        return
    for r in result["analogy"]:
        typer.echo(f"analogy {r['file']} ({r['method']}, restrict {r['restrict']}): "
                   f"{_percent(r['accuracy'])} of all {r['questions']}, "
                   f"{_percent(r['accuracy_covered'])} of covered {r['covered']}")
        for name in ("semantic", "syntactic"):
            part = r[name]
            typer.echo(f"  {name}: {_percent(part['accuracy'])} of {part['questions']}, "
                       f"{_percent(part['accuracy_covered'])} of covered {part['covered']}")
        for sec in r.get("sections", []):
            typer.echo(f"  {sec['section']}: {sec['correct']}/{sec['covered']} covered of {sec['questions']} "
                       f"({_percent(sec['accuracy_covered'])})")
    for r in result["similarity"]:
        typer.echo(f"similarity {r['file']}: spearman {r['spearman']:.4f} pearson {r['pearson']:.4f} "
                   f"pairs used {r['pairs_used']} skipped {r['pairs_skipped']}")


@app.command("neighbors")
def neighbors(
    vectors: VectorsArg,
    words: Annotated[list[str], typer.Argument(help="Words to look up.", show_default=False)],
    topn: TopnOpt = 10,
    restrict: RestrictOpt = None,
    fmt: FormatOpt = "auto",
    json_: Json = False,
) -> None:
    """Nearest neighbors by cosine similarity, one block per word. Words are matched as `vectors eval` matches
    them: a word missing in this case is looked up in its most frequent spelling (Paris -> paris).

    Example: dlnlp vectors neighbors vectors.bin king paris --topn 5
    """
    from dlnlp.cli.options import print_json

    kv = _load(vectors, fmt)
    result = {w: kv.most_similar(kv.resolve(w), topn=topn, restrict=restrict) for w in words}
    if json_:
        print_json({w: [{"word": n, "similarity": s} for n, s in items] for w, items in result.items()})
        return
    for word, items in result.items():
        typer.echo(word)
        for n, s in items:
            typer.echo(f"  {n}\t{s:.4f}")


@app.command("analogy")
def analogy_(
    vectors: VectorsArg,
    a: Annotated[str, typer.Argument(help="A (A is to B as C is to ?).", show_default=False)],
    b: Annotated[str, typer.Argument(help="B.", show_default=False)],
    c: Annotated[str, typer.Argument(help="C.", show_default=False)],
    topn: TopnOpt = 5,
    method: Annotated[str, typer.Option("--method", help="3cosadd or 3cosmul.")] = "3cosadd",
    restrict: RestrictOpt = None,
    fmt: FormatOpt = "auto",
    json_: Json = False,
) -> None:
    """Solve "A is to B as C is to ?" (the answer is near B - A + C).

    Example: dlnlp vectors analogy vectors.bin man king woman
    """
    from dlnlp.cli.options import print_json

    kv = _load(vectors, fmt)
    if method == "3cosadd":
        items = kv.most_similar(positive=[b, c], negative=[a], topn=topn, restrict=restrict)
    elif method == "3cosmul":
        items = kv.most_similar_cosmul([b, c], [a], topn=topn, restrict=restrict)
    else:
        raise UsageError(f"--method {method}: expected 3cosadd or 3cosmul")
    if json_:
        print_json({"query": {"a": a, "b": b, "c": c}, "method": method,
                    "results": [{"word": w, "score": s} for w, s in items]})
        return
    for w, s in items:
        typer.echo(f"{w}\t{s:.4f}")


@app.command("convert")
def convert(
    vectors: VectorsArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (or directory for --to dlnlp).")],
    to: Annotated[str, typer.Option("--to", help="word2vec-text, word2vec-binary, glove or dlnlp.")] = "word2vec-text",
    limit: Annotated[Optional[int], typer.Option("--limit", help="Keep only the first N words.")] = None,
    fmt: FormatOpt = "auto",
    force: Force = False,
) -> None:
    """Convert between word2vec text/binary, GloVe text and a dlnlp model directory.

    Example: dlnlp vectors convert glove.6B.100d.txt --to word2vec-binary --out glove.bin
    """
    from dlnlp.io.atomic import check_can_write
    from dlnlp.io.vectors import save_vectors
    from dlnlp.models.vectors import load_word_vectors
    from dlnlp.progress import log

    check_can_write(out, force, inputs=[vectors])
    kv = load_word_vectors(vectors, fmt, limit=limit)
    save_vectors(kv, out, fmt=to, force=force)
    log(f"wrote {len(kv)} vectors of dimension {kv.dim} to {out} ({to})")


@app.command("plot")
def plot(
    vectors: VectorsArg,
    words: Annotated[list[str], typer.Argument(help="Words to plot.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Figure file (.png, .pdf, .svg).")],
    title: Annotated[Optional[str], typer.Option("--title", help="Figure title.")] = None,
    connect: Annotated[bool, typer.Option("--connect", help="Draw a line between consecutive pairs of words "
                                          "(country capital country capital ...).")] = False,
    fmt: FormatOpt = "auto",
    force: Force = False,
) -> None:
    """2-D PCA projection of the words' vectors, a labelled scatter (Mikolov et al.'s countries-and-capitals figure).

    Needs matplotlib (pip install 'dlnlp\\[plot]').

    Example: dlnlp vectors plot vectors.bin china beijing japan tokyo france paris --connect --out capitals.png
    """
    import numpy as np

    from dlnlp.errors import DlnlpError, InputError
    from dlnlp.io.atomic import atomic_open, check_can_write

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise DlnlpError("dlnlp vectors plot needs matplotlib: pip install 'dlnlp[plot]' (or pip install "
                         "matplotlib)") from exc
    check_can_write(out, force, inputs=[vectors], directory=False)
    kv = _load(vectors, fmt)
    missing = [w for w in words if w not in kv]
    if missing:
        raise InputError(f"not in the vocabulary: {', '.join(missing)}")
    if len(words) < 2:
        raise InputError("plot needs at least two words")
    points = np.stack([kv.unit(w) for w in words]).astype(np.float64)
    points -= points.mean(axis=0)
    # PCA through the SVD of the centred points: the first two right singular vectors.
    _, _, vt = np.linalg.svd(points, full_matrices=False)
    xy = points @ vt[:2].T
    fig, ax = plt.subplots(figsize=(8, 6))
    ax.scatter(xy[:, 0], xy[:, 1], s=12)
    for (x, y), word in zip(xy, words, strict=True):
        ax.annotate(word, (x, y), xytext=(3, 3), textcoords="offset points")
    if connect:
        for i in range(0, len(words) - 1, 2):
            ax.plot(xy[i:i + 2, 0], xy[i:i + 2, 1], linestyle="--", linewidth=0.8, color="gray")
    ax.set_title(title or "PCA projection of word vectors")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    suffix = out.suffix.lstrip(".").lower() or "png"
    with atomic_open(out, "wb", force=force) as handle:
        fig.savefig(handle, format=suffix, bbox_inches="tight")
    plt.close(fig)


from dlnlp.cli.vectors_ppmi import register as _register_ppmi  # noqa: E402  (the count-based baseline, issue 6)

_register_ppmi(app)

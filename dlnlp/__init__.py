"""dlnlp: NLP pipelines and language modeling from the command line, on PyTorch."""

__version__ = "0.1.0"

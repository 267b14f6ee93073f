"""Recipes: the flows that turn options into a trained, saved, evaluated model.

torchtune's split: :mod:`dlnlp.training` holds the generic loop (trainer, config, schedule, checkpoint,
batch sources) and knows no model family; a recipe here says, for one family, how a run starts
(prepare data, build the model, check memory), resumes, and evaluates, and the CLI only parses options,
calls a recipe and prints. ``lm`` is what every language-model recipe shares (a run's output
directory, its summary, held-out text); ``gpt`` and ``rnn`` are the two LM families.

The vector models count, fit and write instead: ``vectors`` is what they share (the counting options
as :class:`~dlnlp.recipes.vectors.Counting`, co-occurrence counting, the output's format and checks);
``glove``, ``ppmi`` and ``word2vec`` are one function each (``train_glove``, ``train_ppmi_svd``,
``train_word2vec``) taking plain arguments and returning the run's figures.
"""

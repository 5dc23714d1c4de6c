"""Stigmatisation classifiers: registry, passages, targets, speakers, model, training, evaluation."""

"""Evaluation of a trained model: recovered parameters, clustering, prediction, figure."""

"""Training: phase schedule, loss, optimiser, steps, the training loop."""

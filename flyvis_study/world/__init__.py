"""The simulated world: connectome, ground truth, stimuli, simulator, datasets."""

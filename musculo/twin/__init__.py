"""Digital-twin subjects: a small OpenSim model, synthetic lab recordings and their ground truth."""

"""Training a network: the loop, its checkpoints, and training in several processes (DDP)."""

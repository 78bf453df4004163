"""Watching new images: reading them, drift reports against the champion's training data, the monitor run."""

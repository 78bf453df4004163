"""Labelled images in: sources and archives, decoding, duplicates, the validation split, rebalancing, new batches."""

"""Choosing the champions: registering contenders, candidates, ensembles, the per-emotion decision, alias moves."""

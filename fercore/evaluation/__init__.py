"""Scoring predictions: per-class metrics, their plots, bootstrap intervals of a lead."""

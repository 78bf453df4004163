"""Where a model looks: everything about class activation maps.

- :mod:`fercore.explain.cam`: HiResCAM of every family, averaged over a model's test-time views; ensembles' maps.
- :mod:`fercore.explain.overlay`: a map drawn over a face, with its colour scale.
- :mod:`fercore.explain.summary`: a model's maps per emotion (mean maps, a gallery), what ``evaluate_<name>`` shows.
- :mod:`fercore.explain.figures`: the figures of those summaries, and promotion's emotion x contender figure.
- :mod:`fercore.explain.registered`: the maps of a registered version's local copy (predict and the demo).
"""

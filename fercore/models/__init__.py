"""Networks: definitions, save/load, and running them (devices, precision, test-time views).

Every model maps a float batch ``(B, 1, 48, 48)`` in ``[0, 1]`` to 7 logits.
"""

from fercore.models.cnn import ARCHITECTURES, build_cnn, count_parameters
from fercore.models.io import load_model, network_digest, save_model

__all__ = ["ARCHITECTURES", "build_cnn", "count_parameters", "load_model", "network_digest", "save_model"]

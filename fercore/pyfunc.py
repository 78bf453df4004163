"""Where registered versions find their wrapper classes: their pickles name ``fercore.pyfunc.<class>``.

The classes live in :mod:`fercore.serving.pyfunc`; this module keeps the older import path working
(promotion loads earlier versions in-process, and new versions' copies of ``fercore`` carry it too).
"""

from fercore.serving.pyfunc import FerEmotionModel, FerEnsembleModel, as_image_batch

__all__ = ["FerEmotionModel", "FerEnsembleModel", "as_image_batch"]

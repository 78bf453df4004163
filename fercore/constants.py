"""Names and numbers shared by every module: one class order everywhere."""

CLASS_NAMES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
NUM_CLASSES = len(CLASS_NAMES)
CLASS_INDEX = {name: i for i, name in enumerate(CLASS_NAMES)}

# Label numbers of the original fer2013.csv release, mapped to our class order.
CSV_LABEL_NAMES = {0: "angry", 1: "disgust", 2: "fear", 3: "happy", 4: "sad", 5: "surprise", 6: "neutral"}

IMAGE_SIZE = 48
SPLITS = ("train", "val", "test")
SUBSETS = ("Training", "PublicTest", "PrivateTest")
UNKNOWN_SUBSET = "unknown"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")

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
# what a model trained on FER-2013 cannot promise (its model card and the registered model's description say it)
LIMITATIONS = ("FER-2013's labels are noisy (FER+, its relabelling by ten annotators per face, changed many); its "
               "faces come from web image searches and are not balanced by age, gender or ethnicity; disgust has 436 "
               "training images. Expect lower figures on other populations, on photos cropped differently, and on "
               "disgust.")

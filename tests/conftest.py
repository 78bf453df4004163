"""Shared fixtures: isolated ZenML/MLflow stores and synthetic FER-style data."""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

# Before anything imports zenml or mlflow: private stores, no analytics, no network. Each pytest-xdist worker
# has its own; a process a test starts that imports this module again (a DDP worker) keeps its parent's.
_OWNER = os.environ.get("PYTEST_XDIST_WORKER", "main")
_INHERITED = os.environ.get("FER_TESTS_SESSION_DIR") if os.environ.get("FER_TESTS_SESSION_OWNER") == _OWNER else None
_SESSION_DIR = Path(_INHERITED or tempfile.mkdtemp(prefix=f"fer-tests-{_OWNER}-"))
# Each session its own ZenML repository (no config yet: the store's default stack). The project's .zen is one
# file for every process: two xdist workers, whose stores have different stacks, would rewrite it under each other.
(_SESSION_DIR / "repo" / ".zen").mkdir(parents=True, exist_ok=True)
os.environ["ZENML_REPOSITORY_PATH"] = str(_SESSION_DIR / "repo")
if _OWNER != "main":  # two xdist workers on two cores: a thread each (two apiece made the suite slower, not faster)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.update(
    FER_TESTS_SESSION_DIR=str(_SESSION_DIR),
    FER_TESTS_SESSION_OWNER=_OWNER,
    ZENML_ANALYTICS_OPT_IN="false",
    GRADIO_ANALYTICS_ENABLED="False",
    ZENML_CONFIG_PATH=str(_SESSION_DIR / "zenml"),
    ZENML_LOGGING_COLORS_DISABLED="true",
    FER_CACHE_DIR=str(_SESSION_DIR / "cache"),
    MLFLOW_TRACKING_URI=f"sqlite:///{_SESSION_DIR / 'mlflow.db'}",
    HF_HUB_OFFLINE="1",
    TOKENIZERS_PARALLELISM="false",
)

from PIL import Image  # noqa: E402

from fercore.config import CnnConfig  # noqa: E402
from fercore.constants import CLASS_NAMES  # noqa: E402
from fercore.data.dataset import FerDataset  # noqa: E402
from fercore.data.split import split_validation  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REAL_ARCHIVE = ROOT.parent / "shared" / "data" / "fer2013" / "fer2013.tar.gz"
def face(label: int, rng: np.random.Generator, size: int = 48, sided: bool = False) -> np.ndarray:
    """A synthetic 'face' whose class is learnable: a bright bar whose position encodes the label. With ``sided`` the
    side carries the label too: labels 0-3 a bar on the left half at rows 0-3, labels 4-6 one on the right half at
    rows 0-2, so a mirror turns a 0 into a 4 (unlike a face, whose emotion a mirror keeps)."""
    img = rng.integers(0, 60, size=(size, size), dtype=np.uint8)
    slot = label % 4 if sided else label
    row = int((slot + 0.5) * size / (4 if sided else len(CLASS_NAMES)))
    cols = (slice(0, size // 2) if label < 4 else slice(size // 2, size)) if sided else slice(0, size)
    img[max(row - 3, 0): row + 3, cols] = 200 + rng.integers(0, 40)
    return img


def jpeg_bytes(pixels: np.ndarray, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buf, format="PNG" if mode == "RGBA" else "JPEG", quality=95)
    return buf.getvalue()


def write_tree(root: Path, train_per_class: int = 6, test_per_class: int = 3, seed: int = 0) -> Path:
    """Writes a Kaggle-layout tree: train/<class>/Training_<i>.jpg, test/<class>/{Public,Private}Test_<i>.jpg."""
    rng = np.random.default_rng(seed)
    counter = 0
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        for label, name in enumerate(CLASS_NAMES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                counter += 1
                prefix = "Training" if split == "train" else ("PublicTest" if i % 2 == 0 else "PrivateTest")
                (folder / f"{prefix}_{counter}.jpg").write_bytes(jpeg_bytes(face(label, rng)))
    return root


@pytest.fixture
def fer_tree(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "fer")


@pytest.fixture
def fer_tar(tmp_path: Path, fer_tree: Path) -> Path:
    path = tmp_path / "fer.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for split in ("train", "test"):
            tf.add(fer_tree / split, arcname=f"fer2013/{split}")
    return path


@pytest.fixture
def fer_zip(tmp_path: Path, fer_tree: Path) -> Path:
    path = tmp_path / "fer.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for file in sorted(fer_tree.rglob("*.jpg")):
            zf.write(file, file.relative_to(fer_tree).as_posix())
    return path


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def real_archive() -> Path:
    if not REAL_ARCHIVE.exists():
        pytest.skip(f"real FER-2013 archive not found at {REAL_ARCHIVE}")
    return REAL_ARCHIVE


@pytest.fixture(scope="session")
def tiny_vit_dir(tmp_path_factory) -> Path:
    """A tiny 'pretrained' ViT (1000-class head, RGB, 32 px) written with save_pretrained."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    path = tmp_path_factory.mktemp("tiny-vit")
    config = ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=3,
                       num_attention_heads=2, intermediate_size=64, num_labels=1000)
    import torch

    with torch.random.fork_rng(devices=[]):  # the same weights in every session, whatever ran before
        torch.manual_seed(0)
        ViTForImageClassification(config).save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(path)
    return path


def synthetic(per_class: int = 30, test_per_class: int = 10, seed: int = 0, sided: bool = False) -> FerDataset:
    """Synthetic faces (:func:`face`), split as the configs split: 20 % of train carved out for validation."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.repeat(np.arange(7), per_class), np.repeat(np.arange(7), test_per_class)])
    splits = np.array(["train"] * (7 * per_class) + ["test"] * (7 * test_per_class))
    images = np.stack([face(int(y), rng, sided=sided) for y in labels])
    ids = np.array([f"s/{i}" for i in range(len(labels))])
    ds = FerDataset(images, labels, splits, ids, np.array(["PublicTest"] * len(labels)))
    ds.metadata["sha256"] = "synthetic"
    return split_validation(ds, 0.2, seed=0)



def small_cfg(**kw) -> CnnConfig:
    base = dict(architecture="vgg7", width=8, epochs=3, batch_size=32, learning_rate=3e-3, patience=5,
                scheduler="onecycle", augment={"rotation_degrees": 5, "crop_padding": 2})
    return CnnConfig(**{**base, **kw})



class Interrupt(Exception):
    pass


def _allowed_skips() -> list[str]:
    lines = (ROOT / "tests" / "allowed_skips.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def pytest_sessionfinish(session, exitstatus):
    """With ``FER_STRICT_SKIPS=1`` (CI), a skip whose reason is not in tests/allowed_skips.txt fails the session."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if os.environ.get("FER_STRICT_SKIPS") != "1" or reporter is None:
        return
    allowed = _allowed_skips()
    reasons = [(r.nodeid, r.longrepr[2] if isinstance(r.longrepr, tuple) else str(r.longrepr))
               for r in reporter.stats.get("skipped", [])]
    unexpected = [(node, why) for node, why in reasons if not any(a in why for a in allowed)]
    if unexpected:
        reporter.write_line("Skips not in tests/allowed_skips.txt (FER_STRICT_SKIPS=1): a test that should run did "
                            "not; install what it needs or add its reason there, with why", red=True)
        for node, why in unexpected:
            reporter.write_line(f"  {node}: {why}", red=True)
        session.exitstatus = 1


def connect_store(uri: str, experiment: str) -> str:
    """The project's :func:`fercore.tracking.store.connect`, and MLflow's own clients in the test (``MlflowClient()``,
    ``mlflow.pyfunc.load_model("models:/...")``) pointed at the same store. The project never sets MLflow's
    process-wide URI; a test that reads the store through MLflow's own API does, for itself."""
    import mlflow

    from fercore.tracking.store import connect

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return connect(uri, experiment)

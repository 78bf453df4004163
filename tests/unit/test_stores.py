"""Where things are kept: URIs, and what messages may show of them."""

import pytest

from fercore.tracking.locations import local_store_path, redact


@pytest.mark.parametrize(("uri", "shown"), [
    ("https://alice:s3cr3t@mlflow.example.com/", "https://alice:***@mlflow.example.com/"),
    ("postgresql://fer:pa:ss@db:5432/mlflow", "postgresql://fer:***@db:5432/mlflow"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),  # a port is not a password
    ("https://token@host/path", "https://token@host/path"),
    ("sqlite:////work/mlflow.db", "sqlite:////work/mlflow.db"),
])
def test_a_password_in_a_uri_is_masked(uri, shown):
    assert redact(uri) == shown


def test_local_store_paths():
    assert str(local_store_path("sqlite:////a/mlflow.db")) == "/a/mlflow.db"
    assert str(local_store_path("file:///a/mlruns")) == "/a/mlruns"
    assert local_store_path("http://127.0.0.1:5000") is None

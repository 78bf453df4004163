"""A ZenML artifact store flavor that says it is remote but keeps files in a local folder (compile tests:
the stack looks like a cluster's to ZenML and to the project's checks, without an S3 bucket)."""

from __future__ import annotations

from typing import ClassVar

from zenml.artifact_stores.base_artifact_store import BaseArtifactStoreConfig, BaseArtifactStoreFlavor
from zenml.artifact_stores.local_artifact_store import LocalArtifactStore


class FakeRemoteArtifactStoreConfig(BaseArtifactStoreConfig):
    SUPPORTED_SCHEMES: ClassVar[set[str]] = {""}

    @property
    def is_local(self) -> bool:
        return False

    @property
    def is_remote(self) -> bool:
        return True


class FakeRemoteArtifactStore(LocalArtifactStore):
    @property
    def path(self) -> str:
        return self.config.path

    @property
    def local_path(self) -> None:  # what a bucket reports: nothing to mount
        return None


class FakeRemoteArtifactStoreFlavor(BaseArtifactStoreFlavor):
    @property
    def name(self) -> str:
        return "fake_remote"

    @property
    def config_class(self) -> type[FakeRemoteArtifactStoreConfig]:
        return FakeRemoteArtifactStoreConfig

    @property
    def implementation_class(self) -> type[FakeRemoteArtifactStore]:
        return FakeRemoteArtifactStore

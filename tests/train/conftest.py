"""A small learnable dataset on disk for trainer tests."""

import pytest

from imagedata import write_folder


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory):
    """3 classes x 16 crops of three different photos: learnable in a few dozen steps."""
    return str(write_folder(tmp_path_factory.mktemp("photos") / "images", per_class=16,
                            size=(48, 40)))

"""What `pip install .` (not editable) ships: every subpackage of efficientnet_tf."""

import os

from setuptools import find_packages

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_folder_of_the_package_is_a_package_setup_finds():
    folders = {os.path.relpath(directory, ROOT).replace(os.sep, ".")
               for directory, _, files in os.walk(os.path.join(ROOT, "efficientnet_tf"))
               if any(name.endswith(".py") for name in files)}
    found = set(find_packages(ROOT, include=["efficientnet_tf", "efficientnet_tf.*"]))
    assert folders == found, f"folders without __init__.py miss from wheels: {folders - found}"

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


def test_the_container_builds_for_gpus_with_one_argument_the_readme_gives():
    """The Dockerfile installs the TensorFlow its TENSORFLOW build argument names (CPUs by
    default), and the README's GPU line is the argument the Dockerfile documents."""
    with open(os.path.join(ROOT, "Dockerfile")) as stream:
        dockerfile = stream.read()
    with open(os.path.join(ROOT, "README.md")) as stream:
        readme = stream.read()
    assert "ARG TENSORFLOW=tensorflow\n" in dockerfile
    assert 'RUN pip install "$TENSORFLOW" .\n' in dockerfile
    readme = readme.replace("\n", " ")
    gpu = "--build-arg TENSORFLOW='tensorflow[and-cuda]'"
    assert gpu in dockerfile and gpu in readme
    assert "pip install 'tensorflow[and-cuda]'" in readme

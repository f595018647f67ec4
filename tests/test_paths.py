"""Every user path goes through tf.io.gfile, so gs:// works (issue: GCS).

Python's open() and os.path cannot see gs:// (or ram://, which the tests use in its place). A line
of the package that touches the local disk on purpose (a scratch dir, Keras's download cache)
says so with a `# local: REASON` comment; any other use is a bug this test reports.
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
LOCAL_ONLY = re.compile(r"\bopen\(|\bos\.path\.|\bos\.(makedirs|listdir|remove|rename|walk|stat)\(|"
                        r"\bshutil\.|\bglob\.glob\(|\bpathlib\.")
FILES = sorted((ROOT / "efficientnet_tf").rglob("*.py")) + [ROOT / "scripts" / "make_tfrecords.py"]


def offending_lines():
    found = []
    for path in FILES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if LOCAL_ONLY.search(code) and "# local:" not in line:
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return found


def test_no_local_only_file_access_on_user_paths():
    assert offending_lines() == []


def test_the_check_finds_what_it_looks_for(tmp_path, monkeypatch):
    bad = tmp_path / "bad.py"
    bad.write_text("with open(path) as f:\n    pass\nos.path.exists(p)  # local: cache\n"
                   "x = tf.io.gfile.GFile(path)\n")
    monkeypatch.setattr(sys.modules[__name__], "FILES", [bad])
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert offending_lines() == ["bad.py:1: with open(path) as f:"]

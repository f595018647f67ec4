"""data/tfrecords.py and scripts/make_tfrecords.py: a folder to TFRecords and back."""

import os
import subprocess
import sys


from efficientnet_tf.data import sources
from efficientnet_tf.tasks.classification import inputs as inputs_lib
from efficientnet_tf.data import labels as labels_lib
from imagedata import real_labels

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_make_tfrecords_script_round_trip(tmp_path, messy_folder):
    output = tmp_path / "records"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "make_tfrecords.py"),
         f"--input={messy_folder}", f"--output={output}", "--eval_percent=50",
         "--train_shards=2", "--eval_shards=1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "skipped 3 images" in result.stdout
    assert "1 empty file" in result.stdout and "2 not a decodable image" in result.stdout
    assert labels_lib.read_labels(str(output)) == ["astronaut", "coffee"]
    folder = sources.ImageFolderSource(str(messy_folder), eval_percent=50)
    records = sources.TFRecordSource({"train": str(output / "train-*"),
                                      "eval": str(output / "eval-*")}, num_classes=2)
    assert len(records.files("train")) == 2
    for split in ("train", "eval"):
        from_records = sorted(real_labels(inputs_lib.eval_dataset(records, 32, 4, 2, split=split)))
        from_folder = real_labels(inputs_lib.eval_dataset(folder, 32, 4, 2, split=split))
        assert from_records == sorted(from_folder)
    # The images themselves survive the round trip byte for byte.
    example = next(iter(records.dataset("train")))
    key = example["key"].numpy().decode()
    assert key.startswith(str(output / "train-0000")) and example["label"].numpy() in (0, 1)

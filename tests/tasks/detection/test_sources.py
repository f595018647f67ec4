"""Detection sources: COCO JSON, detection TFRecords, TFDS; the JSON -> TFRecord converter."""

import io
import json
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from efficientnet_tf.tasks.detection import convert, records
from efficientnet_tf.tasks.detection import sources as detection_sources
from efficientnet_tf.tasks.detection.sources import (CocoJsonSource, TFDSSource,
                                                    TFRecordSource)
from efficientnet_tf.data.sources import EVAL, TRAIN

WIDTH, HEIGHT = 40, 30
# Sparse ids, listed out of order: sorted by id, cat (3) is class 0 and dog (7) class 1.
CATEGORIES = [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]
IMAGES = [{"id": 11, "file_name": "a.jpg", "height": HEIGHT, "width": WIDTH},
          {"id": 12, "file_name": "b.png", "height": HEIGHT, "width": WIDTH},
          {"id": 13, "file_name": "c.jpg", "height": HEIGHT, "width": WIDTH}]  # no objects
ANNOTATIONS = [
    {"id": 1, "image_id": 11, "category_id": 3, "bbox": [4, 6, 20, 12], "area": 200.0,
     "iscrowd": 0},
    {"id": 2, "image_id": 11, "category_id": 7, "bbox": [0, 0, 40, 30], "area": 1000.0,
     "iscrowd": 1},
    {"id": 3, "image_id": 12, "category_id": 7, "bbox": [10, 3, 10, 15], "area": 150.0,
     "iscrowd": 0},
    # Half a pixel past the right edge: within the tolerance, clipped to [30, 20, 10, 10].
    {"id": 4, "image_id": 12, "category_id": 3, "bbox": [30, 20, 10.5, 10], "area": 100.0,
     "iscrowd": 0}]
# By hand: (ymin, xmin, ymax, xmax) = (y / 30, x / 40, (y + h) / 30, (x + w) / 40).
EXPECTED = {11: ([[0.2, 0.1, 0.6, 0.6], [0, 0, 1, 1]], [0, 1], [False, True]),
            12: ([[0.1, 0.25, 0.6, 0.5], [2 / 3, 0.75, 1, 1]], [1, 0], [False, False]),
            13: (np.zeros([0, 4]), [], [])}


def image_bytes(colour, file_format):
    pixels = np.full([HEIGHT, WIDTH, 3], 40, np.uint8)
    pixels[6:18, 4:24] = colour
    stream = io.BytesIO()
    Image.fromarray(pixels).save(stream, format=file_format)
    return stream.getvalue()


def write_coco(root, annotations=ANNOTATIONS, images=IMAGES, categories=CATEGORIES):
    """root/images/{a.jpg,b.png,c.jpg} and root/annotations.json, through tf.io.gfile (so root
    may be a ram:// path). Returns (annotations path, images dir)."""
    root = str(root)
    tf.io.gfile.makedirs(f"{root}/images")
    for name, colour in (("a.jpg", (250, 0, 0)), ("b.png", (0, 250, 0)), ("c.jpg", (0, 0, 250))):
        with tf.io.gfile.GFile(f"{root}/images/{name}", "wb") as stream:
            stream.write(image_bytes(colour, "PNG" if name.endswith("png") else "JPEG"))
    with tf.io.gfile.GFile(f"{root}/annotations.json", "w") as stream:
        json.dump({"images": images, "annotations": annotations, "categories": categories},
                  stream)
    return f"{root}/annotations.json", f"{root}/images"


@pytest.fixture
def coco(tmp_path):
    return write_coco(tmp_path)


def by_id(dataset):
    return {int(e["image_id"]): e for e in dataset.as_numpy_iterator()}


def check_expected(elements):
    assert sorted(elements) == [11, 12, 13]
    for image_id, (boxes, classes, crowd) in EXPECTED.items():
        element = elements[image_id]
        assert set(element) == {"image", "key", "image_id", "boxes", "classes", "is_crowd"}
        assert element["boxes"].dtype == np.float32 and element["classes"].dtype == np.int64
        np.testing.assert_allclose(element["boxes"], np.reshape(boxes, [-1, 4]), atol=1e-6)
        assert element["classes"].tolist() == classes
        assert element["is_crowd"].tolist() == crowd


def test_coco_json_maps_sparse_ids_and_normalises_boxes(coco):
    source = CocoJsonSource({EVAL: coco[0]}, {EVAL: coco[1]})
    assert source.num_classes == 2
    assert source.class_names == ("cat", "dog") and source.category_ids == (3, 7)
    assert source.num_examples(EVAL) == 3 and source.skipped_annotations == {EVAL: 0}
    elements = by_id(source.dataset(EVAL))
    check_expected(elements)
    assert elements[12]["key"].decode().endswith("/images/b.png")
    assert elements[12]["image"] == image_bytes((0, 250, 0), "PNG")
    truth = source.ground_truth(EVAL)
    assert truth["categories"] == [{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"}]
    assert [image["id"] for image in truth["images"]] == [11, 12, 13]
    assert truth["annotations"][3] == {"id": 4, "image_id": 12, "category_id": 0,
                                       "bbox": [30.0, 20.0, 10.0, 10.0], "area": 100.0,
                                       "iscrowd": 0}


def with_annotation(index, **changes):
    return [dict(a, **changes) if i == index else a for i, a in enumerate(ANNOTATIONS)]


@pytest.mark.parametrize("changes, expected", [
    ({"category_id": 5}, "category_id 5 is not in the file's categories (ids [3, 7])"),
    ({"bbox": [4, 6, 0, 12]}, "has width 0 and height 12; both must be > 0"),
    ({"bbox": [30, 0, 15, 10]}, "outside the 40x30 image; a box must lie within x 0..40"),
    ({"image_id": 99}, "annotation 1 refers to image_id 99, which 'images' does not list"),
])
def test_coco_json_invalid_annotations_are_named(tmp_path, changes, expected):
    coco = write_coco(tmp_path, with_annotation(0, **changes))
    with pytest.raises(ValueError) as error:
        CocoJsonSource({EVAL: coco[0]}, {EVAL: coco[1]})
    assert expected in str(error.value)
    if "image_id" not in changes:
        assert "image 'a.jpg' (id 11), annotation 1:" in str(error.value)


def test_coco_json_skip_mode_counts_and_leaves_out(tmp_path):
    bad = with_annotation(0, category_id=5)
    bad[2] = dict(bad[2], bbox=[10, 3, -1, 15])
    coco = write_coco(tmp_path, bad)
    source = CocoJsonSource({EVAL: coco[0]}, {EVAL: coco[1]}, invalid_boxes="skip")
    assert source.skipped_annotations == {EVAL: 2}
    elements = by_id(source.dataset(EVAL))
    assert elements[11]["classes"].tolist() == [1] and elements[12]["classes"].tolist() == [0]
    assert len(source.ground_truth(EVAL)["annotations"]) == 2


def test_coco_json_folder_and_category_errors(tmp_path, coco):
    with pytest.raises(ValueError, match="image folder .*nowhere.* does not exist"):
        CocoJsonSource({EVAL: coco[0]}, {EVAL: str(tmp_path / "nowhere")})
    other = write_coco(tmp_path / "other", categories=CATEGORIES + [{"id": 9, "name": "cow"}])
    with pytest.raises(ValueError, match="both splits need the same list"):
        CocoJsonSource({TRAIN: other[0], EVAL: coco[0]}, {TRAIN: other[1], EVAL: coco[1]})


def test_coco_json_missing_image_file_gives_empty_bytes(coco):
    tf.io.gfile.remove(f"{coco[1]}/a.jpg")
    elements = by_id(CocoJsonSource({EVAL: coco[0]}, {EVAL: coco[1]}).dataset(EVAL))
    assert elements[11]["image"] == b"" and len(elements[12]["image"]) > 0


def test_coco_json_shards_images_disjointly(coco):
    source = CocoJsonSource({EVAL: coco[0]}, {EVAL: coco[1]})
    seen = [set(by_id(source.dataset(EVAL, input_context=tf.distribute.InputContext(2, i))))
            for i in range(2)]
    assert not seen[0] & seen[1] and seen[0] | seen[1] == {11, 12, 13}


def test_coco_json_on_ram_filesystem():
    """ram:// is a TensorFlow filesystem that open() and os.path cannot see: gs:// stands in."""
    coco = write_coco("ram://detection/coco")
    source = CocoJsonSource({EVAL: coco[0]}, {EVAL: coco[1]})
    elements = by_id(source.dataset(EVAL))
    check_expected(elements)
    assert elements[11]["image"] == tf.io.gfile.GFile(f"{coco[1]}/a.jpg", "rb").read()


def approx_truth(truth):
    """The dict with floats rounded: the records store float32 boxes."""
    for annotation in truth["annotations"]:
        annotation["bbox"] = [round(v, 3) for v in annotation["bbox"]]
        annotation["area"] = round(annotation["area"], 3)
    return truth


def test_json_to_tfrecords_round_trip(tmp_path, coco):
    summary = convert.coco_json_to_tfrecords(coco[0], coco[1], str(tmp_path / "out"), EVAL,
                                             shards=2, class_ids="index")
    assert summary.written == {EVAL: 3} and summary.skipped == []
    config = ml_collections.ConfigDict(dict(
        source="detection_tfrecord", train_pattern=str(tmp_path / "out/eval-*"),
        eval_pattern=str(tmp_path / "out/eval-*"), label_offset=1, num_classes=2,
        labels_file="", num_train_examples=0, num_eval_examples=0, invalid_boxes="error"))
    source = detection_sources.from_config(config)
    assert isinstance(source, TFRecordSource) and source.class_names == ("cat", "dog")
    assert source.num_examples(EVAL) == 3 and len(source.files(EVAL)) == 2
    elements = by_id(source.dataset(EVAL))
    check_expected(elements)
    assert elements[12]["key"].decode().split("/")[-1] in {"eval-00000-of-00002.tfrecord:1",
                                                           "eval-00001-of-00002.tfrecord:0"}
    json_source = CocoJsonSource({EVAL: coco[0]}, {EVAL: coco[1]})
    for image_id, element in by_id(json_source.dataset(EVAL)).items():
        assert elements[image_id]["image"] == element["image"]
        np.testing.assert_allclose(elements[image_id]["boxes"], element["boxes"], atol=1e-6)
    assert approx_truth(source.ground_truth(EVAL)) == approx_truth(json_source.ground_truth(EVAL))


def write_records(path, classes, boxes):
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(records.example(image_bytes((9, 9, 9), "JPEG"), HEIGHT, WIDTH, boxes,
                                     classes, source_id="2007_000027.jpg").SerializeToString())


@pytest.mark.parametrize("classes, boxes, expected", [
    ([0, 5], [(6, 4, 18, 24), (0, 0, 30, 40)], "record label(s) outside 1..2"),
    ([0, 1], [(6, 4, 18, 24), (18, 4, 6, 24)], "box(es) empty or outside [0, 1]"),
])
def test_tfrecord_invalid_objects_error_or_drop(tmp_path, classes, boxes, expected):
    write_records(tmp_path / "bad.tfrecord", classes, boxes)
    source = TFRecordSource({EVAL: str(tmp_path / "bad.tfrecord")}, num_classes=2)
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        list(source.dataset(EVAL))
    assert expected in error.value.message and "bad.tfrecord:0" in error.value.message
    skipping = TFRecordSource({EVAL: str(tmp_path / "bad.tfrecord")}, num_classes=2,
                              invalid_boxes="skip")
    (element,) = list(skipping.dataset(EVAL).as_numpy_iterator())
    assert element["classes"].tolist() == [0] and int(skipping.skipped_annotations[EVAL]) == 1
    np.testing.assert_allclose(element["boxes"], [[0.2, 0.1, 0.6, 0.6]], atol=1e-6)
    # A source_id that is no number (the OD API's VOC records) is hashed, the same each time.
    assert element["image_id"] == list(skipping.dataset(EVAL))[0]["image_id"] > 0


def test_category_id_classes_as_automl_numbers_them(tmp_path, coco):
    """class_ids="category_id": class = COCO id - 1 (ids 3 and 7: 7 classes, 5 of them unused),
    the same in the JSON source and in the records the converter writes by default."""
    source = CocoJsonSource({EVAL: coco[0]}, {EVAL: coco[1]}, class_ids="category_id")
    assert source.num_classes == 7 and source.category_ids == (1, 2, 3, 4, 5, 6, 7)
    assert source.class_names == ("unused-1", "unused-2", "cat", "unused-4", "unused-5",
                                  "unused-6", "dog")
    elements = by_id(source.dataset(EVAL))
    assert elements[11]["classes"].tolist() == [2, 6] and elements[12]["classes"].tolist() == [6, 2]
    truth = source.ground_truth(EVAL)  # the unused ids are no categories: never scored
    assert truth["categories"] == [{"id": 2, "name": "cat"}, {"id": 6, "name": "dog"}]
    assert truth["annotations"][3]["category_id"] == 2
    convert.coco_json_to_tfrecords(coco[0], coco[1], str(tmp_path / "out"), EVAL, shards=1)
    records = detection_sources.from_config(ml_collections.ConfigDict(dict(
        source="detection_tfrecord", train_pattern=str(tmp_path / "out/eval-*"),
        eval_pattern=str(tmp_path / "out/eval-*"), label_offset=1, num_classes=7,
        labels_file="", num_train_examples=0, num_eval_examples=0, invalid_boxes="error")))
    assert records.class_names == source.class_names and records.category_ids[2] == 3
    for image_id, element in by_id(records.dataset(EVAL)).items():
        assert element["classes"].tolist() == elements[image_id]["classes"].tolist()
    # An annotation of an id the file does not list stays an error; so does an id below 1.
    with pytest.raises(ValueError, match="category_id 4 is not in the file's categories"):
        CocoJsonSource({EVAL: write_coco(tmp_path / "bad", with_annotation(0, category_id=4))[0]},
                       {EVAL: coco[1]}, class_ids="category_id")
    zero = write_coco(tmp_path / "zero", categories=[{"id": 0, "name": "cat"}],
                      annotations=with_annotation(0, category_id=0)[:1])
    with pytest.raises(ValueError, match=r"category ids \[0\]: class_ids='category_id'.*"
                                         r"\(data.class_ids=index; the converter's --class_ids"):
        CocoJsonSource({EVAL: zero[0]}, {EVAL: zero[1]}, class_ids="category_id")


def test_the_original_annotation_file_as_ground_truth(coco):
    """detection.eval_annotations: the file as it is (annotation 4 sticks half a pixel out of its
    image: kept, where the rebuilt ground truth clips it), ids mapped to our classes."""
    source = CocoJsonSource({EVAL: coco[0]}, {EVAL: coco[1]})
    truth = detection_sources.file_ground_truth(coco[0], source.category_ids,
                                                source.class_names)
    rebuilt = source.ground_truth(EVAL)
    assert truth["categories"] == rebuilt["categories"] == [{"id": 0, "name": "cat"},
                                                            {"id": 1, "name": "dog"}]
    assert [image["id"] for image in truth["images"]] == [11, 12, 13]
    assert truth["annotations"][3]["bbox"] == [30.0, 20.0, 10.5, 10.0]
    assert rebuilt["annotations"][3]["bbox"] == [30.0, 20.0, 10.0, 10.0]
    assert [a["category_id"] for a in truth["annotations"]] == [0, 1, 1, 0]
    with pytest.raises(ValueError, match=r"category ids \[7\] that the model's classes do not"):
        detection_sources.file_ground_truth(coco[0], (3,), ("cat",))


def test_tfrecord_shards_records_of_one_file_disjointly(tmp_path, coco):
    convert.coco_json_to_tfrecords(coco[0], coco[1], str(tmp_path / "out"), EVAL, shards=1,
                                   class_ids="index")
    source = TFRecordSource({EVAL: str(tmp_path / "out/eval-*")}, num_classes=2)
    seen = [set(by_id(source.dataset(EVAL, input_context=tf.distribute.InputContext(2, i))))
            for i in range(2)]
    assert not seen[0] & seen[1] and seen[0] | seen[1] == {11, 12, 13}


def test_from_config(coco):
    data = ml_collections.ConfigDict(dict(
        source="coco_json", train_annotations=coco[0], train_images=coco[1],
        eval_annotations=coco[0], eval_images=coco[1], invalid_boxes="skip"))
    source = detection_sources.from_config(data)
    assert source.num_examples(TRAIN) == source.num_examples(EVAL) == 3
    data.train_images = ""
    with pytest.raises(ValueError, match="needs data.train_images"):
        detection_sources.from_config(data)
    with pytest.raises(ValueError, match="TFDS numbers coco/2017's 80 classes 0..79"):
        detection_sources.from_config(ml_collections.ConfigDict(dict(
            source="tfds", tfds_name="coco/2017", class_ids="category_id")))
    with pytest.raises(ValueError, match="coco_json, detection_tfrecord, tfds"):
        detection_sources.from_config(ml_collections.ConfigDict(dict(source="folder")))


def test_make_detection_tfrecords_script(tmp_path, coco):
    result = subprocess.run(
        [sys.executable, "scripts/make_detection_tfrecords.py", f"--eval_annotations={coco[0]}",
         f"--eval_images={coco[1]}", f"--output_dir={tmp_path / 'out'}", "--shards=1"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    assert counts == {"num_classes": 7, "label_offset": 1,
                      "eval": {"written": 3, "skipped_images": 0, "skipped_annotations": 0,
                               "shards": 1}}
    assert (tmp_path / "out/labels.txt").read_text().splitlines() == [
        "unused-1", "unused-2", "cat", "unused-4", "unused-5", "unused-6", "dog"]


def tfds_examples(builder, decoders, read_config):
    """coco/2017 examples of EXPECTED, encoded and decoded by the dataset's own features.
    (TFDS' random mock data cannot make coco: its objects' lengths disagree.)"""
    serialized = [builder.info.features.serialize_example({
        "image": np.asarray(Image.open(io.BytesIO(image_bytes((250, 0, 0), "JPEG")))),
        "image/filename": f"{image_id}.jpg", "image/id": image_id,
        "objects": {"bbox": np.asarray(boxes, np.float32).reshape(-1, 4),
                    "label": np.asarray(classes, np.int64),
                    "is_crowd": np.asarray(crowd, bool), "area": np.arange(len(classes)) + 5,
                    "id": np.arange(len(classes))}})
        for image_id, (boxes, classes, crowd) in EXPECTED.items()]
    dataset = tf.data.Dataset.from_tensor_slices(serialized).map(
        lambda record: builder.info.features.deserialize_example(record, decoders=decoders))
    if read_config and read_config.add_tfds_id:
        dataset = dataset.enumerate().map(
            lambda index, example: {**example, "tfds_id": tf.strings.as_string(index)})
    return dataset


def test_tfds_source_with_mock_coco():
    tfds = pytest.importorskip("tensorflow_datasets")

    def as_dataset(builder, split, decoders=None, read_config=None, shuffle_files=False):
        return tfds_examples(builder, decoders, read_config)

    with tfds.testing.mock_data(as_dataset_fn=as_dataset,
                                policy=tfds.testing.MockPolicy.USE_CODE):
        config = ml_collections.ConfigDict(dict(
            source="tfds", tfds_name="coco/2017", tfds_data_dir=None, tfds_train_split="train",
            tfds_eval_split="validation"))
        source = detection_sources.from_config(config)
        assert isinstance(source, TFDSSource) and source.num_classes == 80
        elements = by_id(source.dataset(EVAL))
        check_expected(elements)
        assert elements[11]["image"][:3] == b"\xff\xd8\xff"  # still encoded (SkipDecoding)
        truth = source.ground_truth(EVAL)
    assert truth["images"][0] == {"id": 11, "height": 30, "width": 40, "file_name": "11.jpg"}
    assert truth["annotations"][1] == {"id": 2, "image_id": 11, "category_id": 1,
                                       "bbox": [0.0, 0.0, 40.0, 30.0], "area": 6.0, "iscrowd": 1}

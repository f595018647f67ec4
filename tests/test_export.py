"""Exports: SavedModel signatures (checked in a fresh process and with saved_model_cli), bad
requests, TF Serving request formats, TFLite, the .keras file, and the predict command."""

import base64
import io
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from efficientnet_tf.train import workdir as workdir_lib
from efficientnet_tf import serving
from efficientnet_tf.tasks.classification import serving as classification_serving
from efficientnet_tf import export, predict
from efficientnet_tf.data import sources
from efficientnet_tf.models import fold
from efficientnet_tf.specs import registry
from efficientnet_tf.train import trainer

from imagedata import photo, write_folder
from trainutil import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A short real run on three photo classes, and its SavedModel."""
    base = tmp_path_factory.mktemp("export")
    root = str(write_folder(base / "images", per_class=16, size=(48, 40)))
    workdir = str(base / "run")
    config = tiny_config(root, **{"train.steps": 30, "train.checkpoint_every_steps": 30})
    config.optimizer.name = "sgd"
    config.optimizer.lr_per_256 = 1.6
    keras.utils.set_random_seed(0)
    trainer.train_and_evaluate(config, workdir)
    export_dir = export.export_workdir(workdir, str(base / "export"))
    model, recorded, _ = workdir_lib.restore_model(workdir)
    return {"root": root, "workdir": workdir, "export": export_dir, "model": model,
            "settings": classification_serving.ServingSettings(
                recorded.task_settings.eval_transform),
            "base": base,
            "eval": sources.ImageFolderSource(root, eval_percent=25).examples("eval")}


def encoded(image, image_format="JPEG", mode=None):
    buffer = io.BytesIO()
    picture = Image.fromarray(image)
    (picture.convert(mode) if mode else picture).save(buffer, format=image_format)
    return buffer.getvalue()


def request_images():
    return {"photo.jpg": encoded(photo("coffee", (60, 45))),
            "gray.png": encoded(photo("astronaut", (50, 50)), "PNG", "L"),
            "frame.gif": encoded(photo("chelsea", (64, 48)), "GIF"),
            "bitmap.bmp": encoded(photo("coffee", (40, 40)), "BMP")}


def keras_probabilities(run_, data_list):
    """What the Keras model (unfolded, EMA weights) gives for the same requests."""
    images = tf.stack([classification_serving.decode_for_serving(
        tf.constant(d), tf.constant(0, tf.int64), run_["settings"]) for d in data_list])
    return images.numpy(), tf.nn.softmax(run_["model"](images, training=False)).numpy()


FRESH_PROCESS = r"""
import json, sys, numpy as np, tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
data = [open(p, "rb").read() for p in sys.argv[3:]]
served = loaded.signatures["serving_default"](image_bytes=tf.constant(data))
images = np.load(sys.argv[2])
as_float = loaded.signatures["predict_images"](images=tf.constant(images, tf.float32))
as_uint8 = loaded.signatures["predict_uint8"](
    images=tf.constant(np.round(images).astype(np.uint8)))
print(json.dumps({"classes": served["classes"].numpy().tolist(),
                  "top": served["probabilities"].numpy().tolist(),
                  "names": [[n.decode() for n in row] for row in served["class_names"].numpy()],
                  "float": as_float["probabilities"].numpy().tolist(),
                  "uint8": as_uint8["probabilities"].numpy().tolist(),
                  "signatures": sorted(loaded.signatures)}))
"""


def test_a_fresh_process_gets_the_keras_models_probabilities(run, tmp_path):
    files = []
    for name, data in request_images().items():
        (tmp_path / name).write_bytes(data)
        files.append(str(tmp_path / name))
    images, expected = keras_probabilities(run, list(request_images().values()))
    np.save(tmp_path / "images.npy", images)
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS, run["export"],
                             str(tmp_path / "images.npy")] + files, capture_output=True,
                            text=True, env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert served["signatures"] == ["predict_images", "predict_uint8", "serving_default"]
    order = np.argsort(-expected, axis=1)[:, :3]
    np.testing.assert_array_equal(served["classes"], order)
    np.testing.assert_allclose(served["top"], np.take_along_axis(expected, order, 1), atol=1e-5)
    names = ["astronaut", "chelsea", "coffee"]
    assert served["names"] == [[names[c] for c in row] for row in order]
    np.testing.assert_allclose(served["float"], expected, atol=1e-5)
    # uint8 images are the float ones rounded: close, not identical.
    np.testing.assert_allclose(served["uint8"], expected, atol=2e-2)


def test_saved_model_cli_runs_both_signatures(run, tmp_path):
    images, expected = keras_probabilities(run, [request_images()["photo.jpg"]])
    np.save(tmp_path / "images.npy", images)
    data = request_images()["photo.jpg"]
    np.save(tmp_path / "bytes.npy", np.array([data], dtype=f"S{len(data)}"))
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    outputs = {}
    for signature, inputs in (("predict_images", f"images={tmp_path / 'images.npy'}"),
                              ("serving_default", f"image_bytes={tmp_path / 'bytes.npy'}")):
        result = subprocess.run(
            [cli, "run", "--dir", run["export"], "--tag_set", "serve", "--signature_def",
             signature, "--inputs", inputs, "--outdir", str(tmp_path / signature)],
            capture_output=True, text=True, env=ENV, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        outputs[signature] = {name[:-4]: np.load(tmp_path / signature / name, allow_pickle=True)
                              for name in os.listdir(tmp_path / signature)}
    np.testing.assert_allclose(outputs["predict_images"]["probabilities"], expected, atol=1e-5)
    assert outputs["serving_default"]["classes"][0, 0] == expected[0].argmax()


def test_the_exported_graph_has_no_batch_norm_and_matches_the_trained_model(run):
    loaded = tf.saved_model.load(run["export"])
    graph = loaded.signatures["predict_images"].graph.as_graph_def()
    op_types = {node.op for node in graph.node}
    for function in graph.library.function:
        op_types |= {node.op for node in function.node_def}
    assert not {op for op in op_types if "BatchNorm" in op}
    assert {"Conv2D", "DepthwiseConv2dNative"} <= op_types
    spec = registry.get("efficientnetv2-test")
    folded = fold.folded_copy(run["model"], spec, 3)
    images = np.random.RandomState(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    # Folding changes float32 rounding only: logits of several hundred agree to ~1e-6 relative.
    np.testing.assert_allclose(folded(images), run["model"](images, training=False),
                               rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("bad, message", [
    (b"", r"image_bytes\[0\] is empty"),
    (b"%PDF-1.4 not an image at all", r"image_bytes\[0\] is not a JPEG, PNG, GIF or BMP image"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 40, r"(?i)jpeg"),
])
def test_bad_requests_are_invalid_argument_and_the_server_goes_on(run, bad, message):
    serve = tf.saved_model.load(run["export"]).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        serve(image_bytes=tf.constant([bad]))
    good = serve(image_bytes=tf.constant([request_images()["photo.jpg"]]))
    assert good["classes"].shape == (1, 3)


def bad_request_mix(count=100):
    """(image bytes, kind) of `count` bad images: truncated JPEG/PNG/GIF/BMP, random bytes, text,
    garbage after valid magic bytes, a huge PNG and empty strings, in a fixed order."""
    rng = np.random.RandomState(0)
    good = list(request_images().values())
    huge = encoded(np.zeros((6000, 8000, 3), np.uint8), "PNG")
    magics = [b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM"]
    makers = {
        "truncated": lambda: (lambda d: d[: rng.randint(len(d) // 3, len(d) - 8)])(
            good[rng.randint(len(good))]),
        "random": lambda: rng.bytes(rng.randint(1, 400)),
        "text": lambda: b"{\"instances\": not an image " + str(rng.randint(1000)).encode(),
        "garbage after magic": lambda: magics[rng.randint(4)] + rng.bytes(rng.randint(30, 300)),
        "huge": lambda: huge,
        "empty": lambda: b"",
    }
    kinds = list(makers)
    return [(makers[kind](), kind) for kind in (kinds[i % len(kinds)] for i in range(count))]


def test_every_bad_image_in_a_batch_is_named_by_its_index(run):
    """100 bad requests, each alone and at a random place among good images: each error is an
    InvalidArgument that names the bad image's index; decoder failures after a valid header
    included. The server answers a good request after all of them."""
    serve = tf.saved_model.load(run["export"]).signatures["serving_default"]
    good = list(request_images().values())
    rng = np.random.RandomState(1)
    for number, (bad, kind) in enumerate(bad_request_mix()):
        batch = [bad]
        if number % 2:  # a mixed batch: the bad image among good ones
            batch = good[: rng.randint(1, 4)]
            batch.insert(rng.randint(len(batch) + 1), bad)
        index = batch.index(bad)
        with pytest.raises(tf.errors.InvalidArgumentError) as error:
            serve(image_bytes=tf.constant(batch))
        assert f"image_bytes[{index}] " in error.value.message, (kind, error.value.message[:300])
    assert serve(image_bytes=tf.constant(good))["classes"].shape == (4, 3)


def test_an_empty_batch_gets_empty_outputs(run):
    serve = tf.saved_model.load(run["export"]).signatures["serving_default"]
    outputs = serve(image_bytes=tf.constant([], tf.string))
    assert outputs["classes"].shape == (0, 3) and outputs["probabilities"].shape == (0, 3)
    assert outputs["class_names"].shape == (0, 3)


def test_a_huge_image_is_refused_before_decoding(run, tmp_path):
    huge = encoded(np.zeros((6000, 8000, 3), np.uint8), "PNG")  # 48 MP, a few kB on the wire
    serve = tf.saved_model.load(run["export"]).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image_bytes\[1\] is 8000 x 6000 pixels; at most 40000000 pixels"):
        serve(image_bytes=tf.constant([request_images()["photo.jpg"], huge]))


def test_a_tf_serving_rest_body_goes_through_the_signature(run):
    """The REST body {"instances": [{"b64": ...}]} as TF Serving handles it: a PredictRequest
    (tensorflow-serving-api), the serving_default signature of the loaded SavedModel on the
    request's tensors, a PredictResponse, the REST reply."""
    servingutil = pytest.importorskip("servingutil", reason="needs tensorflow-serving-api")

    loaded = tf.saved_model.load(run["export"])
    serve = loaded.signatures["serving_default"]
    arguments = serve.structured_input_signature[1]
    assert list(arguments) == ["image_bytes"] and arguments["image_bytes"].dtype == tf.string
    assert arguments["image_bytes"].shape.as_list() == [None]
    data = [request_images()["photo.jpg"], request_images()["gray.png"]]
    body = json.loads(json.dumps({"instances": [{"b64": base64.b64encode(d).decode()}
                                                for d in data]}))
    request = servingutil.rest_to_request(body, "serving_default", list(arguments))
    assert request.inputs["image_bytes"].dtype == tf.string.as_datatype_enum
    reply = json.loads(json.dumps(servingutil.response_to_rest(servingutil.serve(loaded,
                                                                                 request))))
    _, expected = keras_probabilities(run, data)
    assert len(reply["predictions"]) == 2
    for prediction, probabilities in zip(reply["predictions"], expected):
        assert set(prediction) == {"classes", "probabilities", "class_names"}
        assert prediction["classes"][0] == int(np.argmax(probabilities))
        np.testing.assert_allclose(prediction["probabilities"],
                                   np.sort(probabilities)[::-1][:3], atol=1e-4)
        assert prediction["class_names"][0] == ["astronaut", "chelsea", "coffee"][
            prediction["classes"][0]]
    assert serving.read_labels(run["export"]) == ["astronaut", "chelsea", "coffee"]


def test_the_readme_s_tf_serving_block_works_as_written(run, tmp_path):
    """The README's block from photos to TF Serving: the export into a numbered version folder
    (what tensorflow_model_server loads from --model_base_path), and the curl command's JSON
    body, with a photo's base64 where the shell puts it, through TF Serving's conversion."""
    servingutil = pytest.importorskip("servingutil", reason="needs tensorflow-serving-api")
    readme = open(os.path.join(ROOT, "README.md")).read()
    block = readme[readme.index("From photos to a served model"):]
    block = block[block.index("```bash"):block.index("```", block.index("```bash") + 3)]
    export_line = next(line for line in block.splitlines() if "efficientnet-tf export" in line)
    version_dir = export_line.split("--export_dir=")[1].split()[0]
    assert version_dir.split("/")[-1].isdigit()  # runs/mine/serving/1
    assert f"$PWD/{version_dir.rsplit('/', 1)[0]}:/models/mine" in block
    base = tmp_path / "serving"
    export.export_workdir(run["workdir"], str(base / version_dir.split("/")[-1]))
    assert (base / "1" / "saved_model.pb").exists()
    # The body as the shell hands it to curl: \" is ", $(base64 -w0 photo.jpg) the photo's.
    quoted = block.split(' -d "', 1)[1].rsplit('"', 1)[0]
    photo_bytes = request_images()["photo.jpg"]
    body = json.loads(quoted.replace('\\"', '"').replace(
        "$(base64 -w0 photo.jpg)", base64.b64encode(photo_bytes).decode()))
    loaded = tf.saved_model.load(str(base / "1"))
    request = servingutil.rest_to_request(body, "serving_default", ["image_bytes"],
                                          model_name="mine")
    reply = servingutil.response_to_rest(servingutil.serve(loaded, request))
    _, expected = keras_probabilities(run, [photo_bytes])
    (prediction,) = reply["predictions"]
    assert set(prediction) == {"classes", "probabilities", "class_names"}
    assert prediction["classes"][0] == int(np.argmax(expected[0]))


def test_export_to_a_ram_path(run):
    """ram:// is a TensorFlow filesystem that open() and os.path cannot see: gs:// stands in."""
    path = export.export_workdir(run["workdir"], "ram://exports/tiny")
    assert tf.io.gfile.exists("ram://exports/tiny/saved_model.pb")
    serve = tf.saved_model.load(path).signatures["serving_default"]
    assert serve(image_bytes=tf.constant([request_images()["bitmap.bmp"]]))["classes"].shape == (
        1, 3)
    assert serving.read_labels(path) == ["astronaut", "chelsea", "coffee"]


def test_tflite_float_dynamic_and_int8_agree_with_the_saved_model(run):
    eval_bytes = [tf.io.gfile.GFile(p, "rb").read() for p, _ in run["eval"]]
    images, _ = keras_probabilities(run, eval_bytes)
    saved = tf.saved_model.load(run["export"]).signatures["predict_images"]
    reference = saved(images=tf.constant(images))["probabilities"].numpy()
    agreement, worst, mean, ahead = {}, {}, {}, {}
    float_top1 = reference.argmax(1)
    for quantize in ("none", "dynamic", "int8"):
        calibration = images if quantize == "int8" else None
        flatbuffer = serving.tflite_from_saved_model(run["export"], quantize, calibration)
        _, probabilities = serving.run_tflite(flatbuffer, images)
        # Quantized probabilities tie (int8 has 256 levels): a class within 0.02 of the best
        # counts as a top-1. `ahead`: classes clearly above the float model's top-1.
        own = probabilities[np.arange(len(images)), float_top1]
        agreement[quantize] = float((own >= probabilities.max(1) - 0.02).mean())
        ahead[quantize] = int((probabilities > own[:, None] + 0.02).sum(1).max())
        worst[quantize] = float(np.abs(probabilities - reference).max())
        mean[quantize] = float(np.abs(probabilities - reference).mean())
    print("tflite agreement", agreement, "worst", worst, "mean", mean, "ahead", ahead)
    assert agreement["none"] == 1.0 and worst["none"] < 1e-4
    # Stated tolerances for the quantized models (README): top-1 agreement and probability error.
    assert agreement["dynamic"] >= 0.9 and worst["dynamic"] < 0.1
    # int8 flips near-ties only: the float model's top-1 stays within its top 2 on every image.
    assert agreement["int8"] >= 0.75 and ahead["int8"] <= 1


def test_tflite_command_writes_a_file(run, tmp_path):
    path = export.export_workdir(run["workdir"], str(tmp_path / "model.tflite"), "tflite",
                                 quantize="int8", calibration_count=8)
    interpreter = tf.lite.Interpreter(model_path=path)
    assert "predict_images" in interpreter.get_signature_list()


def test_keras_format(run, tmp_path):
    path = export.export_workdir(run["workdir"], str(tmp_path / "model.keras"), "keras")
    loaded = keras.models.load_model(path)
    images = np.random.RandomState(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded(images), run["model"](images, training=False), atol=1e-6)
    with pytest.raises(ValueError, match="must end in .keras"):
        serving.save_keras(run["model"], str(tmp_path / "model.h5"))


def test_predict_command_reports_bad_files_and_goes_on(run, tmp_path):
    good, other = str(tmp_path / "good.jpg"), str(tmp_path / "other.png")
    (tmp_path / "good.jpg").write_bytes(request_images()["photo.jpg"])
    (tmp_path / "other.png").write_bytes(request_images()["gray.png"])
    (tmp_path / "broken.jpg").write_bytes(b"definitely not an image")
    (tmp_path / "cut.png").write_bytes(request_images()["gray.png"][:300])
    files = [good, str(tmp_path / "broken.jpg"), str(tmp_path / "missing.jpg"), other,
             str(tmp_path / "cut.png")]
    for model in (run["export"], run["workdir"]):
        result = subprocess.run([sys.executable, "-m", "efficientnet_tf.main", "predict",
                                 f"--export_dir={model}", "--json"] + files, cwd=ROOT, env=ENV,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        output = json.loads(result.stdout.strip().splitlines()[-1])
        by_file = {p["file"]: p for p in output["predictions"]}
        assert [p["file"] for p in output["predictions"]] == files
        assert len(by_file[good]["top"]) == 3 and by_file[good]["error"] is None
        assert by_file[good]["top"][0]["label"] in ("astronaut", "chelsea", "coffee")
        assert "is not a JPEG, PNG, GIF or BMP image" in by_file[files[1]]["error"]
        assert by_file[files[2]]["error"]  # the missing file
        assert by_file[other]["top"]
        assert by_file[files[4]]["error"] == ("image_bytes[0] does not decode: its PNG data is "
                                              "truncated or corrupt")
    text = predict.format_text(*predict.predict_files(run["export"], [good, files[1]]))
    assert text.splitlines()[0] == good and text.splitlines()[1].strip().startswith("1. ")
    assert text.splitlines()[-1].startswith(f"{files[1]}: error: ")


def test_predict_takes_a_folder_and_says_what_a_model_file_needs(run, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "b.jpg").write_bytes(request_images()["photo.jpg"])
    (folder / "a.PNG").write_bytes(request_images()["gray.png"])
    (folder / "notes.txt").write_text("not an image")
    _, results = predict.predict_files(run["export"], [str(folder)])
    assert [r.file for r in results] == [f"{folder}/a.PNG", f"{folder}/b.jpg"]
    assert all(r.error is None and r.result["top"] for r in results)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="folder .*empty holds no images"):
        predict.predict_files(run["export"], [str(tmp_path / "empty")])
    for name, hint in (("model.keras", "keras.models.load_model"),
                       ("model.tflite", "tf.lite.Interpreter")):
        with pytest.raises(ValueError, match=f"predict --export_dir=.*{name}: .*{hint}"):
            predict.predict_files(str(tmp_path / name), [str(folder)])

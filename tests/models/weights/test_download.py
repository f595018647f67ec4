"""Pretrained weights downloaded on first use (models/weights/download.py), against an HTTP
server on 127.0.0.1 that the test starts and the mirror variable pointing at it: the first use
downloads and unpacks, the second reads the cache, a cut transfer leaves nothing that looks
whole, an unreachable host is one line naming the URL and where to put the file."""

import os
import tarfile

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import efficientnet_tf
import officialdata as od
import weightserver
from efficientnet_tf import predict
from efficientnet_tf.models import efficientnet
from efficientnet_tf.models.weights import catalog, download

V2_FT = "/cloud-tpu-checkpoints/efficientnet/v2/efficientnetv2-b0-21k-ft1k.tgz"
D0_COCO = "/cloud-tpu-checkpoints/efficientdet/coco2/efficientdet-d0.tar.gz"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFICIENTNET_TF_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def publish(root, url_path, variant, layout="plain", slots=()):
    """A look-alike of `variant` packed as the release at `url_path` under `root`."""
    folder = root / "build" / variant
    od.write_checkpoint(od.checkpoint_values(od.names(variant), layout, slots),
                        str(folder / "model"))
    target = root / "mirror" / url_path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    return od.pack(str(folder), str(target))


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def test_a_name_downloads_once_then_reads_the_cache(tmp_path, cache, monkeypatch):
    publish(tmp_path, V2_FT, "efficientnetv2-b0")
    assert catalog.find("efficientnetv2-b0/imagenet21k-ft1k").url.endswith(V2_FT)
    with weightserver.serve(tmp_path / "mirror") as (url, server):
        monkeypatch.setenv("EFFICIENTNET_TF_WEIGHTS_MIRROR", url)
        first = efficientnet_tf.create_model("efficientnetv2-b0",
                                             weights="efficientnetv2-b0/imagenet21k-ft1k")
        assert server.requests == [V2_FT]
        again = efficientnet_tf.create_model("efficientnetv2-b0", weights="imagenet21k-ft1k")
        assert server.requests == [V2_FT]  # the cache served the second
    archive = cache / "storage.googleapis.com" / V2_FT.lstrip("/")
    assert archive.is_file()
    unpacked = archive.parent / "efficientnetv2-b0-21k-ft1k"
    folder = (unpacked / "unpacked").read_text()  # the marker names the folder of the files
    assert files_under(unpacked) == sorted(["unpacked"] + [
        f"{folder}/efficientnetv2-b0/{name}" for name in
        ("checkpoint", "model.data-00000-of-00001", "model.index")])
    assert not [p for p in cache.rglob("*") if ".part-" in p.name]
    # The name set the scaling the checkpoint was trained with: (x / 255 - 0.5) / 0.5.
    assert efficientnet.input_scaling_of(first) == "sym255"
    images = od.image(64, 64)
    np.testing.assert_array_equal(first(images), again(images))
    direct = efficientnet_tf.create_model("efficientnetv2-b0", input_scaling="sym255",
                                          weights=str(unpacked))
    np.testing.assert_array_equal(first(images), direct(images))


def test_a_cut_transfer_is_not_cached_and_an_unreachable_host_is_one_line(
        tmp_path, cache, monkeypatch):
    publish(tmp_path, V2_FT, "efficientnetv2-b0")
    destination = cache / "storage.googleapis.com" / V2_FT.lstrip("/")
    with weightserver.serve(tmp_path / "mirror", truncated={V2_FT}) as (url, server):
        monkeypatch.setenv("EFFICIENTNET_TF_WEIGHTS_MIRROR", url)
        with pytest.raises(download.DownloadError, match=f"cannot download {url}{V2_FT}: "
                           r"the transfer ended after \d+ of \d+ bytes; without a network, "
                           f"fetch that file where there is one and put it at {destination}"):
            efficientnet_tf.create_model("efficientnetv2-b0",
                                         weights="efficientnetv2-b0/imagenet21k-ft1k")
    assert not destination.exists() and files_under(cache) == []
    with weightserver.refused_port() as port, \
            pytest.raises(download.DownloadError) as failure:
        monkeypatch.setenv("EFFICIENTNET_TF_WEIGHTS_MIRROR", f"http://127.0.0.1:{port}")
        efficientnet_tf.create_model("efficientnet-b3", weights="efficientnet-b3/advprop")
    message = str(failure.value)
    assert "\n" not in message and "/efficientnet/advprop/efficientnet-b3.tar.gz" in message
    assert "Connection refused" in message and str(cache) in message
    assert failure.value.EXIT_CODE == 1  # a runtime failure for the CLI, not a usage error


def test_a_bucket_source_and_cache_through_tf_io_gfile(tmp_path, monkeypatch):
    """A gs:// mirror and cache, proved on ram:// (no open() or os.path reaches it)."""
    archive = publish(tmp_path, V2_FT, "efficientnetv2-b0")
    tf.io.gfile.makedirs("ram://" + V2_FT.rsplit("/", 1)[0].lstrip("/"))
    tf.io.gfile.copy(archive, "ram://" + V2_FT.lstrip("/"), overwrite=True)
    monkeypatch.setenv("EFFICIENTNET_TF_WEIGHTS_MIRROR", "ram://")  # as gs:// reads buckets
    monkeypatch.setenv("EFFICIENTNET_TF_CACHE", "ram://test_download_cache")
    model = efficientnet_tf.create_model("efficientnetv2-b0", weights="imagenet21k-ft1k")
    unpacked = "ram://test_download_cache/storage.googleapis.com" + V2_FT[: -len(".tgz")]
    (index,) = tf.io.gfile.glob(f"{unpacked}/files-*/efficientnetv2-b0/model.index")
    assert tf.io.gfile.GFile(f"{unpacked}/unpacked").read() in index
    local = efficientnet_tf.create_model("efficientnetv2-b0", input_scaling="sym255",
                                         weights=str(tmp_path / "build" / "efficientnetv2-b0"))
    np.testing.assert_array_equal(model(od.image(64, 64)), local(od.image(64, 64)))


def test_an_archive_reaching_outside_its_folder_is_refused(tmp_path, cache):
    evil = tmp_path / "evil.tar.gz"
    (tmp_path / "payload").write_text("x")
    with tarfile.open(evil, "w:gz") as archive:
        archive.add(tmp_path / "payload", arcname="../../escaped")
    with pytest.raises(ValueError, match="would be written outside its folder"):
        download.unpack(str(evil))
    assert not (cache.parent / "escaped").exists() and not any(cache.rglob("escaped"))


def test_a_coco_detector_predicts_cocos_names(tmp_path, cache, monkeypatch):
    """predict --weights=efficientdet-d0/coco: boxes labelled with COCO's category names."""
    publish(tmp_path, D0_COCO, "efficientdet-d0", "ema", ("Momentum",))
    photo = str(tmp_path / "photo.png")
    Image.fromarray(od.image(300, 200)[0].astype(np.uint8)).save(photo)
    with weightserver.serve(tmp_path / "mirror") as (url, _):
        monkeypatch.setenv("EFFICIENTNET_TF_WEIGHTS_MIRROR", url)
        shown, (result,) = predict.predict_files(None, [photo], min_score=0.0,
                                                weights=("efficientdet-d0/coco", None, None))
    assert shown.__name__ == "efficientnet_tf.tasks.detection.serving" and result.error is None
    labels = {d["label"] for d in result.result["detections"]}
    names = set(efficientnet_tf.models.weights.COCO_NAMES.values())
    assert labels and labels <= names | {f"unused-{i}" for i in range(1, 91)}
    assert any(label in names for label in labels)
    assert os.path.isdir(cache / "storage.googleapis.com" / D0_COCO.lstrip("/")[: -len(".tar.gz")])

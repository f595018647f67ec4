"""Weights downloaded on first use into a cache, as keras.applications and timm do.

The cache is $EFFICIENTNET_TF_CACHE, else $KERAS_HOME/efficientnet_tf (~/.keras/efficientnet_tf),
any tf.io.gfile path (a bucket works). A file is kept under its URL's host and path
(storage.googleapis.com/cloud-tpu-checkpoints/efficientnet/ckpts/efficientnet-b0.tar.gz), so two
releases' efficientnet-b0.tar.gz never meet; an archive is unpacked once, beside itself, into a
folder of its name. A download is written under a temporary name and renamed when complete; an
archive's files count once the marker file that names their folder, written last, is there: a
killed download or unpacking never leaves a file or folder that looks whole.

Sources: https:// and http:// (urllib), gs:// and any other tf.io.gfile path.
$EFFICIENTNET_TF_WEIGHTS_MIRROR replaces `https://storage.googleapis.com/` in every URL (e.g.
`gs://`, the same public buckets through the GCS client; an internal HTTP mirror; a folder),
while the cache keeps the original names.
"""

import http.client
import os
import secrets
import tarfile
import urllib.error
import zlib
import urllib.request

import tensorflow as tf
from absl import logging
from tqdm import tqdm

GOOGLE_STORAGE = "https://storage.googleapis.com/"
CHUNK = 1 << 20
TIMEOUT_SECONDS = 60
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
UNPACKED_MARKER = "unpacked"  # names the folder of an archive's files, once all are there


class DownloadError(ValueError):
    """A download or unpacking that failed (a runtime failure: exit code 1)."""

    EXIT_CODE = 1


def cache_dir():
    """Where downloads are kept ($EFFICIENTNET_TF_CACHE, else $KERAS_HOME/efficientnet_tf)."""
    if os.environ.get("EFFICIENTNET_TF_CACHE"):
        return os.environ["EFFICIENTNET_TF_CACHE"].rstrip("/")
    keras_home = (os.environ.get("KERAS_HOME")
                  or os.path.join(os.path.expanduser("~"), ".keras"))  # local: the user's home
    return f"{keras_home.rstrip('/')}/efficientnet_tf"


def cache_path(url):
    """The cache's path of the file at `url`: its host and path under cache_dir()."""
    scheme, _, rest = url.partition("://")
    if not rest or not scheme:
        raise ValueError(f"{url!r} is not a URL (https://, http://, gs://, ...)")
    parts = [part for part in rest.split("?", 1)[0].split("/") if part not in ("", ".", "..")]
    return "/".join([cache_dir()] + parts)


def is_url(value):
    """Whether `value` names a file by HTTP(S), which only a download reaches (gs:// and the
    other tf.io.gfile schemes are paths)."""
    return value.startswith(("http://", "https://"))


def mirrored(url):
    """`url` as $EFFICIENTNET_TF_WEIGHTS_MIRROR says (unchanged without it): `gs://` reads the
    same buckets through the GCS client."""
    mirror = os.environ.get("EFFICIENTNET_TF_WEIGHTS_MIRROR")
    if mirror and url.startswith(GOOGLE_STORAGE):
        return (mirror if mirror.endswith("/") else mirror + "/") + url[len(GOOGLE_STORAGE):]
    return url


def fetch(url, destination=None):
    """The local (cache) path of the file at `url`, downloaded there first if it is not yet."""
    destination = destination or cache_path(url)
    if tf.io.gfile.exists(destination):
        return destination
    source = mirrored(url)
    parent = destination.rsplit("/", 1)[0]
    tf.io.gfile.makedirs(parent)
    partial = f"{destination}.part-{secrets.token_hex(4)}"
    logging.info("downloading %s to %s", source, destination)
    try:
        if is_url(source):
            _copy_http(source, partial)
        else:
            _copy_gfile(source, partial)
        tf.io.gfile.rename(partial, destination, overwrite=True)
    except (OSError, tf.errors.OpError, urllib.error.URLError, http.client.HTTPException,
            ValueError) as error:
        if tf.io.gfile.exists(partial):
            tf.io.gfile.remove(partial)
        reason = getattr(error, "reason", None) or getattr(error, "message", None) or error
        raise DownloadError(
            f"cannot download {source}: {str(reason).splitlines()[0]}; without a network, "
            f"fetch that file where there is one and put it at {destination} (or pass its "
            "path as the weights)") from error
    return destination


def _progress(total, name):
    # tqdm shows a bar on a terminal and stays silent in logs (disable=None: not a TTY).
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                disable=None, leave=False)


def _copy_http(url, path):
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
        expected = response.headers.get("Content-Length")
        expected = int(expected) if expected is not None else None
        received = 0
        with tf.io.gfile.GFile(path, "wb") as stream, _progress(
                expected, url.rsplit("/", 1)[-1]) as bar:
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                stream.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if expected is not None and received != expected:
        raise ValueError(f"the transfer ended after {received} of {expected} bytes")


def _copy_gfile(source, path):
    if not tf.io.gfile.exists(source):
        raise ValueError(f"{source} does not exist")
    total = tf.io.gfile.stat(source).length
    with tf.io.gfile.GFile(source, "rb") as reader, tf.io.gfile.GFile(path, "wb") as writer, \
            _progress(total, source.rsplit("/", 1)[-1]) as bar:
        while True:
            chunk = reader.read(CHUNK)
            if not chunk:
                break
            writer.write(chunk)
            bar.update(len(chunk))


def is_archive(path):
    return path.endswith(ARCHIVE_SUFFIXES)


def unpacked_dir(archive):
    """Where an archive is unpacked: beside it in the cache; an archive elsewhere (a user's
    file, a bucket) into the cache, under its own path."""
    suffix = next((s for s in ARCHIVE_SUFFIXES if archive.endswith(s)), None)
    if suffix is None:
        raise ValueError(f"{archive!r} is not a .tar.gz, .tgz or .tar archive")
    if not archive.startswith(cache_dir() + "/"):
        if "://" in archive:
            archive = cache_path(archive)
        else:
            absolute = os.path.abspath(archive)  # local: a path without a scheme is local
            archive = "/".join([cache_dir(), "local"] + [p for p in absolute.split("/") if p])
    return archive[: -len(suffix)]


def unpack(archive, directory=None):
    """The folder holding the files of `archive` (a tar, gzipped or not, on any filesystem),
    unpacked first if it is not yet. The files go to a folder of their own inside `directory`
    and a marker file, written last, names it: a killed unpacking leaves no marker (the next
    one starts afresh), and two machines unpacking into one shared cache (a bucket) each
    finish their own (a folder cannot be renamed on every filesystem). Members that would land
    outside the folder are refused."""
    directory = (directory or unpacked_dir(archive)).rstrip("/")
    marker = f"{directory}/{UNPACKED_MARKER}"
    if tf.io.gfile.exists(marker):
        with tf.io.gfile.GFile(marker) as stream:
            named = f"{directory}/{stream.read().strip()}"
        if tf.io.gfile.isdir(named):
            return named
    name = f"files-{secrets.token_hex(4)}"
    files = f"{directory}/{name}"
    try:
        with tf.io.gfile.GFile(archive, "rb") as stream, \
                tarfile.open(fileobj=stream, mode="r:*") as tar:  # local: reads the stream
            for member in tar:
                _extract(tar, member, files, archive)
        partial = f"{marker}.part-{secrets.token_hex(4)}"
        with tf.io.gfile.GFile(partial, "w") as stream:
            stream.write(name)
        tf.io.gfile.rename(partial, marker, overwrite=True)
    except (tarfile.TarError, EOFError, zlib.error, OSError, tf.errors.OpError) as error:
        _remove_tree(files)
        raise DownloadError(f"cannot unpack {archive}: {error}; it is truncated or not a tar "
                            "archive: delete it to download it again") from error
    return files


def _remove_tree(path):
    try:
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
    except tf.errors.NotFoundError:  # a prefix, not a folder (object stores)
        pass


def _extract(tar, member, root, archive):
    parts = member.name.replace("\\", "/").split("/")
    if member.name.startswith("/") or ".." in parts:
        raise DownloadError(f"{archive}: member {member.name!r} would be written outside "
                            "its folder; refusing the archive")
    target = "/".join([root] + [p for p in parts if p not in ("", ".")])
    if member.isdir():
        tf.io.gfile.makedirs(target)
    elif member.isfile():
        tf.io.gfile.makedirs(target.rsplit("/", 1)[0])
        with tar.extractfile(member) as source, tf.io.gfile.GFile(target, "wb") as stream:
            while True:
                chunk = source.read(CHUNK)
                if not chunk:
                    break
                stream.write(chunk)

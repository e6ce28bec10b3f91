"""Pretrained-weights plumbing: check the ``weights=`` argument, turn offline downloads into clear errors.

Both zoo libraries fetch ImageNet weights through ``keras.utils.get_file``,
which looks in the Keras cache first and otherwise downloads. Offline, the
download raises a bare ``Exception('URL fetch failure on <url>: ...')`` deep
inside the library; :func:`weights_download_guard` turns that into a
:class:`WeightsUnavailableError` that says which file to put where.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mslesion.models.errors import WeightsUnavailableError

__all__ = ["check_weights", "is_pretrained", "keras_cache_dir", "weights_download_guard"]

_URL_FETCH = re.compile(r"URL fetch failure on (?P<url>\S+?):? ")
#: Seconds one socket operation may block while weights download; a firewall
#: that drops packets would otherwise hang the build forever.
SOCKET_TIMEOUT_S = 60.0


def keras_cache_dir() -> Path:
    """The folder where ``keras.utils.get_file`` caches model weights.

    ``$KERAS_HOME/models`` when ``KERAS_HOME`` is set, else ``~/.keras/models``;
    like Keras, falls back to ``/tmp/.keras/models`` when the home is read-only.
    """
    home = Path(os.path.expanduser(os.environ.get("KERAS_HOME", os.path.join("~", ".keras"))))
    probe = home if home.exists() else home.parent
    if not os.access(probe, os.W_OK):
        home = Path("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()) / ".keras"
    return home / "models"


def is_pretrained(weights) -> bool:
    """True for ``"imagenet"`` or a file path, False for ``None`` (random init)."""
    return weights is not None


def check_weights(weights) -> str | None:
    """Validate ``weights``: ``None``, ``"imagenet"`` or an existing file; return it as str.

    Raises:
        WeightsUnavailableError: a path that does not exist.
        ValueError: any other value.
    """
    if weights is None or weights == "imagenet":
        return weights
    if isinstance(weights, (str, os.PathLike)):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(
                f"weights file not found: {path}. Pass weights=None (random), 'imagenet' (download "
                "or Keras cache) or the path of an existing notop .h5 file.",
                file_name=path.name,
                cache_dir=str(keras_cache_dir()),
            )
        return str(path)
    raise ValueError(f"weights must be None, 'imagenet' or a file path; got {weights!r}")


def _offline_error(message: str, what: str) -> WeightsUnavailableError:
    match = _URL_FETCH.search(message)
    url = match.group("url") if match else None
    file_name = url.rsplit("/", 1)[-1] if url else None
    cache = keras_cache_dir()
    shown = file_name or "<weights file>.h5"
    return WeightsUnavailableError(
        f"cannot download the ImageNet weights for {what} (no internet?).\n"
        f"  URL: {url}\n"
        f"  expected file: {shown}\n"
        f"Fix: copy {shown} into the Keras cache {cache}/ (set KERAS_HOME to move the cache: "
        f"$KERAS_HOME/models), or pass the local file: weights=\"/path/{shown}\"; "
        "or use weights=None for random initialisation.",
        url=url,
        file_name=file_name,
        cache_dir=str(cache),
    )


@contextlib.contextmanager
def weights_download_guard(what: str) -> Iterator[None]:
    """Run a model build; a failed weights download becomes :class:`WeightsUnavailableError`.

    Also bounds each socket operation to :data:`SOCKET_TIMEOUT_S` seconds while
    inside (only when no default timeout was set), so a silent network fails
    instead of hanging. The library traceback is dropped (``raise ... from None``).

    Args:
        what: names the model in the message, e.g. ``"kuc.unet backbone VGG16"``.
    """
    previous = socket.getdefaulttimeout()
    if previous is None:
        socket.setdefaulttimeout(SOCKET_TIMEOUT_S)
    failure = None
    try:
        yield
    except Exception as exc:  # get_file raises a bare Exception
        if "URL fetch failure" not in str(exc):
            raise
        failure = str(exc)
    finally:
        if previous is None:
            socket.setdefaulttimeout(None)
    if failure is not None:
        raise _offline_error(failure, what) from None

"""Fetch registered datasets into the data home: streamed, resumable, retried and verified.

Every file takes the same path whatever its source (registry URL, mirror, local folder):
bytes stream into `<raw>/<file>.part`, its size and sha256 are checked, and only then is the
`.part` renamed onto the final name. A final name therefore only ever holds bytes that were
verified when they arrived; an interrupted transfer leaves a `.part` that the next run resumes.
"""

from __future__ import annotations

import errno
import http.client
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.filesize import decimal
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.progress import TransferSpeedColumn

from mmlbench import console
from mmlbench.data.registry import DatasetSpec, RemoteFile
from mmlbench.errors import MMLBenchError
from mmlbench.fsutil import sha256_file
from mmlbench.paths import raw_dir

MIRROR_ENV = "MMLBENCH_MIRROR"
ABSENT, VERIFIED, PARTIAL, CORRUPT = "absent", "verified", "partial", "corrupt"

# 256 KiB: large enough for full disk/network throughput, small enough for a smooth bar.
_CHUNK = 1 << 18


class _Transient(Exception):
    """A failure another attempt may not hit: refused or dropped connection, HTTP 5xx/429."""


@dataclass(frozen=True)
class _Settings:
    """What every file of one download run shares."""

    retries: int
    backoff: float
    timeout: float
    quiet: bool
    progress: Progress  # disabled (draws nothing) unless a person watches stderr


def part_path(path: Path) -> Path:
    """Where the bytes of `path` accumulate until they are verified."""
    return path.with_name(path.name + ".part")


def mismatch(file: RemoteFile, path: Path) -> tuple[str, str] | None:
    """How the bytes at `path` differ from the registered file, as (kind, detail); None if they match."""
    size = path.stat().st_size
    if size != file.size:
        truncated = " (truncated)" if size < file.size else ""
        return "size mismatch", f"expected {file.size} bytes, got {size}{truncated}"
    digest = sha256_file(path)
    if digest != file.sha256:
        return "checksum mismatch", f"expected {file.sha256}, got {digest}"
    return None


def file_status(file: RemoteFile, raw: Path) -> str:
    """absent, verified, partial (only a `.part`) or corrupt, for one file in `raw`."""
    path = raw / file.name
    if path.is_file():
        return CORRUPT if mismatch(file, path) else VERIFIED
    return PARTIAL if part_path(path).exists() else ABSENT


def dataset_status(spec: DatasetSpec, data_dir: Path | None = None) -> str:
    """absent, verified (every file right), corrupt (any file wrong) or partial (anything between)."""
    statuses = {file_status(file, raw_dir(spec.name, data_dir)) for file in spec.files}
    if CORRUPT in statuses:
        return CORRUPT
    if len(statuses) == 1:
        return statuses.pop()  # all verified or all absent
    return PARTIAL


def resolve_source(source: str | None = None) -> str | Path | None:
    """`source`, else $MMLBENCH_MIRROR: a mirror base URL or a local folder; None: registry URLs."""
    source = source or os.environ.get(MIRROR_ENV) or None
    if source is None:
        return None
    if urllib.parse.urlsplit(source).scheme in ("http", "https"):
        return source.rstrip("/")
    if "://" in source:
        raise MMLBenchError(f"unsupported source '{source}': give an http(s) mirror URL or a local folder")
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise MMLBenchError(
            f"source folder {folder} does not exist "
            "(give an http(s) mirror URL or a folder laid out as <folder>/<dataset>/<file>)"
        )
    return folder


def _origin(spec: DatasetSpec, file: RemoteFile, source: str | Path | None) -> str | Path:
    if source is None:
        return file.url
    if isinstance(source, Path):
        return source / spec.name / file.name
    return f"{source}/{urllib.parse.quote(spec.name)}/{urllib.parse.quote(file.name)}"


def download_dataset(
    spec: DatasetSpec,
    data_dir: Path | None = None,
    source: str | None = None,
    force: bool = False,
    retries: int = 3,
    backoff: float = 0.5,
    quiet: bool = False,
    timeout: float = 30.0,
) -> list[Path]:
    """Fetch and verify every file of `spec` into its raw folder; return the final paths.

    `source` is a mirror base URL or a local folder (None: $MMLBENCH_MIRROR, else the registry
    URLs). Verified files are skipped unless `force`. A transient failure is retried `retries`
    times, waiting `backoff` seconds, then twice as long after each further failure. `timeout`
    bounds each connect and each read, in seconds.
    """
    origin_base = resolve_source(source)
    raw = raw_dir(spec.name, data_dir)
    raw.mkdir(parents=True, exist_ok=True)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    bars = Progress(*columns, TimeRemainingColumn(), console=console.err, disable=not console.show_progress(quiet))
    with bars as progress:
        settings = _Settings(retries, backoff, timeout, quiet, progress)
        paths = []
        for file in spec.files:
            target = raw / file.name
            _ensure(spec, file, target, _origin(spec, file, origin_base), force, settings)
            paths.append(target)
    _say(f"{spec.name}: verified, {len(paths)} files ({decimal(spec.size)}) in {raw}", quiet)
    return paths


def _ensure(
    spec: DatasetSpec, file: RemoteFile, target: Path, origin: str | Path, force: bool, settings: _Settings
) -> None:
    """Leave the verified bytes of `file` at `target`, fetching them from `origin` unless already there."""
    label = f"{spec.name}/{file.name}"
    part = part_path(target)
    if force:
        part.unlink(missing_ok=True)  # --force means: trust nothing already on disk
    elif target.is_file():
        problem = mismatch(file, target)
        if problem is None:
            part.unlink(missing_ok=True)  # left over from an abandoned --force
            _say(f"{label}: already verified", settings.quiet)
            return
        kind, detail = problem
        console.warn(f"{target} is corrupt ({kind}: {detail}); fetching it again")
    task = settings.progress.add_task(label, total=file.size)
    if isinstance(origin, Path):
        _copy_local(origin, part, label, task, settings)
    else:
        _fetch_http(origin, part, file.size, label, task, settings)
    problem = mismatch(file, part)
    if problem:
        part.unlink()
        kind, detail = problem
        raise MMLBenchError(f"{kind} for {label} from {origin}: {detail}; the corrupt download was deleted")
    os.replace(part, target)
    _say(f"{label}: {decimal(file.size)}, sha256 verified", settings.quiet)


def _copy_local(origin: Path, part: Path, label: str, task: TaskID, settings: _Settings) -> None:
    if not origin.is_file():
        raise MMLBenchError(f"{label} is missing from the local source: {origin} does not exist")
    with open(origin, "rb") as src:
        _write(part, iter(lambda: src.read(_CHUNK), b""), False, task, settings)


def _fetch_http(url: str, part: Path, size: int, label: str, task: TaskID, settings: _Settings) -> None:
    """Download with retries and exponential backoff; 4xx other than 429 fail at once."""
    for attempt in range(settings.retries + 1):
        try:
            _http_attempt(url, part, size, task, settings)
            return
        except _Transient as exc:
            failure = exc
            if attempt < settings.retries:
                delay = settings.backoff * 2**attempt
                console.warn(f"{label}: {exc}; retry {attempt + 1} of {settings.retries} in {delay:.1f}s")
                time.sleep(delay)
    raise MMLBenchError(f"{failure} after {settings.retries} retries")


def _http_attempt(url: str, part: Path, size: int, task: TaskID, settings: _Settings) -> None:
    """One request, resuming an existing `.part` with a Range header."""
    offset = part.stat().st_size if part.exists() else 0
    if offset > size:  # longer than the file, so not a prefix of it
        part.unlink()
        offset = 0
    if offset == size:
        return  # complete from an earlier run; verification decides
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=settings.timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:  # the server refuses our resume point: start over
            part.unlink()
            return _http_attempt(url, part, size, task, settings)
        message = f"HTTP {exc.code} {exc.reason} for {url}"
        if exc.code >= 500 or exc.code == 429:
            raise _Transient(message) from None
        raise MMLBenchError(message) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Transient(f"cannot reach {_host(url)} ({_reason(exc)})") from None
    with response:
        resumed = response.status == 206
        if resumed and _range_start(response) != offset:
            part.unlink(missing_ok=True)  # the next attempt starts from zero
            raise _Transient(f"{url} answered the resume from byte {offset} with another range")
        # A 200 answer to a Range request is the whole file: it replaces the .part.
        _write(part, _response_chunks(response, url), resumed, task, settings)


def _response_chunks(response: http.client.HTTPResponse, url: str) -> Iterator[bytes]:
    """The body in chunks; any network failure, or a body shorter than announced, is transient."""
    while True:
        try:
            chunk = response.read(_CHUNK)
        except (OSError, http.client.HTTPException) as exc:
            raise _Transient(f"lost connection to {_host(url)} ({_reason(exc)})") from None
        if not chunk:
            break
        yield chunk
    # http.client returns b"" when the server closes early; what it still expected is here.
    if response.length:
        raise _Transient(f"connection to {_host(url)} closed with {response.length} bytes still to come")


def _write(part: Path, chunks: Iterable[bytes], append: bool, task: TaskID, settings: _Settings) -> None:
    """Stream `chunks` into `part` (after its bytes if `append`) and fsync it.

    Bytes written before a failure stay in `part` for the next attempt to resume.
    """
    try:
        with open(part, "ab" if append else "wb") as sink:
            settings.progress.update(task, completed=sink.tell())
            for chunk in chunks:
                sink.write(chunk)
                settings.progress.advance(task, len(chunk))
            sink.flush()
            os.fsync(sink.fileno())
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise MMLBenchError(f"disk full while writing {part}; free some space and rerun to resume") from None
        raise


def _range_start(response: http.client.HTTPResponse) -> int | None:
    """The first byte of a 206 answer, from `Content-Range: bytes START-END/TOTAL`."""
    try:
        return int(response.headers.get("Content-Range", "").split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _host(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


_REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (http.client.RemoteDisconnected, "server closed the connection"),
    (ConnectionRefusedError, "connection refused"),
    (ConnectionResetError, "connection reset"),
    (TimeoutError, "timed out"),
    (socket.gaierror, "host name not resolved"),
    (http.client.IncompleteRead, "incomplete read"),
)


def _reason(exc: BaseException) -> str:
    """A network failure in a few words, e.g. 'connection refused'."""
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    for kind, words in _REASONS:
        if isinstance(exc, kind):
            return words
    return str(exc) or type(exc).__name__


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        console.info(message)

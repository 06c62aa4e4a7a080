"""Input messages → validated jobs: the service's security boundary for what a message may make a worker read.

Two forms, told apart by the ``content-type`` header:

* ``application/json``: ``{"clip_id", "stream_id", "uri", "metadata"?}``. ``file://`` URIs must resolve (symlinks
  followed) inside ``service.allowed_roots`` and may not contain ``..``; ``http(s)://`` URIs need
  ``video.allow_urls`` and a host in ``service.allowed_hosts``. Anything else is ``uri_not_allowed``.
* ``video/*`` or ``application/octet-stream``: the value is a self-contained segment (mp4 / fMP4 / MPEG-TS / mkv);
  ``clip_id`` and ``stream_id`` come from headers (``stream_id`` falls back to the message key).

Every rejection is a ``VideoError`` with its contract code, so the caller turns it into an error record and moves on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stream_iqa.settings import Settings
from stream_iqa.video.errors import InvalidMessageError, TooLargeError, UriNotAllowedError
from stream_iqa.video.source import InputPolicy, VideoInput, file_uri_path

JSON_TYPES = frozenset({"application/json"})
BYTES_TYPES = frozenset({"application/octet-stream", "video/mp4", "video/mp2t", "video/x-matroska", "video/webm",
                         "video/quicktime", "video/iso.segment"})
_ID_CHARS = 256


class JobMessage(BaseModel):
    """The JSON form of a job. Unknown keys are refused so that a typo (``"url"``) is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid")

    clip_id: str = Field(min_length=1, max_length=_ID_CHARS)
    stream_id: str = Field(min_length=1, max_length=_ID_CHARS)
    uri: str = Field(min_length=1, max_length=4096)
    metadata: dict[str, Any] | None = None

    @field_validator("clip_id", "stream_id", "uri")
    @classmethod
    def _encodable(cls, text: str) -> str:
        """Ids are echoed into reports and logs as UTF-8; a lone surrogate (legal in JSON escapes) cannot be."""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("contains a lone surrogate (not valid Unicode text)") from None
        return text


@dataclass
class Job:
    """What the pipeline needs for one clip: ids, the vetted input, and a label for error messages."""

    clip_id: str
    stream_id: str
    input: VideoInput
    label: str
    metadata: dict[str, Any] = field(default_factory=dict)


def headers_of(raw: list[tuple[str, bytes]] | None) -> dict[str, str]:
    """Kafka headers as a str→str dict (lower-case names; the last value of a repeated header wins)."""
    out: dict[str, str] = {}
    for name, value in raw or []:
        out[name.lower()] = (value or b"").decode("utf-8", errors="replace")
    return out


def content_type(headers: dict[str, str]) -> str:
    """The media type of the ``content-type`` header, lower case, parameters dropped ("" when absent)."""
    return headers.get("content-type", "").split(";")[0].strip().lower()


def clip_id_hint(headers: dict[str, str], value: bytes | None) -> str | None:
    """The best clip id for an error record about a message that may not parse: where the job's own form keeps it
    (the JSON field of a JSON job, the header of raw bytes), else the other. Never raises: it runs on hostile bytes
    (``[`` × 1500 is a RecursionError, not a ValueError) before anything else has vetted them."""
    header = _printable(headers["clip_id"][:_ID_CHARS]) if headers.get("clip_id") else None
    if header is not None and content_type(headers) not in JSON_TYPES:
        return header
    return _json_clip_id(value) or header


def _json_clip_id(value: bytes | None) -> str | None:
    if not value or len(value) > 1024**2 or value.lstrip()[:1] != b"{":
        return None
    try:
        doc = json.loads(value)
        if isinstance(doc, dict) and isinstance(doc.get("clip_id"), str) and doc["clip_id"]:
            return _printable(doc["clip_id"][:_ID_CHARS])
    except Exception:  # noqa: BLE001 - any failure just means no hint
        pass
    return None


def _printable(text: str) -> str:
    """Text that survives UTF-8 output: JSON may carry lone surrogates (``"\\ud800"``), which no encoder writes."""
    return text.encode("utf-8", errors="replace").decode("utf-8")


def parse_job(value: bytes | None, headers: dict[str, str], key: bytes | None, settings: Settings, where: str,
              policy: InputPolicy | None = None) -> Job:
    """Validate one message into a Job; ``where`` (topic/partition@offset) names it in error messages; ``policy``
    (default: from the settings) is where its URI may point."""
    size = len(value or b"")
    if size > settings.kafka.max_message_bytes:
        raise TooLargeError(where, f"message of {size} bytes exceeds kafka.max_message_bytes={settings.kafka.max_message_bytes}")
    ctype = content_type(headers)
    if not ctype:
        raise InvalidMessageError(where, "missing content-type header (application/json for a job, video/* or "
                                         "application/octet-stream for raw segment bytes)")
    if ctype in JSON_TYPES:
        return _json_job(value or b"", settings, where, policy)
    if ctype in BYTES_TYPES or ctype.startswith("video/"):
        clip_id = headers.get("clip_id", "").strip()
        stream_id = headers.get("stream_id", "").strip() or (key or b"").decode("utf-8", errors="replace").strip()
        if not clip_id or not stream_id:
            raise InvalidMessageError(where, "raw video bytes need a clip_id header and a stream_id header (or key)")
        if len(clip_id) > _ID_CHARS or len(stream_id) > _ID_CHARS:
            raise InvalidMessageError(where, f"clip_id and stream_id are limited to {_ID_CHARS} characters")
        if not value:
            raise InvalidMessageError(where, f"clip {clip_id}: message carries no bytes")
        return Job(clip_id=clip_id, stream_id=stream_id, input=value, label=f"clip {clip_id} ({size} bytes, {where})")
    raise InvalidMessageError(where, f"unsupported content-type '{ctype}'")


def _json_job(value: bytes, settings: Settings, where: str, policy: InputPolicy | None) -> Job:
    try:
        doc = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidMessageError(where, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidMessageError(where, "not valid JSON: nested too deeply") from None
    try:
        msg = JobMessage.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}" for e in exc.errors())
        raise InvalidMessageError(where, f"invalid job: {problems[:500]}") from None
    except RecursionError:
        raise InvalidMessageError(where, "invalid job: metadata nested too deeply") from None
    return Job(clip_id=msg.clip_id, stream_id=msg.stream_id, input=resolve_uri(msg.uri, settings, msg.clip_id, policy),
               label=f"clip {msg.clip_id} ({msg.uri})", metadata=msg.metadata or {})


def input_policy(settings: Settings) -> InputPolicy:
    """Where a job, and anything its input names (an HLS playlist's segments), may be read from."""
    return InputPolicy.restricted(settings.service.allowed_roots, settings.service.allowed_hosts)


def resolve_uri(uri: str, settings: Settings, clip_id: str, policy: InputPolicy | None = None) -> VideoInput:
    """A job URI → a local path under an allowed root, or an allowed http(s) URL; else ``uri_not_allowed``."""
    label = f"clip {clip_id}"
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - parsed lazily: a bad port raises here, not later as an internal error
    except ValueError as exc:
        raise UriNotAllowedError(label, f"malformed URI ({exc})") from None
    scheme = parts.scheme.lower()
    policy = policy or input_policy(settings)
    if scheme == "file":
        return policy.check_path(file_uri_path(uri, label), label)
    if scheme in ("http", "https"):
        if not settings.video.allow_urls:
            raise UriNotAllowedError(label, "URL jobs are disabled (video.allow_urls is false)")
        return policy.check_url(uri, label)
    raise UriNotAllowedError(label, f"scheme '{scheme or '(none)'}' is not allowed (file, or http(s) when enabled)")

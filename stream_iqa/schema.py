"""The public output shapes of ../shared/docs/output-contract.md as pydantic v2 models.

Moderation systems, dashboards and evaluation scripts parse these, so names and meanings are frozen per ``schema``
version: fields may be *added* (``distortion_share``, ``FrameRecord.depth_fresh``/``flags`` are such additions), never
renamed or repurposed. Serialise with ``.model_dump_json()``; it writes the versioned ``schema`` key and ``null`` for an
absent ``source``.

This module deliberately imports neither torch nor the model code: the Kafka service and consumers validate reports
without loading a network. ``DISTORTION_TYPES`` is defined here, once: the model code (``nn.api.DISTORTIONS``) and the
synthesis (``FLAG_KINDS``) take it from the contract.

Models ignore unknown keys on input (a tolerant reader), so a v1 consumer keeps parsing reports that gained fields.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

CLIP_REPORT_SCHEMA = "stream-iqa/clip-report/1"
#: error/2 added the ``timeout`` code to the closed set (a v1 reader that validates codes would reject it); error/1
#: records are still accepted on input
ERROR_SCHEMA = "stream-iqa/error/2"
IMAGE_SCORE_SCHEMA = "stream-iqa/image-score/1"

#: distortion types, in the model's head order; part of the contract
DistortionType = Literal["low_light", "haze", "flare"]
DISTORTION_TYPES: tuple[DistortionType, ...] = get_args(DistortionType)

#: the closed set of error codes (documented in the contract); adding one is a contract change
ErrorCode = Literal[
    "invalid_message",  # a Kafka message that is not valid JSON or misses required fields
    "uri_not_allowed",  # a URL/URI the settings do not allow reading
    "not_found",  # the file or object does not exist / cannot be opened
    "undecodable_video",  # the container or codec cannot be decoded (truncated, not a video, …)
    "no_video_stream",  # a readable container without a video stream (audio-only, zero frames)
    "too_large",  # over the byte or pixel limits in settings
    "too_long",  # over the duration limit in settings
    "timeout",  # not finished within the clip's wall-clock deadline (error/2)
    "internal",  # a bug or resource failure on our side; never the input's fault
]
ERROR_CODES: tuple[str, ...] = get_args(ErrorCode)

# Tolerance for the report's consistency checks: times are rounded to milliseconds when reports are built.
_TIME_EPS = 1e-6


class _Contract(BaseModel):
    """Shared config: ``schema`` is a field name (BaseModel has a deprecated ``schema()``), so it lives under the
    Python name ``schema_`` with the JSON alias ``schema``; both names are accepted on input."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)


class Distortions(_Contract):
    """One value in [0, 1] per distortion type: per-frame probabilities, or per-clip shares of time."""

    low_light: float = Field(ge=0.0, le=1.0)
    haze: float = Field(ge=0.0, le=1.0)
    flare: float = Field(ge=0.0, le=1.0)


class QualitySummary(_Contract):
    """Per-clip quality on the model's calibrated 0–100 scale (higher is better). ``p10`` is the 10th percentile of
    the per-frame scores (numpy's linear interpolation): the "bad stretch" level, robust to a single bad frame."""

    mean: float = Field(ge=0.0, le=100.0)
    min: float = Field(ge=0.0, le=100.0)
    p10: float = Field(ge=0.0, le=100.0)


class Segment(_Contract):
    """A time span, in seconds from the clip start (pts-based), in which one distortion is present.
    ``confidence`` is the mean temporally smoothed probability of that type over the frames inside."""

    type: DistortionType
    start: float = Field(ge=0.0)
    end: float = Field(ge=0.0)
    confidence: float = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Segment:
        if self.start > self.end:
            raise ValueError(f"segment start {self.start} is after its end {self.end}")
        return self


class ModelInfo(_Contract):
    name: str
    version: str


class Source(_Contract):
    """Where a Kafka-borne input came from; ``None`` (JSON ``null``) for replay."""

    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class Integrity(_Contract):
    """What was decoded against what the container declares: a file cut short (a truncated upload, a segment written
    while the recorder died) decodes without an error, so without this the report would look complete.

    ``declared_duration_s`` is the video stream's own extent (a container-wide figure, which a longer audio track
    stretches, is brought down to what was decoded); ``decoded_duration_s`` runs from the first to the end of the last
    packet demuxed, or along the frame timeline when it has discontinuities; ``truncated`` is true when it falls
    short of ``declared_duration_s`` by more than ``max(0.5 s, two frame intervals)``.
    ``timestamp_discontinuities`` (added field) counts pts jumps (backwards, as where concatenated MPEG-TS segments
    restart their clock, or far forward) that frame times were carried across: ``t`` stays monotonic, one frame
    interval past the frame before the jump. ``damaged_packets`` (added field) counts packets the decoder rejected as
    invalid data and skipped (a damaged key frame, the partial last packet of a cut-off upload): the rest of the clip
    is analysed, where it used to be refused whole."""

    truncated: bool
    declared_duration_s: float | None = Field(None, ge=0.0)
    decoded_duration_s: float = Field(ge=0.0)
    timestamp_discontinuities: int = Field(0, ge=0)
    damaged_packets: int = Field(0, ge=0)


class ClipReport(_Contract):
    """One report per clip: the Kafka output topic and ``stream-iqa replay VIDEO --json``.

    Added to the v1 example: ``distortion_share`` (per type, the fraction of ``duration_s`` covered by its segments) and
    ``idempotency_key`` (Kafka output: one value per input message, repeated on redelivery).
    Validation pins the contract's invariants: segments lie within the clip and segments of one type do not overlap.
    """

    schema_: Literal["stream-iqa/clip-report/1"] = Field(CLIP_REPORT_SCHEMA, alias="schema")
    clip_id: str
    stream_id: str
    duration_s: float = Field(ge=0.0)
    frames_analyzed: int = Field(ge=0)
    quality: QualitySummary
    segments: list[Segment]
    model: ModelInfo
    source: Source | None = None
    distortion_share: Distortions
    idempotency_key: str | None = Field(
        None, description="Kafka output only: the same for every redelivery of one input message, so consumers can "
        "drop duplicates (at-least-once delivery). Null for replay.")
    integrity: Integrity | None = Field(
        None, description="Decoded against declared duration; ``truncated`` flags a clip cut short (added field).")

    @model_validator(mode="after")
    def _segments_consistent(self) -> ClipReport:
        for kind in DISTORTION_TYPES:
            spans = sorted((s.start, s.end) for s in self.segments if s.type == kind)
            for (_, prev_end), (start, _) in zip(spans, spans[1:]):
                if start < prev_end - _TIME_EPS:
                    raise ValueError(f"overlapping {kind} segments at {start} s")
        for s in self.segments:
            if s.end > self.duration_s + _TIME_EPS:
                raise ValueError(f"{s.type} segment ends at {s.end} s, after the clip's {self.duration_s} s")
        return self


class FrameRecord(_Contract):
    """One analysed frame (``--dump FILE.jsonl``; the CSV flattens ``distortions`` into columns).

    ``distortions`` are the model's raw probabilities, before temporal smoothing. Optional additions: ``depth_fresh``
    (depth computed for this frame, not reused), ``flags`` (per-type indicator at the model's flag thresholds) and
    ``latency_ms`` (decoder to score).
    """

    frame_index: int = Field(ge=0)
    t: float = Field(ge=0.0)
    quality: float = Field(ge=0.0, le=100.0)
    distortions: Distortions
    depth_fresh: bool | None = None
    flags: dict[DistortionType, bool] | None = None
    latency_ms: float | None = Field(None, ge=0.0, description="From the frame leaving the decoder to its score "
                                     "(queueing, depth and the model, including any shared-batch wait).")


class ImageScore(_Contract):
    """One scored image: ``stream-iqa score --json`` (a line each, in input order) and ``stream_iqa.score_images``.

    ``distortions`` are the model's probabilities; ``flags`` the decision at the model's own per-flag thresholds (in
    its ``model.json``), so a caller need not know them. A model without flag heads (the official DGIQA) gives
    neither. An image that cannot be read keeps its place with ``error`` set and no scores.
    """

    schema_: Literal["stream-iqa/image-score/1"] = Field(IMAGE_SCORE_SCHEMA, alias="schema")
    path: str | None = Field(None, description="The file scored; null for an image passed as an array.")
    quality: float | None = Field(None, ge=0.0, le=100.0)
    distortions: Distortions | None = None
    flags: dict[DistortionType, bool] | None = None
    error: str | None = Field(None, description="Why the image could not be read; the scores are then null.")

    @model_validator(mode="after")
    def _scores_or_error(self) -> ImageScore:
        if (self.error is None) == (self.quality is None):
            raise ValueError("an image score has either a quality or an error")
        return self


class ErrorRecord(_Contract):
    """One per failed clip: the errors topic, and replay's stderr before a non-zero exit. ``clip_id`` is ``None``
    when the input was too broken to carry one (e.g. ``invalid_message``)."""

    schema_: Literal["stream-iqa/error/2", "stream-iqa/error/1"] = Field(ERROR_SCHEMA, alias="schema")
    clip_id: str | None
    code: ErrorCode
    message: str = Field(min_length=1)
    source: Source | None = None
    idempotency_key: str | None = None

"""One typed settings tree for every command and the service.

Values come, highest priority first, from: keyword arguments, environment variables (``STREAM_IQA_…``, nested with
``__``, e.g. ``STREAM_IQA_MODEL__DEVICE=cuda``), a YAML file (``--config`` or ``STREAM_IQA_CONFIG``), then the
defaults below. Users script against these names: keep them stable.

``Settings.load`` turns every invalid value, from any source, into one ``ConfigError`` naming the setting, and warns
about ``STREAM_IQA_…`` variables that name no setting (a typo would otherwise be silently ignored). Every section
forbids names it does not have, so ``video: {max_pixel: …}`` in YAML, keyword arguments or
``STREAM_IQA_VIDEO__MAX_PIXEL`` is an error rather than a limit quietly left at its default.
"""

from __future__ import annotations

import difflib
import importlib.resources
import ipaddress
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

import yaml
from pydantic import (
    BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from stream_iqa.errors import ConfigError
from stream_iqa.log import get_logger
from stream_iqa.schema import DISTORTION_TYPES, DistortionType

REPO_ROOT = Path(__file__).resolve().parent.parent  # the source checkout: training data and caches only
#: the default model ships inside the package (wheel and checkout alike): weights, model.json and the ONNX export
SHIPPED_MODEL_DIR = Path(str(importlib.resources.files("stream_iqa") / "weights" / "dgiqa-lite"))
DEFAULT_CHECKPOINT = SHIPPED_MODEL_DIR / "model.safetensors"
ENV_PREFIX = "STREAM_IQA_"

T = TypeVar("T")


def _split_list(value: Any) -> Any:
    """Lists from the environment arrive as one string: take a JSON list or, as people write them, ``a,b``."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text.startswith("["):
        return [part.strip() for part in text.split(",") if part.strip()]
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not a JSON list ({exc.msg}); give a JSON list or comma-separated values") from None


# A list setting that also accepts comma-separated text; NoDecode stops pydantic-settings from insisting on JSON.
CommaList = Annotated[list[T], NoDecode, BeforeValidator(_split_list)]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
_HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9._-]*[A-Za-z0-9_])?")


class ModelSettings(BaseModel):
    """Which scoring model to load, from where, and on which device."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("dgiqa-lite", description="Registry name (stream_iqa.nn.list_models()).")
    checkpoint: Path | None = Field(
        DEFAULT_CHECKPOINT,
        description="Local checkpoint (.safetensors with its .json metadata, or an official .pth for 'dgiqa'). "
        "Nothing is ever downloaded.",
    )
    device: str = Field("auto", description="'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'.")
    precision: Literal["fp32", "fp16", "bf16"] = Field("fp32", description="Autocast precision on CUDA.")
    threads: int = Field(0, ge=0, description="torch intra-op threads on CPU; 0 keeps torch's default.")
    backend: Literal["auto", "torch", "onnxruntime"] = Field(
        "auto", description="'onnxruntime' runs the student exported by `stream-iqa export --onnx` (model.onnx): "
        "same scores, about 2x the frames/s of PyTorch on CPU (BENCHMARKS.md). 'auto' picks ONNX Runtime on CPU at "
        "fp32 when an export of this very checkpoint is at model.onnx or beside the checkpoint (same name, .onnx; the "
        "shipped model has one) and PyTorch otherwise (CUDA, bf16, the teacher, a stale or missing export)."
    )
    onnx: Path | None = Field(None, description="The exported .onnx file for the onnxruntime backend; unset, 'auto' "
                              "looks for the checkpoint's name with .onnx.")
    compile: Literal["off", "default", "reduce-overhead", "max-autotune"] = Field(
        "off", description="torch.compile the student's network (PyTorch backend), batches padded to powers of two so "
        "each size compiles once, at warm-up. 'reduce-overhead' adds CUDA graphs. For GPU workers; compiling takes "
        "minutes on a small CPU and the ONNX Runtime backend is the CPU path."
    )
    teacher_crops: int = Field(10, ge=1, description="Random 224² crops for the teacher's official inference.")
    teacher_seed: int = Field(0, description="Seed of the teacher's crop positions (the official code is seeded).")

    @field_validator("checkpoint", "onnx")
    @classmethod
    def _not_empty(cls, value: Path | None, info: Any) -> Path | None:
        """An empty value (an unset variable in a compose or Helm template) reads as the current directory."""
        if value is not None and str(value) in ("", "."):
            raise ValueError(f"is empty: set STREAM_IQA_MODEL__{info.field_name.upper()} to a file, or leave it out "
                             + ("for the shipped student" if info.field_name == "checkpoint" else "to look beside "
                                "the checkpoint"))
        return value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        """Checked here so that a typo fails at start, not after a model has loaded; CUDA's presence is checked by
        whoever loads the model (this module does not import torch)."""
        if not _DEVICE.fullmatch(value):
            raise ValueError(f"{value!r} is not a device: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
        return value

    @model_validator(mode="after")
    def _loadable(self) -> "ModelSettings":
        """Combinations the loader refuses only after the model modules are imported; refused here as well so that
        they are configuration errors at start (the CLI's exit 2), wherever the values came from."""
        if self.name == "dgiqa" and self.checkpoint is not None and self.checkpoint.suffix == ".safetensors":
            raise ValueError(f"model 'dgiqa' needs the official DGIQA .pth: set STREAM_IQA_MODEL__CHECKPOINT "
                             f"(or --checkpoint), not {self.checkpoint.name}")
        if self.backend == "onnxruntime" and self.name != "dgiqa-lite":
            raise ValueError(f"the onnxruntime backend runs an exported dgiqa-lite, not {self.name!r}")
        return self


class DepthSettings(BaseModel):
    """Where depth maps come from. ``auto`` uses Depth Anything when its checkpoint is set, else the prior."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["auto", "prior", "depth-anything"] = "auto"
    depth_anything_checkpoint: Path | None = Field(
        None, description="Official Depth Anything ViT-S .pth (V2 'depth_anything_v2_vits.pth' or V1 'depth_anything_vits14.pth')."
    )
    depth_anything_version: Literal["v1", "v2"] = Field(
        "v2", description="V1 and V2 files share one layout, so the version must be stated (they tap different blocks)."
    )
    depth_anything_input: int = Field(518, ge=14, description="Shorter input side for Depth Anything (multiple of 14).")

    @model_validator(mode="after")
    def _depth_anything_has_weights(self) -> "DepthSettings":
        """Refused at start rather than when the first frame needs depth (see ``ModelSettings._loadable``)."""
        if self.source == "depth-anything" and self.depth_anything_checkpoint is None:
            raise ValueError("source 'depth-anything' needs a checkpoint: set "
                             "STREAM_IQA_DEPTH__DEPTH_ANYTHING_CHECKPOINT to a local Depth Anything ViT-S .pth")
        return self


class DepthReuseSettings(BaseModel):
    """When a stream's depth map is recomputed rather than reused; see the module docstring for the reasoning."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True, description="False computes depth on every frame (the baseline reuse is measured against)."
    )
    refresh_every: int = Field(
        8, ge=1, description="Recompute depth after this many sampled frames even when nothing else says so."
    )
    scene_cut_threshold: float = Field(
        0.12,
        gt=0.0,
        le=1.0,
        description=(
            "Symmetric chi-square distance, 0.5·Σ(p−q)²/(p+q) in [0, 1], between 32-bin luma histograms of 64-px-wide "
            "grey thumbnails of the current frame and the frame the map was computed on; above it is a scene "
            "cut. Measured on scikit-image photos: pans of 10 % of the width score ≤ 0.02, of 30 % ≤ 0.08, and hard "
            "cuts 0.18 (coffee↔chelsea, the closest pair) to 0.49; 0.12 sits between with margin on both sides."
        ),
    )
    motion_threshold: float = Field(
        6.4,
        gt=0.0,
        description=(
            "Global translation, in pixels of the 64-px-wide thumbnail (6.4 = 10 % of the frame width), above which "
            "the map is recomputed: frame-to-frame (a jump) or accumulated since the map's frame (too much border)."
        ),
    )
    warp: bool = Field(
        True, description="Shift reused maps by the estimated global translation, replicating the edge into the gap."
    )


class DataSettings(BaseModel):
    """Data sets for training and evaluation (read in place, never copied into the repo)."""

    model_config = ConfigDict(extra="forbid")

    root: Path = Field(REPO_ROOT.parent / "shared" / "data", description="Folder holding natural/ and clive/.")
    cache_dir: Path = Field(REPO_ROOT / ".cache", description="Derived training caches (synthetic sets, features).")


#: demuxers that read other files, URLs or devices named inside the input (never allowed in video.allowed_formats)
_FILE_OPENING_DEMUXERS = frozenset({"concat", "hls", "applehttp", "dash", "image2", "image2pipe", "tee", "lavfi",
                                    "imf", "mpl2", "ffmetadata", "avisynth", "vapoursynth", "fifo", "segment"})


class VideoSettings(BaseModel):
    """How clips are opened, sampled and bounded.

    The limits exist so that one hostile or mistaken message cannot pin a worker for hours or exhaust its memory:
    they are checked from metadata before decoding and again while decoding (duration by pts, pixels per frame).
    """

    model_config = ConfigDict(extra="forbid")

    sampling: Literal["fps", "every_n", "keyframes"] = Field(
        "fps", description="'fps': N frames per second by timestamp; 'every_n': every Nth decoded frame; "
        "'keyframes': key frames only (non-key frames are skipped by the decoder, the cheapest policy)."
    )
    fps: float = Field(2.0, gt=0, allow_inf_nan=False, description="Frames per second for the 'fps' policy.")
    every_n: int = Field(10, ge=1, description="Stride for the 'every_n' policy.")
    max_duration_s: float = Field(3600.0, gt=0, description="Longest clip accepted (seconds).")
    max_pixels: int = Field(3840 * 2160, gt=0, description="Largest frame accepted (width × height).")
    max_bytes: int = Field(2 * 1024**3, gt=0, description="Largest file or payload accepted (bytes).")
    max_image_pixels: int = Field(
        100_000_000, gt=0, description="Largest still image `score` and `score_images` accept (width × height), "
        "read from the file's header before any pixel is decoded: a 1 MB PNG can declare 400 M pixels, which took "
        "9.5 GB and 34 s to score. 100 M covers 50-megapixel phone photos twice over (~24 bytes per pixel at peak).")
    allow_urls: bool = Field(
        False, description="Accept http(s) URLs (fetched by stream-iqa, never by FFmpeg: every redirect is vetted, "
        "with connect/read timeouts and the byte limit); off by default (SSRF, cost)."
    )
    allowed_formats: CommaList[str] = Field(
        ["mov", "matroska", "mpegts", "flv", "avi", "mpeg", "h264", "hevc"],
        description="FFmpeg demuxers an input may be opened with (FFmpeg's format_whitelist): mov = mp4/mov/m4v/3gp/"
        "fMP4, matroska = mkv/webm, mpegts, flv, avi, mpeg (program streams), raw h264/hevc. Demuxers that open other "
        "files (concat, hls, dash, image2, tee, lavfi …) are refused here; HLS only through allow_playlists.",
    )
    allow_playlists: bool = Field(
        False, description="Accept HLS playlists (.m3u8). Every file or URL a playlist names is vetted like a job "
        "URI (allowed roots, allowed hosts) before FFmpeg may read it. Concat lists are never accepted: FFmpeg's "
        "concat demuxer opens its entries without the hook that vets them."
    )
    @field_validator("allowed_formats")
    @classmethod
    def _no_demuxer_that_opens_files(cls, names: list[str]) -> list[str]:
        names = [n.strip().lower() for n in names if n.strip()]
        if bad := sorted(set(names) & _FILE_OPENING_DEMUXERS):
            raise ValueError(f"{', '.join(bad)} would let an input make FFmpeg open other files or URLs; "
                             "HLS is enabled by video.allow_playlists, the others never")
        return names

    connect_timeout_s: float = Field(10.0, gt=0, description="URL inputs: longest wait for a TCP/TLS connection.")
    read_timeout_s: float = Field(30.0, gt=0, description="URL inputs: longest silence while reading a response.")
    threads: int = Field(0, ge=0, description="Decoder threads; 0 lets FFmpeg/decord choose.")
    backend: Literal["pyav", "decord"] = Field(
        "pyav", description="'decord' reads local files only; URLs and bytes always use PyAV, and so do files decord "
        "would misread (several video streams, pts that restart or start before zero, key-frame sampling, a file it "
        "cannot index), with a log line saying why."
    )


class EngineSettings(BaseModel):
    """How frames are batched through depth and the model."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(8, ge=1, description="Frames per model call.")
    prefetch: int = Field(16, ge=1, description="Decoded frames buffered ahead of inference (bounded memory).")
    analysis_short_side: int = Field(
        384, ge=64, description="The decoder's scaler downscales sampled frames to this shorter side before depth and "
        "the model (which work at 192 and 128 px); never upscaled."
    )
    shared_batches: Literal["auto", "on", "off"] = Field(
        "auto", description="Merge the model calls of clips analysed at once (service.max_in_flight > 1) into shared "
        "device batches. 'auto': on for CUDA, off on CPU (where bigger batches buy nothing and the cores are split "
        "between clips instead)."
    )
    shared_batch_size: int = Field(64, ge=1, description="Most frames in one shared model call.")
    max_wait_ms: float = Field(
        5.0, ge=0, description="How long a shared batch waits for other clips' frames before it runs anyway."
    )


class KafkaSettings(BaseModel):
    """Where the service reads jobs and writes reports, and how it talks to the brokers.

    Every security field is passed to kafka-python unchanged (``security_protocol``, ``sasl_*``, ``ssl_*``); secrets
    are ``SecretStr`` so ``stream-iqa config`` and logs mask them.
    """

    model_config = ConfigDict(extra="forbid")

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Comma-separated host:port list.")
    client_id: str = Field("stream-iqa", description="Client id shown in broker logs and quotas.")
    group_id: str = Field("stream-iqa", description="Consumer group: add workers to the group to scale out.")
    input_topic: str = Field("stream-iqa.clips", description="Jobs: JSON {clip_id, stream_id, uri} or raw video bytes.")
    output_topic: str = Field("stream-iqa.reports", description="One ClipReport per input, keyed by stream_id.")
    errors_topic: str = Field("stream-iqa.errors", description="One ErrorRecord per failed input, keyed by stream_id.")
    frames_topic: str = Field("stream-iqa.frames", description="Per-frame records, when publish_frames is on.")
    publish_frames: bool = Field(False, description="Also publish every analysed frame's record to frames_topic.")
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="Where a group with no committed offset starts; 'earliest' so no job is skipped."
    )
    max_message_bytes: int = Field(
        50 * 1024**2, gt=0, description="Largest input message accepted (bytes; larger ones become 'too_large' errors). "
        "Also sizes the consumer's fetch limits; messages up to 2 × max(50 MiB, this) can still be received (and refused "
        "with an error record), so keep the brokers' message.max.bytes under that."
    )
    max_poll_records: int = Field(16, ge=1, description="Records fetched per poll; the rest wait in the broker.")
    session_timeout_ms: int = Field(10_000, ge=1000, description="Heartbeat-based liveness (background thread).")
    heartbeat_interval_ms: int = Field(3_000, ge=100)
    max_poll_interval_ms: int = Field(
        300_000,
        ge=1000,
        description="Longest gap between polls before the group evicts this worker. The service polls while clips "
        "are analysed (partitions paused), so gaps stay near poll_timeout_ms; the rule is only that it must exceed the "
        "longest single blocking step: max(service.drain_timeout_s, producer delivery_timeout_ms) with margin.",
    )
    request_timeout_ms: int = Field(30_000, ge=1000)
    join_timeout_s: float = Field(
        60.0, ge=5, description="Longest the worker waits for a group join to complete (the first one, or the rejoin "
        "after a rebalance or a broker restart) before it replaces its consumer with a fresh one; it is not ready "
        "while it waits. A rejoin can stall in the client for ever while the broker looks healthy. Must exceed a normal "
        "rebalance: session_timeout_ms (a member that died is dropped only then) plus the brokers' "
        "group.initial.rebalance.delay.ms (3 s by default)."
    )
    metadata_max_age_ms: int = Field(
        30_000, ge=100, description="Metadata refresh period: how soon added partitions (or a re-created input "
        "topic) are noticed and the group rebalances onto them. kafka-python's default is 5 minutes."
    )
    delivery_timeout_s: float = Field(
        30.0, gt=0, description="How long one publish attempt waits for the broker's ack before it is retried."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_password: SecretStr | None = None
    ssl_check_hostname: bool = True

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port_list(cls, value: str) -> str:
        """An address kafka-python cannot parse makes it retry forever; refuse it at start instead."""
        entries = [entry.strip() for entry in value.split(",") if entry.strip()]
        if not entries:
            raise ValueError("needs at least one host:port")
        for entry in entries:
            _check_host_port(entry)
        return value

    @model_validator(mode="after")
    def _join_outlasts_a_rebalance(self) -> "KafkaSettings":
        if self.join_timeout_s * 1000 < self.session_timeout_ms + 3000:
            raise ValueError(f"kafka.join_timeout_s ({self.join_timeout_s:g} s) must exceed session_timeout_ms "
                             f"({self.session_timeout_ms} ms) plus 3 s, or a normal rebalance would replace the "
                             "consumer: raise STREAM_IQA_KAFKA__JOIN_TIMEOUT_S")
        return self

    def client_options(self) -> dict[str, Any]:
        """The connection and security options shared by consumer, producer and admin client (kafka-python names)."""
        opts: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()],
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
            "metadata_max_age_ms": self.metadata_max_age_ms,
        }
        if self.sasl_mechanism:
            opts["sasl_mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            opts["sasl_plain_username"] = self.sasl_username
        if self.sasl_password is not None:
            opts["sasl_plain_password"] = self.sasl_password.get_secret_value()
        if self.security_protocol in ("SSL", "SASL_SSL"):
            opts["ssl_check_hostname"] = self.ssl_check_hostname
            for key in ("cafile", "certfile", "keyfile"):
                value = getattr(self, f"ssl_{key}")
                if value is not None:
                    opts[f"ssl_{key}"] = str(value)
            if self.ssl_password is not None:
                opts["ssl_password"] = self.ssl_password.get_secret_value()
        return opts


class ServiceSettings(BaseModel):
    """The long-running worker: what it may read, how much it runs at once, how it stops, where it reports health."""

    model_config = ConfigDict(extra="forbid")

    allowed_roots: CommaList[Path] = Field(
        default_factory=list,
        description="Folders that file:// job URIs may point into (after resolving symlinks; '..' is refused). "
        "Empty: file jobs are refused.",
    )
    allowed_hosts: CommaList[str] = Field(
        default_factory=list,
        description="Hosts that http(s):// job URIs may name; also needs video.allow_urls. Empty: URL jobs refused.",
    )
    max_in_flight: int = Field(
        2, ge=1, description="Clips analysed at once (one thread each; at most one per partition, so a stream's "
        "segments stay in order and its depth state is never shared between threads)."
    )
    poll_timeout_ms: int = Field(200, ge=10, description="How long one poll waits for records.")
    drain_timeout_s: float = Field(
        30.0, ge=0, description="On SIGTERM/SIGINT: how long in-flight clips may finish before they are abandoned "
        "(not committed, so another worker redelivers them). Kubernetes' terminationGracePeriodSeconds must be longer."
    )
    depth_states: int = Field(1024, ge=1, description="Per-stream depth states kept (least recently used dropped).")
    metrics_host: str = Field("0.0.0.0", description="Bind address of /metrics, /healthz and /readyz.")
    metrics_port: int = Field(9108, ge=0, le=65535, description="Port of /metrics, /healthz, /readyz; 0 picks a free one.")
    metrics_enabled: bool = True
    lag_interval_s: float = Field(10.0, gt=0, description="How often consumer lag per partition is refreshed.")
    reconnect_backoff_s: float = Field(1.0, gt=0, description="First wait before reconnecting; doubles per failure.")
    reconnect_backoff_max_s: float = Field(30.0, gt=0, description="Longest wait between reconnection attempts.")
    clip_timeout_s: float = Field(
        900.0, gt=0, description="Wall-clock deadline of one clip, from taking the message to publishing its output. "
        "A clip past it ends as a 'timeout' error record (committed); a clip thread that ignores it (stuck in native "
        "code) is left behind after clip_timeout_s + 10 s and counted in stream_iqa_stuck_clip_threads."
    )


class TemporalSettings(BaseModel):
    """How per-frame probabilities become segments. Thresholds default to the model's own flag thresholds (fixed at
    training time), so a segment means "flagged, persistently"; ``enter``/``exit`` override them per type."""

    model_config = ConfigDict(extra="forbid")

    half_life_s: float = Field(0.25, ge=0.0, description="Smoothing half-life in seconds; 0 disables smoothing.")
    enter: dict[DistortionType, float] = Field(
        default_factory=dict, description="Per-type enter thresholds; missing types use the model's flag threshold."
    )
    exit: dict[DistortionType, float] = Field(
        default_factory=dict, description="Per-type exit thresholds; missing types use enter - exit_margin."
    )
    exit_margin: float = Field(0.15, ge=0.0, le=1.0, description="Default hysteresis width below enter.")
    min_exit: float = Field(0.05, ge=0.0, le=1.0, description="Floor of the default exit threshold.")
    min_duration_s: float = Field(1.0, ge=0.0, description="Segments shorter than this (after merging) are dropped.")
    merge_gap_s: float = Field(1.0, ge=0.0, description="Segments of one type at most this far apart are joined.")

    @model_validator(mode="after")
    def _probabilities(self) -> TemporalSettings:
        for name, table in (("enter", self.enter), ("exit", self.exit)):
            for kind, value in table.items():
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"{name}[{kind}] = {value} is not a probability in [0, 1]")
        return self

    def thresholds(self, model_thresholds: Mapping[str, float]) -> dict[str, tuple[float, float]]:
        """(enter, exit) per type. Raises ``ValueError`` when a type has no threshold or exit > enter (hysteresis
        would be inverted and a segment could close while still above its opening level)."""
        out: dict[str, tuple[float, float]] = {}
        for kind in DISTORTION_TYPES:
            if kind in self.enter:
                enter = self.enter[kind]
            elif kind in model_thresholds:
                enter = float(model_thresholds[kind])
            else:
                raise ValueError(f"no enter threshold for {kind!r}: pass the model's flag thresholds")
            if kind in self.exit:
                exit_ = self.exit[kind]
            else:  # the floor keeps a segment from lingering on noise; never above enter for very low enters
                exit_ = min(enter, max(self.min_exit, enter - self.exit_margin))
            if exit_ > enter:
                raise ValueError(f"exit threshold {exit_} for {kind!r} is above its enter threshold {enter}")
            out[kind] = (enter, exit_)
        return out


class LogSettings(BaseModel):
    """How the service logs."""

    model_config = ConfigDict(extra="forbid")

    level: Annotated[LogLevel, BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v)] = Field(
        "INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL (any case)."
    )
    format: Literal["auto", "json", "console"] = Field(
        "auto", description="'auto': readable on a terminal, JSON otherwise (services, pipes)."
    )


class Settings(BaseSettings):
    """The whole configuration. ``Settings.load(config=…)`` is the one way commands build it."""

    model_config = SettingsConfigDict(
        env_prefix="STREAM_IQA_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    config: Path | None = Field(None, description="YAML file merged under the environment (STREAM_IQA_CONFIG).")
    model: ModelSettings = ModelSettings()
    depth: DepthSettings = DepthSettings()
    depth_reuse: DepthReuseSettings = DepthReuseSettings()
    data: DataSettings = DataSettings()
    video: VideoSettings = VideoSettings()
    engine: EngineSettings = EngineSettings()
    temporal: TemporalSettings = TemporalSettings()
    kafka: KafkaSettings = KafkaSettings()
    service: ServiceSettings = ServiceSettings()
    log: LogSettings = LogSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls, init_settings))

    @classmethod
    def load(cls, config: str | Path | None = None, **overrides: Any) -> "Settings":
        """Settings from ``overrides`` (nested dicts per section, e.g. ``model={"device": "cpu"}``), the environment,
        the YAML file and the defaults, validated together.

        Overrides are merged field by field with the other sources, so ``model={"device": "cpu"}`` keeps
        ``STREAM_IQA_MODEL__THREADS``. This is how command-line flags must be applied: ``model_copy(update=…)``
        would skip validation. Raises ``ConfigError`` with one readable line naming each invalid setting.
        """
        _warn_unknown_variables(os.environ)
        if config is not None:
            overrides["config"] = Path(config)
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc)) from exc
        except SettingsError as exc:  # a value the environment source could not even parse (e.g. bad JSON)
            raise ConfigError(f"{exc}: {exc.__cause__}" if exc.__cause__ else str(exc)) from exc

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain data with secrets replaced, for ``stream-iqa config`` and logs."""
        return _mask(self.model_dump(mode="python"))


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by ``config`` (from init kwargs or ``STREAM_IQA_CONFIG``)."""

    def __init__(self, settings_cls: type[BaseSettings], init: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._init = init

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = self._init().get("config") or os.environ.get("STREAM_IQA_CONFIG")
        if not path:
            return {}
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found (set --config or STREAM_IQA_CONFIG)")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {describe_yaml_error(exc)}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        return data


def describe_yaml_error(exc: yaml.YAMLError) -> str:
    """PyYAML's message runs over several lines with a source excerpt; keep the problem and where it is."""
    problem = getattr(exc, "problem", None) or str(exc)
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def describe_validation_error(exc: ValidationError) -> str:
    """Each problem as ``section.field: message`` (e.g. ``video.fps: Input should be greater than 0``), joined on
    one line: pydantic's own text spreads one problem over three lines and ends each with a URL."""
    return "; ".join(
        f"{'.'.join(map(str, err['loc'])) or 'settings'}: {err['msg'].removeprefix('Value error, ')}"
        for err in exc.errors(include_url=False)
    )


def _check_host_port(entry: str) -> None:
    host, sep, port = entry.rpartition(":")
    if not sep or not host or not port:
        raise ValueError(f"{entry!r} is not host:port (e.g. kafka:9092)")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{entry!r}: port {port!r} is not a number from 1 to 65535")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{entry!r}: {host} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(f"{entry!r}: write an IPv6 address in brackets, e.g. [::1]:9092")
    elif not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{entry!r}: {host!r} is not a host name or address")


def _section_type(annotation: Any) -> type[BaseModel] | None:
    """The model class of a nested section (``X`` or ``X | None``), else None."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _variables(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, bool]]:
    """Every variable the settings tree reads below ``prefix``, with whether it is a mapping (whose keys may follow
    after another ``__``). A section is a variable too: it takes the whole section as JSON."""
    for name, field in model.model_fields.items():
        variable = f"{prefix}{name.upper()}"
        yield variable, field.annotation is dict or get_origin(field.annotation) is dict
        section = _section_type(field.annotation)
        if section is not None:
            yield from _variables(section, variable + "__")


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``STREAM_IQA_…`` variables that name no setting, each with the closest valid name (or None).

    pydantic-settings ignores them, so ``STREAM_IQA_KAFKA_BOOTSTRAP_SERVERS`` (one underscore) would silently leave
    the default broker in place. Names are compared in upper case, as the settings read them case-insensitively.
    """
    variables = dict(_variables(Settings, ENV_PREFIX))
    mappings = tuple(name + "__" for name, is_mapping in variables.items() if is_mapping)
    suffixes = {name[len(ENV_PREFIX):]: name for name in variables}
    unknown = []
    for key in environ:
        name = key.upper()
        if not name.startswith(ENV_PREFIX) or name in variables or name.startswith(mappings):
            continue
        close = difflib.get_close_matches(name[len(ENV_PREFIX):], suffixes, n=1)
        unknown.append((key, suffixes[close[0]] if close else None))
    return unknown


def _warn_unknown_variables(environ: Mapping[str, str]) -> None:
    for variable, closest in unknown_variables(environ):
        get_logger(__name__).warning("unknown setting variable ignored", variable=variable, did_you_mean=closest)


def _mask(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return "**********" if value.get_secret_value() else ""
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value

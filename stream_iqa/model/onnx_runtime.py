"""The exported student under ONNX Runtime, served behind the same ``score(rgb, depth) -> IQAOutput`` as the PyTorch
model (``model.backend: onnxruntime``, or ``auto`` on CPU where the graph matches the checkpoint).

``OnnxGraphSession`` is one ONNX Runtime session over the graph, inputs already at the model's size;
``OnnxRuntimeModel`` adds what the graph leaves out (the resize and the native fragment gathering) and the model card
read back from the graph's metadata, so the pipeline, the service and ``score`` treat it as any ``ServedModel``.

Nothing here imports torch: frames are numpy arrays (``host_arrays``), resized by ``images.resize_array`` and cut
into fragments by ``stream_iqa.fragments``, so a CPU worker serving the graph runs without torch installed. Torch
tensors are still accepted (tests, benchmarks, the shared batcher) and answered as tensors, through the same code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stream_iqa.errors import ConfigError
from stream_iqa.fragments import FragmentSpec, gather_batch
from stream_iqa.images import resize_array
from stream_iqa.model.card import ModelCard
from stream_iqa.model.choice import cpu_cores, device_type
from stream_iqa.model.served import IQAOutput, to_host


class OnnxGraphSession:
    """One ONNX Runtime session over the exported graph (CPU by default): inputs already at the model's size.
    ``OnnxRuntimeModel`` wraps it with the resize and fragment gathering, as the served backend."""

    def __init__(self, path: Path, providers: list[str] | None = None, threads: int = 0) -> None:
        self.path = path
        self.providers = providers or ["CPUExecutionProvider"]
        self.threads = threads
        self.session = self._session(threads)
        self.meta = dict(self.session.get_modelmeta().custom_metadata_map)
        try:
            #: the exporter's model card, read back from the graph's metadata
            self.card = ModelCard.from_onnx_metadata(self.meta)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        assert self.card.input_size is not None
        self.input_size: tuple[int, int] = self.card.input_size
        #: the graph's fragment geometry, or None for a single-view graph (v1)
        self.fragment_spec: FragmentSpec | None = self.card.fragments

    def _session(self, threads: int) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        return ort.InferenceSession(str(self.path), opts, providers=self.providers)

    def set_threads(self, threads: int) -> None:
        """ONNX Runtime fixes its thread pool when the session is made, so a new thread count means a new session
        (the service splits the cores between concurrent clips after loading the model)."""
        if threads != self.threads:
            self.session, self.threads = self._session(threads), threads

    def score(self, rgb: np.ndarray, depth: np.ndarray, fragments: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        feed = {"rgb": np.asarray(rgb, dtype=np.float32), "depth": np.asarray(depth, dtype=np.float32)}
        if self.fragment_spec is not None:
            if fragments is None:
                raise ValueError(f"{self.path} reads quality from fragments: pass them")
            feed["fragments"] = np.asarray(fragments, dtype=np.float32)
        quality, distortions = self.session.run(None, feed)
        return quality, distortions


class OnnxRuntimeModel:
    """The exported student behind the same ``score(rgb, depth) -> IQAOutput`` as the PyTorch model, so the pipeline,
    the service and ``score`` use it unchanged (``model.backend: onnxruntime``). Frames are resized to the graph's
    input size with the same antialiased bilinear filter as ``DGIQALite.preprocess``."""

    def __init__(self, path: Path, providers: list[str] | None = None, threads: int = 0) -> None:
        self.runner = OnnxGraphSession(path, providers=providers, threads=threads)
        self.path = path
        self.card: ModelCard = self.runner.card
        self.compile_buckets: tuple[int, ...] = ()
        self.host_arrays = True

    @classmethod
    def from_settings(cls, model_settings: Any, device: Any = "cpu", path: Path | None = None) -> OnnxRuntimeModel:
        """``device``: a device name or torch device; on CUDA the session prefers ONNX Runtime's CUDA provider."""
        path = path or model_settings.onnx
        if path is None or not Path(path).is_file():
            raise FileNotFoundError(
                f"model.backend is 'onnxruntime' but the ONNX file {path} does not exist: set STREAM_IQA_MODEL__ONNX "
                "(make one with `stream-iqa export --onnx PATH`)"
            )
        if model_settings.name != "dgiqa-lite":
            raise ConfigError(f"the onnxruntime backend runs an exported dgiqa-lite, not {model_settings.name!r}")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device_type(device) == "cuda" else None
        try:
            return cls(Path(path), providers=providers, threads=model_settings.threads)
        except Exception as exc:  # noqa: BLE001 - a damaged graph (protobuf), one without our card, a wrong model
            raise ConfigError(
                f"{path} cannot be served as the exported student ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:300]}): set STREAM_IQA_MODEL__ONNX to a graph written by "
                "`stream-iqa export --onnx PATH`") from None

    def set_threads(self, threads: int) -> None:
        self.runner.set_threads(threads)

    def score(self, rgb: Any, depth: Any, fragments: Any | None = None) -> IQAOutput:
        """(N,3,H,W) frames and (N,1,h,w) depth in [0, 1] at any size, numpy or torch; answered in the same kind."""
        as_tensors = not isinstance(rgb, np.ndarray)
        rgb, depth = to_host(rgb), to_host(depth)
        frags = None
        spec = self.card.fragments
        if spec is not None:  # before the resize: fragments are native pixels
            frags = to_host(fragments) if fragments is not None else gather_batch(rgb, spec)
        size, threads = self.runner.input_size, self.runner.threads or cpu_cores()
        quality, distortions = self.runner.score(resize_array(rgb, size, threads), resize_array(depth, size, threads),
                                                 frags)
        if as_tensors:
            import torch

            return IQAOutput(quality=torch.from_numpy(quality), distortions=torch.from_numpy(distortions))
        return IQAOutput(quality=quality, distortions=distortions)


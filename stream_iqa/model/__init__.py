"""The model stage: what a model says about itself and how it is served, apart from the networks (``stream_iqa.nn``).

- ``card``: ``ModelCard``, the typed metadata every backend carries (torch-free);
- ``scorer``: ``load_scorer`` (settings → served model + depth source on a device), ``Scorer``, ``score_each``;
- ``onnx_runtime``: the exported graph under ONNX Runtime, behind the same ``score`` as the PyTorch student;
- ``batcher``: ``SharedBatcher``, one model call for the frames of clips analysed at once;
- ``export``: ``stream-iqa export --onnx`` (the graph, with the card in its metadata);
- ``quantize``: ``stream-iqa export --int8`` and its bench (tooling: the runtime never imports it).

Nothing is imported here, so ``stream_iqa.model.card`` stays importable without torch.
"""

"""The prepared GPU check runs end to end (on CPU, tiny sizes, untimed): it must not rot while no GPU is around."""

import pytest
import torch

from stream_iqa.bench.gpu_check import main, run


@pytest.mark.slow
def test_gpu_check_smoke_on_cpu():
    out = run(torch.device("cpu"), batches=[1, 2], rounds=1, min_time=0.0, clip_s=1.0, frame=(180, 320))
    assert set(out["student"]) == {"fp32_b1_fps", "fp32_b2_fps"} and all(v > 0 for v in out["student"].values())
    assert out["teacher_s_per_image"] > 0 and out["depth_anything_ms"] > 0
    assert out["replay_1080p"]["frames"] == 2 and out["replay_1080p"]["x_real_time"] > 0


def test_gpu_check_without_cuda_says_so(capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert main([]) == 2
    assert "no CUDA device" in capsys.readouterr().err

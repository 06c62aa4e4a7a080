"""The student's resize: frames and depth maps resized together give what resizing each alone gives."""

import torch

from stream_iqa.images import resize_frames_and_depth, resize_tensor


def test_frames_and_depth_resized_in_one_call_equal_separate_calls():
    torch.manual_seed(0)
    rgb, depth = torch.rand(3, 3, 90, 160), torch.rand(3, 1, 90, 160)
    got_rgb, got_depth = resize_frames_and_depth(rgb, depth, (48, 48))
    torch.testing.assert_close(got_rgb, resize_tensor(rgb, (48, 48)), rtol=0, atol=1e-6)
    torch.testing.assert_close(got_depth, resize_tensor(depth, (48, 48)), rtol=0, atol=1e-6)
    assert got_rgb.shape == (3, 3, 48, 48) and got_depth.shape == (3, 1, 48, 48)


def test_a_tensor_already_at_size_is_left_alone_and_sizes_may_differ():
    rgb, depth = torch.rand(2, 3, 48, 48), torch.rand(2, 1, 30, 40)
    got_rgb, got_depth = resize_frames_and_depth(rgb, depth, (48, 48))
    assert got_rgb is rgb
    torch.testing.assert_close(got_depth, resize_tensor(depth, (48, 48)), rtol=0, atol=0)

"""Stable video: the synthetic camera clip, flicker measured with its true motion, --stable modes."""
import cv2
import numpy as np

import builtin_images
import image_utilities as iu
import stylizer as S
import stylizer_apply as A
import stylizer_video as VID
import video_stability as VS
from conftest import gradient_image, save_as_run, styled_net


def test_camera_clip_flow_is_the_true_motion():
    frames, flows = builtin_images.camera_clip(gradient_image(120, 160, seed=1), 6, (60, 80), noise=0.0,
                                               jitter=0.0)
    assert len(frames) == 6 and len(flows) == 5 and frames[0].shape == (60, 80, 3)
    assert np.abs(np.nan_to_num(flows[0])).max() > 0.5  # the camera moves
    # Warping the previous frame by the true flow gives the current one, where it is visible.
    errors = VS.warp_errors(frames, flows)
    still = np.mean([np.abs(frames[t] - frames[t - 1]).mean() for t in range(1, 6)])
    assert max(errors) < 0.2 * still


def write_clip(path, frames, fps=10):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames:
        writer.write(np.ascontiguousarray(iu.to_uint8(f)[..., ::-1]))
    writer.release()


def test_stable_video_lowers_the_warped_frame_error(tmp_path):
    run = save_as_run(styled_net("channels"), "channels", tmp_path / "run")
    # A textured scene (optical flow needs texture; a smooth gradient gives none to trust) and a slow camera.
    frames, flows = builtin_images.camera_clip(builtin_images.procedural_scene(256, 0), 12, (64, 96), noise=0.03)
    write_clip(tmp_path / "clip.mp4", frames)
    errors = {}
    for mode in ("none", "flow"):
        out = tmp_path / f"{mode}.mp4"
        assert S.main(["stylize", "--run-dir", str(run), "--video", str(tmp_path / "clip.mp4"), "--out", str(out),
                       "--stable", mode]) == 0
        result = VS.read_clip(out, 100, 96)
        assert len(result) == 12 and result[0].shape == (64, 96, 3)
        errors[mode] = np.mean(VS.warp_errors(result, flows))
    assert errors["flow"] < 0.7 * errors["none"], errors


def test_stats_mode_smooths_statistics_and_a_static_map_applies_to_every_frame(tmp_path):
    net = styled_net("channels")
    frames, _ = builtin_images.camera_clip(gradient_image(160, 200, seed=3), 4, (48, 64))
    per_frame = list(VID.stylize_frames(net, frames, lambda i: [0.5, 0.5]))
    smooth = list(VID.stylize_frames(net, frames, lambda i: [0.5, 0.5], "stats"))
    np.testing.assert_allclose(smooth[0], per_frame[0], atol=1e-4)  # nothing to smooth with yet
    assert np.abs(smooth[3] - per_frame[3]).mean() > 1e-5
    weight_map = np.stack([np.ones((48, 64)), np.zeros((48, 64))], -1).astype(np.float32)
    mapped = list(VID.stylize_frames(net, frames, None, "none", weight_map))
    np.testing.assert_allclose(mapped[2], A.stylize_array(net, frames[2], [1, 0]), atol=2e-4)

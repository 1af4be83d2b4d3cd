"""The content pipeline at COCO scale: the run's list of photos made once, decoding in parallel in a deterministic
order, unreadable photos skipped and listed without shifting what follows, an exact resume, and each worker of a
two-worker run reading its own share of the photos."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import content_stream as C
import image_utilities as iu
from conftest import free_ports, gradient_image
from run_config import RunError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """19 JPEGs and PNGs of COCO-like shapes in two subfolders, two of them unreadable."""
    d = tmp_path_factory.mktemp("photos")
    for i in range(17):
        h, w = [(48, 64), (64, 48), (40, 40), (50, 90)][i % 4]
        iu.save_image(d / ("a" if i % 2 else "b") / f"photo_{i:02d}.{'jpg' if i % 3 else 'png'}",
                      gradient_image(h, w, seed=i))
    good = (d / "a" / "photo_01.jpg").read_bytes()
    (d / "a" / "zz_truncated.jpg").write_bytes(good[: len(good) // 3])
    (d / "b" / "zz_not_an_image.jpg").write_text("hello")
    return d


def batches(stream, position, batch_size, count, workers):
    data = iter(C.content_dataset(stream, position, batch_size, workers))
    out = []
    for _ in range(count):
        crops, after = (v.numpy() for v in next(data))
        out.append((crops, int(after)))
    return out


def test_parallel_decoding_gives_the_sequential_stream_skipping_bad_photos_in_place(photos, tmp_path):
    files = C.content_files(photos)
    sequential = C.ContentStream(files, 32, seed=3)
    want, position = [], 0
    for _ in range(12):  # 48 photos: two epochs and a half, the two bad ones met several times
        crops, position = sequential.batch(position, 4)
        want.append((crops, position))
    assert {Path(b).name for b in sequential.bad} == {"zz_truncated.jpg", "zz_not_an_image.jpg"}
    for workers in (1, 2, 4):
        stream = C.ContentStream(files, 32, seed=3, bad_list=tmp_path / f"bad_{workers}.txt")
        got = batches(stream, 0, 4, 12, workers)
        assert [p for _, p in got] == [p for _, p in want]
        for (a, _), (b, _) in zip(got, want):
            np.testing.assert_array_equal(a, b)
        listed = (tmp_path / f"bad_{workers}.txt").read_text().splitlines()
        assert sorted(Path(b).name for b in listed) == ["zz_not_an_image.jpg", "zz_truncated.jpg"]
    # An epoch visits every photo once, readable or not; the positions after a batch count the skipped ones.
    assert sorted(sequential.file_at(p) for p in range(len(files))) == sorted(files)
    assert want[-1][1] == 48 + sum(1 for p in range(want[-1][1]) if str(sequential.file_at(p)) in sequential.bad)


def test_a_resumed_stream_continues_with_exactly_the_next_photos(photos, tmp_path):
    files = C.content_files(photos)
    whole = batches(C.ContentStream(files, 32, seed=5), 0, 3, 8, 2)
    _, after_five = whole[4]
    # a new process after five steps: the saved position, the saved bad list
    resumed = batches(C.ContentStream(files, 32, seed=5, bad_list=tmp_path / "none.txt"), after_five, 3, 3, 2)
    for (a, pa), (b, pb) in zip(resumed, whole[5:]):
        np.testing.assert_array_equal(a, b)
        assert pa == pb


def test_the_list_of_photos_is_made_once_per_run(photos, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    first = C.content_files(photos, run)
    record = json.loads((run / C.LIST_NAME).read_text())
    assert record["count"] == len(first) == 19 and record["sha256"] == C.list_hash(record["files"])
    added = photos / "a" / "aa_added_later.jpg"
    iu.save_image(added, gradient_image(40, 60, seed=99))
    try:
        assert C.content_files(photos, run) == first  # a restart reads the list: the new photo is not in it
        assert added in C.content_files(photos)  # a new run lists the folder
    finally:
        added.unlink()
    with pytest.raises(RunError, match="deals its photos to 1 workers; resume it with as many"):
        C.content_files(photos, run, shares=2)  # resumed with two workers: another deal of the photos
    record["files"][0] = "tampered.jpg"
    (run / C.LIST_NAME).write_text(json.dumps(record))
    with pytest.raises(RunError, match="damaged list of content photos"):
        C.content_files(photos, run)


def test_the_decoders_agree(tmp_path):
    """OpenCV's and Pillow's reduced-size JPEG decoding and the full decode give about the same picture; a JPEG
    with data after its end marker (a phone's trailer) is read, a truncated one refused, by every decoder."""
    photo = tmp_path / "big.jpg"
    iu.save_image(photo, gradient_image(480, 640, seed=2), quality=95)
    trailer, cut = tmp_path / "trailer.jpg", tmp_path / "cut.jpg"
    trailer.write_bytes(photo.read_bytes() + b"\x00MOTION" * 40)
    cut.write_bytes(photo.read_bytes()[:-2000])
    for method in C.DECODERS:
        np.testing.assert_allclose(C.decode_short_side(trailer, 100, method), C.decode_short_side(photo, 100, method),
                                   atol=2)
        with pytest.raises(iu.ImageError, match="truncated"):
            C.decode_short_side(cut, 100, method)
    out = {m: C.decode_short_side(photo, 100, m).astype(np.float32) / 255 for m in C.DECODERS}
    assert {o.shape for o in out.values()} == {(100, 133, 3)}
    assert np.abs(out["opencv"] - out["full"]).mean() < 0.02 and np.abs(out["pillow"] - out["full"]).mean() < 0.02
    with pytest.raises(iu.ImageError, match="over the limit"):
        C.decode_short_side(photo, 100, max_pixels=1000)


def test_worker_shares_are_disjoint_and_cover_the_photos(photos):
    files = C.content_files(photos)
    shares = [C.ContentStream(files, 32, seed=1, shard=(w, 2)) for w in range(2)]
    assert set(shares[0].files).isdisjoint(shares[1].files)
    assert sorted(shares[0].files + shares[1].files) == sorted(files)
    with pytest.raises(RunError, match="worker 25 of 30 has no content photos"):
        C.ContentStream(files, 32, seed=1, shard=(25, 30))


def test_two_workers_read_their_own_shares_and_no_photo_twice_in_a_step(photos, style_files, tmp_path):
    """A real two-process MultiWorkerMirroredStrategy run on loopback: each worker's saved position, replayed on
    its own share, names the photos it read; no photo appears twice within a global step, every step read a whole
    global batch, and the workers' models agree."""
    ports, run, steps, batch = free_ports(2), tmp_path / "mw", 3, 4
    args = ["train", "--recipe", "seed-original", "--style", style_files[0], "--content", str(photos),
            "--run-dir", str(run), "--size", "32", "--steps", str(steps), "--batch-size", str(batch), "--seed", "2",
            "--log-every", "1", "--set", "strategy=multiworker", "--set", "data_workers=2"]
    procs = []
    for i in range(2):
        tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": i}}
        procs.append(subprocess.Popen([sys.executable, str(ROOT / "stylizer.py"), *args],
                                      env={**os.environ, "TF_CONFIG": json.dumps(tf_config)},
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
    files = C.content_files(photos, run, shares=2)  # the run's own list, dealt to two workers
    read = []
    for w, folder in enumerate((run / "checkpoints", run / "workers" / "worker_1")):
        saved = tf.train.load_checkpoint(str(folder / f"ckpt-{steps}"))
        position = int(saved.get_tensor("data_position/.ATTRIBUTES/VARIABLE_VALUE"))
        stream = C.ContentStream(files, 32, seed=2, shard=(w, 2))
        used = [p for p in range(position) if stream.load(p)[1]]  # the readable positions it went through
        assert len(used) == steps * batch // 2
        read.append([stream.file_at(p) for p in used])
    for step in range(steps):
        global_batch = [f for share in read for f in share[step * 2:(step + 1) * 2]]
        assert len(set(global_batch)) == batch, global_batch
    assert set(read[0]).isdisjoint(read[1])
    chief = tf.train.load_checkpoint(str(run / "checkpoints" / f"ckpt-{steps}"))
    worker = tf.train.load_checkpoint(str(run / "workers" / "worker_1" / f"ckpt-{steps}"))
    names = [n for n in chief.get_variable_to_shape_map() if n.startswith("optimizer/_trainable_variables")]
    assert names
    for n in names:
        np.testing.assert_array_equal(chief.get_tensor(n), worker.get_tensor(n))

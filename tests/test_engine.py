import platform
import threading

import numpy as np
import pytest
import torch

from ldmscan import crops
from ldmscan.detector import load_detector
from ldmscan.engine import Engine, EngineOptions, aggregate, sigmoid
from ldmscan.verdict import Label

from conftest import image_bytes, make_tiny_detector, noise_image


@pytest.fixture
def engine(tiny_detector_path):
    with Engine(load_detector(tiny_detector_path), EngineOptions(device="cpu", tries=1)) as engine:
        yield engine


def test_same_file_same_score(engine):
    data = image_bytes(noise_image(300, 200, 3))
    first = engine.check(data).verdict
    second = engine.check(data).verdict
    assert first.probability == second.probability
    assert first.crop_scores == second.crop_scores


def test_score_is_the_model_on_the_native_crop(engine, tiny_detector_path):
    pixels = noise_image(320, 240, 4)
    verdict = engine.check(image_bytes(pixels)).verdict
    (crop,) = crops.make_crops(pixels, engine.card.crop_size, 1)
    detector = load_detector(tiny_detector_path)
    x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float() / 255.0
    x = (x - 0.5) / 0.5
    with torch.inference_mode():
        expected = sigmoid(float(detector.model(x)))
    assert verdict.probability == pytest.approx(expected, abs=1e-5)


def test_resizing_changes_the_score(engine):
    """A guard for the no-resize rule: the engine must see the stored pixels, so a resized
    copy of an image is a different input."""
    from PIL import Image

    pixels = noise_image(400, 300, 5)
    smaller = np.asarray(Image.fromarray(pixels).resize((200, 150), Image.BICUBIC))
    assert (
        engine.check(image_bytes(pixels)).verdict.probability
        != engine.check(image_bytes(smaller)).verdict.probability
    )


def test_n_tries_aggregate_mean_logit(tiny_detector_path):
    with Engine(load_detector(tiny_detector_path), EngineOptions(device="cpu", tries=4)) as engine:
        verdict = engine.check(image_bytes(noise_image(512, 512, 6))).verdict
    assert verdict.tries == 4 and len(verdict.crop_scores) == 4
    logits = [np.log(p / (1 - p)) for p in verdict.crop_scores]
    assert verdict.probability == pytest.approx(sigmoid(float(np.mean(logits))), abs=1e-6)


def test_aggregations():
    assert aggregate([1.0, 3.0], "mean_logit") == 2.0
    assert aggregate([1.0, 3.0], "max_logit") == 3.0


def test_label_follows_card_thresholds(tmp_path):
    # thresholds of 0 and 1 force the two ends of the scale
    always = make_tiny_detector(
        tmp_path / "always.safetensors", thresholds={"1": {"0.001": 0.0, "0.01": 0.0}}
    )
    never = make_tiny_detector(
        tmp_path / "never.safetensors", thresholds={"1": {"0.001": 1.0, "0.01": 1.0}}
    )
    data = image_bytes(noise_image(128, 128))
    with Engine(load_detector(always), EngineOptions(device="cpu", tries=1)) as engine:
        assert engine.check(data).verdict.label is Label.GENERATED
    with Engine(load_detector(never), EngineOptions(device="cpu", tries=1)) as engine:
        verdict = engine.check(data).verdict
        assert verdict.label is Label.REAL and verdict.reasons


def test_crops_from_many_callers_share_batches(tiny_detector_path):
    with Engine(
        load_detector(tiny_detector_path),
        EngineOptions(device="cpu", tries=1, max_batch=16, max_wait_ms=200, decode_workers=4),
    ) as engine:
        images = [image_bytes(noise_image(128, 128, seed)) for seed in range(12)]
        results = [None] * len(images)

        def caller(i):
            results[i] = engine.check(images[i])

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(len(images))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(r.verdict.probability is not None for r in results)
        assert max(engine.batch_sizes) > 1
        assert sum(engine.batch_sizes) == len(images)
        for r in results:  # each image carries its own stage times; model time is its share
            timings = r.verdict.timings
            assert set(timings) == {"decode_ms", "metadata_ms", "queue_ms", "model_ms"}
            assert timings["model_ms"] > 0 and timings["queue_ms"] >= 0


def test_a_lone_caller_does_not_wait_for_a_batch_to_fill(tiny_detector_path):
    import time

    # with nothing else being decoded, no crop can join the batch: the wait is pure latency
    with Engine(
        load_detector(tiny_detector_path), EngineOptions(device="cpu", tries=1, max_wait_ms=3000)
    ) as engine:
        data = image_bytes(noise_image(128, 128))
        engine.check(data)  # warm-up
        started = time.perf_counter()
        engine.check(data)
        assert time.perf_counter() - started < 1.5


def test_an_image_is_never_split_across_batches(tiny_detector_path):
    # 5 crops per image, 8 per batch: two images would overflow, so each batch holds one whole
    # image instead of 8 crops now and a remainder of 2 later
    with Engine(
        load_detector(tiny_detector_path),
        EngineOptions(device="cpu", tries=5, max_batch=8, max_wait_ms=200, decode_workers=4),
    ) as engine:
        images = [image_bytes(noise_image(256, 256, seed)) for seed in range(6)]
        futures = [engine.submit(data) for data in images]
        assert all(len(f.result().verdict.crop_scores) == 5 for f in futures)
        assert sum(engine.batch_sizes) == 30
        assert set(engine.batch_sizes) == {5}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"GIF89a" + b"\x00" * 20, "broken image"),
        (b"%PDF-1.4 not an image at all", "not an image"),
    ],
)
def test_bad_input_gives_an_error_verdict(engine, data, reason):
    result = engine.check(data)
    assert result.verdict.label is Label.ERROR
    assert reason in result.verdict.error
    assert result.verdict.detector == engine.detector.ref


def test_tiny_image_is_an_error_with_its_metadata(engine):
    result = engine.check(image_bytes(noise_image(8, 8)))
    assert result.verdict.label is Label.ERROR and "too small" in result.verdict.error
    assert result.image.width == 8


def test_wrong_fpr_fails_at_start(tiny_detector_path):
    from ldmscan.errors import DetectorFileError

    with pytest.raises(DetectorFileError):
        Engine(load_detector(tiny_detector_path), EngineOptions(device="cpu", generated_fpr=0.3))


def test_engine_scores_the_cards_placement(tmp_path):
    from test_crops import _textured_with_one_smooth_cell

    pixels, (top, left, h, w) = _textured_with_one_smooth_cell()
    path = make_tiny_detector(tmp_path / "s.safetensors", placement="smoothest", crop_size=128)
    detector = load_detector(path)
    with Engine(detector, EngineOptions(device="cpu", tries=1)) as engine:
        verdict = engine.check(image_bytes(pixels)).verdict
        expected = sigmoid(float(engine.logits(pixels[None, top : top + h, left : left + w])[0]))
    assert verdict.probability == pytest.approx(expected, abs=1e-5)


def test_waiting_crops_do_not_hold_the_whole_image(tmp_path):
    from test_crops import _textured_with_one_smooth_cell

    pixels, box = _textured_with_one_smooth_cell()
    path = make_tiny_detector(tmp_path / "s.safetensors", placement="smoothest", crop_size=128)
    with Engine(load_detector(path), EngineOptions(device="cpu", tries=3)) as engine:
        crops = engine.crops_for(pixels, 3)
    assert len(crops) == 3
    assert all(crop.base is None and crop.flags.owndata for crop in crops)  # own memory
    top, left, h, w = box
    assert any(np.array_equal(c, pixels[top : top + h, left : left + w]) for c in crops)


def test_scored_crops_are_freed_without_waiting_for_the_garbage_collector(tiny_detector_path):
    # a reference cycle through a job's future would keep every image's crops alive until a
    # full collection: gigabytes over a long scan of large photos
    import gc
    import tracemalloc

    images = [image_bytes(noise_image(256, 256, seed)) for seed in range(40)]
    with Engine(load_detector(tiny_detector_path), EngineOptions(device="cpu", tries=5)) as engine:
        crop_bytes = sum(c.nbytes for c in engine.crops_for(noise_image(256, 256), 5))
        engine.check(images[0])  # warm-up
        gc.collect()
        gc.disable()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for data in images:
                engine.check(data)
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
            gc.enable()
    assert held < 5 * crop_bytes, f"{held} bytes still held after 40 images"


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_engine_keeps_large_buffers_in_the_heap(tiny_detector_path):
    from ldmscan.allocator import keep_large_buffers_in_heap

    keep_large_buffers_in_heap.cache_clear()  # forget any earlier engine's call
    with Engine(load_detector(tiny_detector_path), EngineOptions(device="cpu")):
        assert keep_large_buffers_in_heap.cache_info().currsize == 1  # this engine applied it
    assert keep_large_buffers_in_heap() is True  # and glibc accepted the thresholds


def test_images_decoded_elsewhere_are_scored_in_shared_batches(tiny_detector_path):
    # the Ray actors' path: Preparer in one process, score_prepared in another; the batches
    # must fill as they do for submitted bytes, and the verdicts must be the same
    images = [image_bytes(noise_image(120, 100, seed)) for seed in range(8)]
    options = EngineOptions(device="cpu", tries=1, max_batch=8, max_wait_ms=200)
    with Engine(load_detector(tiny_detector_path), options) as engine:
        direct = [engine.check(data).verdict for data in images]
        engine.batch_sizes.clear()
        prepared = [engine.preparer.prepare(data, 1) for data in images]
        futures = [engine.score_prepared(p) for p in prepared]
        remote = [f.result().verdict for f in futures]
        assert max(engine.batch_sizes) > 1
        assert engine.pending == 0
    for a, b in zip(direct, remote, strict=True):
        assert (a.sha256, a.label) == (b.sha256, b.label)
        assert a.probability == pytest.approx(b.probability, abs=1e-6)

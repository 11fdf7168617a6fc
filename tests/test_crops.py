import numpy as np
import pytest

from ldmscan import crops

from conftest import noise_image


def test_one_try_is_the_grid_aligned_centre():
    ((top, left, h, w),) = crops.crop_boxes(480, 640, 192, 1)
    assert (h, w) == (192, 192)
    assert top % crops.GRID == 0 and left % crops.GRID == 0
    assert abs((top + h / 2) - 240) <= crops.GRID and abs((left + w / 2) - 320) <= crops.GRID


@pytest.mark.parametrize("tries", [2, 3, 4, 5, 9, 16])
def test_n_tries_are_distinct_aligned_and_inside(tries):
    boxes = crops.crop_boxes(1024, 1536, 192, tries)
    assert len(boxes) == tries == len(set(boxes))
    for top, left, h, w in boxes:
        assert top % crops.GRID == 0 and left % crops.GRID == 0
        assert 0 <= top <= 1024 - h and 0 <= left <= 1536 - w
    assert boxes == crops.crop_boxes(1024, 1536, 192, tries)  # deterministic


def test_n_tries_spread_over_the_image():
    boxes = crops.crop_boxes(1000, 1000, 100, 4)
    tops = {t for t, *_ in boxes}
    lefts = {left for _, left, *_ in boxes}
    assert min(tops) == 0 and max(tops) >= 880
    assert min(lefts) == 0 and max(lefts) >= 880


def test_small_image_is_scored_whole_not_padded():
    boxes = crops.crop_boxes(100, 150, 192, 5)
    assert boxes == [(0, 0, 100, 150)]


def test_crops_are_native_pixels_never_resized():
    pixels = noise_image(500, 400)
    for crop, (top, left, h, w) in zip(
        crops.make_crops(pixels, 128, 4), crops.crop_boxes(400, 500, 128, 4), strict=True
    ):
        assert crop.shape == (128, 128, 3)
        assert np.array_equal(crop, pixels[top : top + h, left : left + w])


def test_random_training_box_follows_the_same_grid():
    rng = np.random.default_rng(0)
    for _ in range(50):
        top, left, h, w = crops.random_aligned_box(300, 260, 128, rng)
        assert top % 8 == 0 and left % 8 == 0
        assert top + h <= 300 and left + w <= 260


def test_tries_must_be_positive():
    with pytest.raises(ValueError):
        crops.crop_boxes(100, 100, 64, 0)


def _textured_with_one_smooth_cell() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Noise everywhere except one grid cell holding a gentle gradient (fine detail, not flat)."""
    pixels = noise_image(600, 600, 3)
    boxes = crops.crop_boxes(600, 600, 128, crops.CANDIDATES)
    top, left, h, w = boxes[2]
    ramp = np.linspace(60, 200, w, dtype=np.float32)[None, :, None]
    speckle = np.random.default_rng(1).normal(0, 2.0, (h, w, 3))
    pixels[top : top + h, left : left + w] = np.clip(ramp + speckle, 0, 255).astype(np.uint8)
    return pixels, boxes[2]


def test_smoothest_placement_takes_the_least_detailed_cells():
    pixels, smooth_box = _textured_with_one_smooth_cell()
    assert crops.place(pixels, 128, 1, "smoothest") == [smooth_box]
    three = crops.place(pixels, 128, 3, "smoothest")
    assert smooth_box in three and len(set(three)) == 3
    assert three == crops.place(pixels, 128, 3, "smoothest")  # deterministic
    for crop, (top, left, h, w) in zip(
        crops.make_crops(pixels, 128, 3, "smoothest"), three, strict=True
    ):
        assert np.array_equal(crop, pixels[top : top + h, left : left + w])


def test_smoothest_placement_leaves_flat_cells_for_last():
    pixels, smooth_box = _textured_with_one_smooth_cell()
    flat_box = crops.crop_boxes(600, 600, 128, crops.CANDIDATES)[6]
    top, left, h, w = flat_box
    pixels[top : top + h, left : left + w] = 255  # clipped sky: no fingerprint can survive
    assert crops.texture_energy(pixels[top : top + h, left : left + w]) < crops.FLAT_ENERGY
    assert crops.place(pixels, 128, 1, "smoothest") == [smooth_box]
    assert flat_box not in crops.place(pixels, 128, crops.CANDIDATES - 1, "smoothest")
    assert flat_box in crops.place(pixels, 128, crops.CANDIDATES, "smoothest")


def test_smoothest_placement_on_small_images_and_many_tries():
    assert crops.place(noise_image(150, 100), 192, 1, "smoothest") == [(0, 0, 100, 150)]
    boxes = crops.place(noise_image(1200, 900), 128, 12, "smoothest")  # more tries than cells
    assert len(boxes) == len(set(boxes)) == 12


def test_unknown_placement():
    with pytest.raises(ValueError, match="unknown placement"):
        crops.place(noise_image(100, 100), 64, 1, "random")

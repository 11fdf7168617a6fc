import io

import numpy as np
import pytest
from PIL import Image

from ldmscan import imaging
from ldmscan.errors import ImageError

from conftest import image_bytes, noise_image


def test_rgb_png_is_decoded_unchanged():
    pixels = noise_image(70, 50)
    decoded = imaging.decode(image_bytes(pixels))
    assert decoded.pixels.shape == (50, 70, 3)
    assert np.array_equal(decoded.pixels, pixels)
    assert decoded.format == "PNG" and decoded.mode == "RGB"
    assert decoded.sha256 == imaging.sha256_bytes(image_bytes(pixels))


@pytest.mark.parametrize("mode", ["L", "LA", "1", "P", "RGBA", "CMYK", "I;16", "I", "F"])
def test_every_mode_becomes_rgb_deterministically(mode):
    pixels = noise_image(40, 36)
    image = Image.fromarray(pixels).convert("L" if mode in {"I;16", "I", "F"} else "RGB")
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image).astype(np.uint16) * 257)
    elif mode in {"I", "F"}:
        image = image.convert(mode)
    else:
        image = image.convert(mode)
    fmt = "TIFF" if mode in {"CMYK", "I;16", "I", "F"} else "PNG"
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    first = imaging.decode(buffer.getvalue())
    second = imaging.decode(buffer.getvalue())
    assert first.pixels.shape == (36, 40, 3) and first.pixels.dtype == np.uint8
    assert np.array_equal(first.pixels, second.pixels)
    assert first.mode == mode


def test_sixteen_bit_is_scaled_not_clipped():
    gray = np.full((32, 32), 65535, dtype=np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="PNG")
    decoded = imaging.decode(buffer.getvalue())
    assert decoded.pixels.max() == 255 and decoded.pixels.min() == 255
    half = np.full((32, 32), 32896, dtype=np.uint16)  # 128 * 257
    buffer = io.BytesIO()
    Image.fromarray(half).save(buffer, format="PNG")
    assert imaging.decode(buffer.getvalue()).pixels[0, 0, 0] == 128


def test_alpha_is_dropped_not_composited():
    rgba = np.dstack([noise_image(30, 30), np.zeros((30, 30), np.uint8)])
    decoded = imaging.decode(image_bytes(rgba))
    assert np.array_equal(decoded.pixels, rgba[..., :3])


def test_animation_uses_first_frame():
    frames = [Image.fromarray(noise_image(40, 40, seed)).convert("P") for seed in (1, 2, 3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    decoded = imaging.decode(buffer.getvalue())
    assert decoded.frames == 3
    assert np.array_equal(decoded.pixels, np.asarray(frames[0].convert("RGB")))


def test_empty_file_is_an_error():
    with pytest.raises(ImageError, match="empty"):
        imaging.decode(b"")


def test_truncated_file_is_an_error():
    data = image_bytes(noise_image(256, 256), "JPEG")
    with pytest.raises(ImageError, match="broken image"):
        imaging.decode(data[: len(data) // 2])


def test_text_is_not_an_image():
    with pytest.raises(ImageError, match="not an image"):
        imaging.decode(b"hello world, definitely not pixels" * 4)


def test_pixel_limit_stops_decompression_bombs():
    data = image_bytes(np.zeros((1000, 1000, 3), np.uint8))
    with pytest.raises(ImageError, match="too many pixels"):
        imaging.decode(data, max_pixels=999_999)
    assert imaging.decode(data, max_pixels=1_000_000).width == 1000


def test_sniffing_is_by_content(tmp_path):
    disguised = tmp_path / "photo.dat"
    disguised.write_bytes(image_bytes(noise_image(40, 40), "JPEG"))
    named = tmp_path / "broken.png"
    named.write_bytes(b"")
    other = tmp_path / "notes.txt"
    other.write_text("plain text")
    assert imaging.sniff_format(disguised.read_bytes()[:64]) == "JPEG"
    assert imaging.looks_like_image(disguised)
    assert imaging.looks_like_image(named)  # by extension, so its breakage gets reported
    assert not imaging.looks_like_image(other)


def test_oversized_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(image_bytes(noise_image(64, 64)))
    with pytest.raises(ImageError, match="over the"):
        imaging.read_file(path, max_bytes=100)

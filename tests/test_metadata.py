"""Metadata evidence on real generator files (dev/metadata_fixtures), real C2PA-signed photos,
and files with forged or hostile metadata written here."""

import csv
import io
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from ldmscan import imaging, metadata
from ldmscan.detector import load_detector
from ldmscan.engine import Engine, EngineOptions
from ldmscan.verdict import Label, Strength

from conftest import DEV_DIR, image_bytes, make_tiny_detector, noise_image

FIXTURES = DEV_DIR / "metadata_fixtures"
needs_dev = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason="shared/data/dev is not beside the checkout"
)


def fixture_rows():
    if not FIXTURES.is_dir():
        return []
    with (FIXTURES / "MANIFEST.tsv").open() as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


# sd-parsers reads the compressed stealth format only; this file uses the plain variant
UNSUPPORTED = {"automatic1111__automatic1111_stealth.a2a805c0.png"}


@needs_dev
@pytest.mark.parametrize(
    "row", [r for r in fixture_rows() if r["file"] not in UNSUPPORTED], ids=lambda r: r["file"][:40]
)
def test_generator_parameters_are_strong_evidence(row):
    data = (FIXTURES / row["file"]).read_bytes()
    found = metadata.extract(data)
    (evidence,) = [e for e in found.evidence if e.kind == "generator-parameters"]
    assert evidence.strength is Strength.STRONG and evidence.says_generated
    family = row["generator"].split()[0].split("(")[0]
    assert family.lower()[:6] in evidence.detail.lower()
    # the engine hands over the image its decode already loaded: the same evidence, one decode
    loaded = imaging.decode(data, keep_image=True).image
    assert metadata.extract(data, image=loaded) == found


def test_png_text_after_the_pixels_is_read_from_the_loaded_image():
    # A1111 writes `parameters` before IDAT; other tools append text after it, which Pillow
    # reaches only by decoding: the loaded image must carry it without a second decode
    buffer = io.BytesIO()
    Image.fromarray(noise_image(64, 64)).save(buffer, format="PNG")
    png = buffer.getvalue()
    end = png.rindex(b"IEND") - 4  # the IEND chunk's length field
    text = b"parameters\x00a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64"
    chunk = len(text).to_bytes(4, "big") + b"tEXt" + text
    chunk += zlib.crc32(b"tEXt" + text).to_bytes(4, "big")
    data = png[:end] + chunk + png[end:]
    decoded = imaging.decode(data, keep_image=True)
    assert decoded.image is not None and decoded.image.text["parameters"].startswith("a cat")
    found = metadata.extract(data, image=decoded.image)
    assert [e.kind for e in found.evidence if e.says_generated] == ["generator-parameters"]
    assert found == metadata.extract(data)
    assert imaging.decode(data).image is None  # kept only when asked


@needs_dev
def test_c2pa_signed_camera_photos_are_shown_not_trusted():
    for name in (
        "public-testfiles__image_jpeg__nikon-20221019-building.721e7536.jpeg",
        "public-testfiles__image_jpeg__truepic-20230212-camera.379aabc7.jpg",
    ):
        found = metadata.extract((DEV_DIR / "real" / name).read_bytes())
        (c2pa,) = [e for e in found.evidence if e.kind == "c2pa"]
        assert "C2PA manifest by" in c2pa.detail and "validation" in c2pa.detail
        assert c2pa.strength is Strength.INFO and not c2pa.says_generated


@needs_dev
def test_broken_c2pa_is_an_error_not_a_crash():
    path = DEV_DIR / "real" / "public-testfiles__image_jpeg__nikon-20221019-building.721e7536.jpeg"
    data = bytearray(path.read_bytes())
    start = data.find(b"c2pa")
    data[start + 40 : start + 400] = b"\x00" * 360
    found = metadata.extract(bytes(data))
    kinds = {e.kind for e in found.evidence}
    assert "c2pa" in kinds or "metadata-error" in kinds


def _xmp_png(source_type: str, pixels=None) -> bytes:
    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        f'Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/{source_type}"/>'
        "</rdf:RDF></x:xmpmeta>"
    )
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp)
    buffer = io.BytesIO()
    Image.fromarray(noise_image(64, 64) if pixels is None else pixels).save(
        buffer, format="PNG", pnginfo=info
    )
    return buffer.getvalue()


def test_iptc_ai_source_type_is_strong():
    found = metadata.extract(_xmp_png("trainedAlgorithmicMedia"))
    (evidence,) = [e for e in found.evidence if e.kind == "xmp-digital-source-type"]
    assert evidence.strength is Strength.STRONG and "generative AI" in evidence.detail


def test_iptc_camera_source_type_is_info():
    found = metadata.extract(_xmp_png("digitalCapture"))
    (evidence,) = [e for e in found.evidence if e.kind == "xmp-digital-source-type"]
    assert evidence.strength is Strength.INFO


def test_giant_xmp_is_an_error_not_a_crash():
    data = image_bytes(noise_image(64, 64)) + b"<x:xmpmeta>" + b"A" * (2 << 20) + b"</x:xmpmeta>"
    found = metadata.extract(data)
    assert any(e.kind == "metadata-error" and "XMP" in e.detail for e in found.evidence)


def test_xml_bomb_in_xmp_is_refused():
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">&lol2;</x:xmpmeta>'
    )
    data = image_bytes(noise_image(64, 64)) + bomb.encode()
    found = metadata.extract(data)
    assert any(e.kind == "metadata-error" for e in found.evidence)


def _jpeg_with_exif(**tags) -> bytes:
    exif = Image.Exif()
    for tag, value in tags.items():
        exif[int(tag[1:])] = value
    buffer = io.BytesIO()
    Image.fromarray(noise_image(96, 96)).save(buffer, format="JPEG", exif=exif)
    return buffer.getvalue()


def test_forged_camera_exif_is_weak():
    found = metadata.extract(_jpeg_with_exif(t271="Canon", t272="EOS R5"))
    assert found.camera_make == "Canon" and found.camera_model == "EOS R5"
    (camera,) = [e for e in found.evidence if e.kind == "camera-exif"]
    assert camera.strength is Strength.WEAK


def test_malformed_exif_is_recorded_not_raised():
    data = bytearray(_jpeg_with_exif(t271="Canon"))
    start = data.find(b"Exif\x00\x00")
    data[start + 10 : start + 30] = b"\xff" * 20  # wreck the IFD offsets
    found = metadata.extract(bytes(data))
    assert isinstance(found.evidence, tuple)  # no exception; whatever could be read is kept


def test_strong_metadata_overrides_pixels_and_exif_never_lowers(tmp_path):
    never = make_tiny_detector(
        tmp_path / "never.safetensors", thresholds={"1": {"0.001": 1.0, "0.01": 1.0}}
    )
    always = make_tiny_detector(
        tmp_path / "always.safetensors", thresholds={"1": {"0.001": 0.0, "0.01": 0.0}}
    )
    with Engine(load_detector(never), EngineOptions(device="cpu", tries=1)) as engine:
        verdict = engine.check(_xmp_png("trainedAlgorithmicMedia")).verdict
        assert verdict.label is Label.GENERATED and verdict.probability is not None
        assert any("xmp-digital-source-type" in r for r in verdict.reasons)
    with Engine(load_detector(always), EngineOptions(device="cpu", tries=1)) as engine:
        verdict = engine.check(_jpeg_with_exif(t271="Nikon", t272="D850")).verdict
        assert verdict.label is Label.GENERATED
        assert any(e.kind == "camera-exif" for e in verdict.evidence)


@needs_dev
def test_tiny_generator_file_is_labelled_by_metadata(tiny_detector_path):
    data = (FIXTURES / "comfyui__img2img_cropped.bea9c1c4.png").read_bytes()
    with Engine(load_detector(tiny_detector_path), EngineOptions(device="cpu", tries=1)) as engine:
        verdict = engine.check(data).verdict
    assert verdict.label is Label.GENERATED and verdict.probability is None
    assert any("pixels not scored" in r for r in verdict.reasons)
    assert verdict.error is None


def test_no_metadata_no_evidence():
    found = metadata.extract(image_bytes(np.zeros((40, 40, 3), np.uint8)))
    assert found.evidence == () and found.exif == {}


def test_stable_diffusion_watermarks_are_strong_evidence():
    pytest.importorskip("imwatermark", reason="the `watermark` extra is not installed")
    import cv2
    from imwatermark import WatermarkEncoder

    from ldmscan.metadata import SD1_WATERMARK, SDXL_WATERMARK_BITS

    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:512, 0:512]
    rgb = np.clip(
        np.stack([127 + 90 * np.sin(x / (40 + 9 * c) + y / 70) for c in range(3)], -1)
        + rng.normal(0, 4, (512, 512, 3)),
        0,
        255,
    ).astype(np.uint8)
    assert not [
        e
        for e in metadata.extract(image_bytes(rgb), watermark=True).evidence
        if e.kind == "sd-watermark"
    ]

    sd1 = WatermarkEncoder()
    sd1.set_watermark("bytes", SD1_WATERMARK)
    marked = cv2.cvtColor(
        sd1.encode(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), "dwtDct"), cv2.COLOR_BGR2RGB
    )
    (found,) = [
        e
        for e in metadata.extract(image_bytes(marked), watermark=True).evidence
        if e.kind == "sd-watermark"
    ]
    assert "1.x" in found.detail and found.strength is Strength.STRONG
    off_by_default = metadata.extract(image_bytes(marked)).evidence
    assert not [e for e in off_by_default if e.kind == "sd-watermark"]

    sdxl = WatermarkEncoder()
    sdxl.set_watermark("bits", SDXL_WATERMARK_BITS)
    (found,) = [
        e
        for e in metadata.extract(image_bytes(sdxl.encode(rgb, "dwtDct")), watermark=True).evidence
        if e.kind == "sd-watermark"
    ]
    assert "XL" in found.detail

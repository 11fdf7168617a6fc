"""Coverage-guided fuzzing (atheris, libFuzzer) of the paths hostile bytes reach first:

  decode    imaging.decode + metadata.extract (JPEG/PNG/WebP/TIFF/GIF, EXIF, XMP, C2PA, chunks)
  multipart the HTTP API's body parser (server.app._read_image on a multipart request)

The contract under test: decode raises nothing but ImageError, extract raises nothing at all
(metadata problems become evidence), the body parser raises nothing but BadRequest and aiohttp's
HTTP errors. Anything else is a crash: libFuzzer writes the input to --crashes, and every file
there is replayed by tests/test_fuzz_regressions.py.

  pip install 'ldmscan[fuzz]'
  python scripts/fuzz.py decode --seconds 300 --seeds ../shared/data/dev/real --seeds tests/fuzz
  python scripts/fuzz.py multipart --seconds 120

Seeds: small images from the given folders (files over 256 kB are skipped: libFuzzer mutates
small inputs far faster), the broken-file corpus of tests/test_hostile.py, and the regression
files themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
from pathlib import Path

REGRESSIONS = Path(__file__).resolve().parents[1] / "tests" / "fuzz"
MAX_SEED_BYTES = 256 * 1024
BOUNDARY = "ldmscanfuzz"


def decode_target(data: bytes) -> None:
    from ldmscan import imaging, metadata
    from ldmscan.errors import ImageError

    try:
        decoded = imaging.decode(data, max_pixels=4_000_000, keep_image=True)
    except ImageError:
        metadata.extract(data)  # a file that does not decode still has its metadata read
        return
    metadata.extract(data, image=decoded.image)


def multipart_target(data: bytes) -> None:
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from ldmscan.server.app import BadRequest, _read_image

    async def parse() -> None:
        loop = asyncio.get_running_loop()
        from aiohttp import streams

        protocol = _Protocol()
        payload = streams.StreamReader(protocol, 2**16, loop=loop)
        payload.feed_data(data)
        payload.feed_eof()
        request = make_mocked_request(
            "POST",
            "/v1/check",
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
            payload=payload,
        )
        with contextlib.suppress(BadRequest, web.HTTPException):  # the parser's own answers
            await _read_image(request)

    asyncio.run(parse())


class _Protocol:
    """What aiohttp's StreamReader asks of its protocol (flow control), nothing more."""

    _reading_paused = False

    def pause_reading(self, pause_parser: bool = True) -> None: ...

    def resume_reading(self, resume_parser: bool = True) -> None: ...


def _seed_files(folders: list[Path]) -> list[Path]:
    found = []
    for folder in [*folders, REGRESSIONS]:
        if folder.is_file():
            found.append(folder)
            continue
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if path.is_file() and path.stat().st_size <= MAX_SEED_BYTES:
                found.append(path)
    return found


def _hostile_seeds(out: Path) -> None:
    """The broken files tests/test_hostile.py makes, as bytes."""
    sys.path.insert(0, str(REGRESSIONS.parent))
    from test_hostile import png_header

    out.joinpath("bomb.png").write_bytes(png_header(30_000, 30_000))
    out.joinpath("empty").write_bytes(b"")
    out.joinpath("text.jpg").write_bytes(b"a text file named like a JPEG\n")
    out.joinpath("jpeg-head").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)
    out.joinpath("multipart").write_bytes(
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + png_header(64, 64)
        + f'\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="page_url"\r\n\r\n'
        f"https://example.com/\r\n--{BOUNDARY}--\r\n".encode()
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("target", choices=["decode", "multipart"])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--seeds", type=Path, action="append", default=[])
    parser.add_argument("--crashes", type=Path, default=REGRESSIONS)
    args, rest = parser.parse_known_args()

    import warnings

    import atheris

    warnings.simplefilter("ignore")  # Pillow warns on every malformed tag: noise at 1,000s/s
    # instrument what parses hostile bytes, not the rest of the import tree (SQLAlchemy, ...)
    with atheris.instrument_imports(
        include=["PIL", "ldmscan", "exifread", "aiohttp", "defusedxml"]
    ):
        import aiohttp.multipart  # noqa: F401
        import PIL.Image  # noqa: F401

        import ldmscan.imaging
        import ldmscan.metadata
    import ldmscan.server.app  # noqa: F401

    corpus = Path(tempfile.mkdtemp(prefix="ldmscan-fuzz-"))
    for index, seed in enumerate(_seed_files(args.seeds)):
        shutil.copyfile(seed, corpus / f"seed{index:05d}{seed.suffix}")
    _hostile_seeds(corpus)
    args.crashes.mkdir(parents=True, exist_ok=True)
    target = decode_target if args.target == "decode" else multipart_target
    libfuzzer = [
        sys.argv[0],
        str(corpus),
        f"-max_total_time={args.seconds}",
        f"-artifact_prefix={args.crashes}/{args.target}-",
        "-print_final_stats=1",
        "-rss_limit_mb=4096",
        "-timeout=20",
        *rest,
    ]
    print(f"fuzzing {args.target} for {args.seconds}s from {len(list(corpus.iterdir()))} seeds")
    atheris.Setup(libfuzzer, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

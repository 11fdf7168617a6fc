"""Every input the fuzzer (scripts/fuzz.py) ever found crashing, replayed through the same
targets with the same contract: decode raises only ImageError, metadata extraction raises
nothing, the multipart body parser raises only its 400 or aiohttp's HTTP errors. The corpus
also holds hand-made hostile seeds, so the replay never runs empty."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

FUZZ_DIR = Path(__file__).parent / "fuzz"
FOUND = sorted(p for p in FUZZ_DIR.iterdir() if p.is_file() and p.suffix != ".md")


def _targets():
    spec = importlib.util.spec_from_file_location(
        "fuzz_script", Path(__file__).parents[1] / "scripts" / "fuzz.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _replay(targets, name: str, data: bytes) -> None:
    if name.startswith("multipart"):
        targets.multipart_target(data)
    else:
        targets.decode_target(data)


@pytest.mark.parametrize("case", FOUND, ids=[p.name for p in FOUND])
def test_replay_what_the_fuzzer_found(case):
    _replay(_targets(), case.name, case.read_bytes())


def test_replay_the_hand_made_seeds(tmp_path):
    targets = _targets()
    targets._hostile_seeds(tmp_path)
    seeds = sorted(tmp_path.iterdir())
    assert len(seeds) >= 5
    for seed in seeds:
        _replay(targets, seed.name, seed.read_bytes())

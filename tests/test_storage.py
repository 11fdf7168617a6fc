import pytest
from sqlalchemy import text

from ldmscan.detector import load_detector
from ldmscan.engine import Engine, EngineOptions
from ldmscan.errors import DatabaseError
from ldmscan.storage import Location, Store, migrate

from conftest import image_bytes, noise_image


@pytest.fixture
def engine(tiny_detector_path):
    with Engine(load_detector(tiny_detector_path), EngineOptions(device="cpu", tries=1)) as engine:
        yield engine


def test_schema_is_created_on_first_use(db_url):
    with Store(db_url) as store:
        assert migrate.current_revision(store.db) == migrate.head_revision()
        assert store.counts() == {"images": 0, "verdicts": 0, "locations": 0}


def test_save_and_read_back(db_url, engine):
    data = image_bytes(noise_image(150, 100))
    result = engine.check(data)
    with Store(db_url) as store:
        detector_id = store.detector_id(engine.detector)
        store.save([(result, Location("/photos/a.png", "scan"))], detector_id)
        sha = result.verdict.sha256
        assert store.image(sha)["width"] == 150
        (row,) = store.verdicts_for(sha)
        assert row["label"] == result.verdict.label.value
        assert row["probability"] == pytest.approx(result.verdict.probability)
        assert row["detector_name"] == "tiny-test"
        assert store.stored_verdicts([sha, "0" * 64], detector_id).keys() == {sha}
        assert [loc["uri"] for loc in store.locations_for(sha)] == ["/photos/a.png"]


def test_one_batch_with_repeats_and_known_images(db_url, engine):
    # one multi-row statement per table: copies of one image, one location twice, an image
    # already stored, and an error row that must not blank an image's known width
    from ldmscan.errors import ImageError

    first = engine.check(image_bytes(noise_image(120, 90, 1)))
    second = engine.check(image_bytes(noise_image(64, 64, 2)))
    with Store(db_url) as store:
        detector_id = store.detector_id(engine.detector)
        store.save([(first, Location("/a/first.png", "scan"))], detector_id)
        error_row = engine.error_result(
            "vanished", first.verdict.sha256, 10, code=ImageError.UNREADABLE
        )
        batch = [
            (second, Location("/a/second.png", "scan")),
            (second, Location("/b/copy-of-second.png", "scan")),
            (second, Location("/a/second.png", "scan")),
            (first, Location("/b/first-again.png", "watch", context={"page": "x"})),
            (error_row, Location("/a/first.png", "scan")),
        ]
        store.save(batch, detector_id)
        assert store.counts() == {"images": 2, "verdicts": 2, "locations": 4}
        assert store.image(first.verdict.sha256)["width"] == 120
        (row,) = store.verdicts_for(first.verdict.sha256)
        assert row["label"] == "error"  # the batch's last word on that image
        uris = {loc["uri"] for loc in store.locations_for(second.verdict.sha256)}
        assert uris == {"/a/second.png", "/b/copy-of-second.png"}


def test_one_verdict_per_image_and_detector(db_url, engine):
    data = image_bytes(noise_image(150, 100, 2))
    result = engine.check(data)
    with Store(db_url) as store:
        detector_id = store.detector_id(engine.detector)
        for uri in ("/a.png", "/b.png", "/a.png"):
            store.save([(result, Location(uri, "scan"))], detector_id)
        assert store.counts() == {"images": 1, "verdicts": 1, "locations": 2}


def test_error_verdicts_are_recorded(db_url, engine):
    result = engine.check(b"not an image at all, just text")
    with Store(db_url) as store:
        store.save([(result, Location("/x.jpg"))], store.detector_id(engine.detector))
        (row,) = store.verdicts_for(result.verdict.sha256)
        assert row["label"] == "error" and "not an image" in row["error"]


def test_exif_is_kept_whole_with_camera_columns(db_url, engine):
    from PIL import Image

    image = Image.fromarray(noise_image(120, 90))
    exif = Image.Exif()
    exif[0x010F] = "Canon"  # Make
    exif[0x0110] = "EOS 5D"  # Model
    exif[0x0131] = "Darktable"  # Software
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    result = engine.check(buffer.getvalue())
    with Store(db_url) as store:
        store.save([(result, Location("/cam.jpg"))], store.detector_id(engine.detector))
        row = store.exif_for(result.verdict.sha256)
        assert row["camera_make"] == "Canon" and row["camera_model"] == "EOS 5D"
        assert row["software"] == "Darktable"
        assert row["tags"]["Image Make"] == "Canon"


def test_deleted_location_is_marked(db_url, engine):
    result = engine.check(image_bytes(noise_image(64, 64, 9)))
    with Store(db_url) as store:
        store.save([(result, Location("/gone.png"))], store.detector_id(engine.detector))
        assert store.mark_deleted("/gone.png") == 1
        assert store.locations_for(result.verdict.sha256)[0]["deleted_at"] is not None


def test_database_newer_than_program_is_refused(db_url):
    with Store(db_url) as store, store.db.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed9999'"))
    with pytest.raises(DatabaseError, match="newer ldmscan"):
        Store(db_url)


def test_upgrade_is_idempotent(db_url):
    with Store(db_url) as store:
        migrate.upgrade(store.db)
        migrate.upgrade(store.db)
        assert migrate.is_current(store.db)


def test_the_fast_revision_reading_agrees_with_alembic():
    """`known_revisions` reads file names; Alembic reads the scripts' own ids and links."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert migrate.head_revision() == script.get_current_head()
    ordered = [rev.revision for rev in script.walk_revisions()][::-1]
    assert migrate.known_revisions() == ordered


def test_claims_let_one_process_score_an_image(db_url, engine):
    a, b = "a" * 64, "b" * 64
    with Store(db_url) as store:
        detector_id = store.detector_id(engine.detector)
        assert store.claim([a, b], detector_id, "host:1:x", stale_after_s=60) == {a, b}
        # held by a live owner: another process waits
        assert store.claim([a], detector_id, "host:2:y", stale_after_s=60) == set()
        # an owner known dead (a watcher killed and restarted) is taken over at once
        taken = store.claim(
            [a], detector_id, "host:2:y", stale_after_s=60, owner_is_gone=lambda o: o == "host:1:x"
        )
        assert taken == {a}
        # a claim older than the stale limit is taken over too
        assert store.claim([b], detector_id, "host:3:z", stale_after_s=0) == {b}
        store.release([a], detector_id, "host:2:y")
        assert store.claim([a], detector_id, "host:4:w", stale_after_s=60) == {a}
        result = engine.check(image_bytes(noise_image(80, 80, 5)))
        sha = result.verdict.sha256
        assert store.claim([sha], detector_id, "host:4:w", stale_after_s=60) == {sha}
        store.save([(result, Location("/c.png", "scan"))], detector_id)  # releases it
        assert store.claim([sha], detector_id, "host:5:v", stale_after_s=60) == {sha}

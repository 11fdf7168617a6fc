"""The verdict database schema (SQLAlchemy Core). Alembic migrations in migrations/ create it;
`metadata` here is what autogenerate compares against."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

images = Table(
    "images",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("size_bytes", BigInteger, nullable=False),
    Column("width", Integer),
    Column("height", Integer),
    Column("format", String(32)),
    Column("mode", String(16)),
    Column("frames", Integer),
    Column("first_seen", DateTime(timezone=True), nullable=False),
)

locations = Table(
    "locations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
    Column("uri", Text, nullable=False),  # absolute path or a bucket URI (UTF-8 display form)
    Column("raw_uri", LargeBinary),  # the path's exact bytes, when they are not valid UTF-8
    Column("source", String(16), nullable=False),  # scan | watch | api
    Column("mtime", DateTime(timezone=True)),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("deleted_at", DateTime(timezone=True)),
    Column("context", JSON),  # e.g. page URL and image URL sent by the browser extension
    UniqueConstraint("image_id", "uri", "source", name="uq_locations_image_uri_source"),
)
Index("ix_locations_uri", locations.c.uri)

detectors = Table(
    "detectors",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False),
    Column("version", String(64), nullable=False),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("architecture", String(128)),
    Column("card", JSON, nullable=False),
    Column("first_used", DateTime(timezone=True), nullable=False),
)

verdicts = Table(
    "verdicts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
    # the detector the check ran under, also for files that failed to decode: a newer detector
    # (or larger limits) gets its own try at them
    Column("detector_id", Integer, ForeignKey("detectors.id"), nullable=False),
    Column("label", String(16), nullable=False),
    Column("probability", Float),
    Column("tries", Integer, nullable=False),
    Column("crop_scores", JSON),
    Column("reasons", JSON),
    Column("evidence", JSON),
    Column("timings", JSON),
    Column("error", Text),
    Column("error_code", String(32)),  # ImageError.code of an error verdict
    Column("source", String(16), nullable=False),
    # the latent-space guess (attribution.LATENT_SPACES key) and the whole attribution (every
    # class's probability); NULL when the verdict carries none (migration 0005)
    Column("attribution_guess", String(32)),
    Column("attribution", JSON),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # one verdict per (image, detector version): a rescan replaces it, a crash cannot double it
    UniqueConstraint("image_id", "detector_id", name="uq_verdicts_image_detector"),
)
Index("ix_verdicts_created_at", verdicts.c.created_at)
Index("ix_verdicts_label", verdicts.c.label)
Index("ix_verdicts_attribution_guess", verdicts.c.attribution_guess)

exif = Table(
    "exif",
    metadata,
    Column("image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("camera_make", String(128)),
    Column("camera_model", String(128)),
    Column("software", String(256)),
    Column("capture_time", String(32)),
    Column("tags", JSON, nullable=False),
)

reviews = Table(
    "reviews",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
    Column("label", String(16), nullable=False),  # real | generated: a reviewer's decision
    Column("note", Text),
    Column("reviewer", String(128)),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
Index("ix_reviews_image_id", reviews.c.image_id)

# Who is scoring an image right now: several watchers on one shared folder (or one bucket) see
# the same new file; the first to claim it scores it, the others wait for its verdict. A claim
# is removed when the verdict is saved and goes stale after a while (its process died).
claims = Table(
    "claims",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column(
        "detector_id",
        Integer,
        ForeignKey("detectors.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("owner", String(160), nullable=False),  # host:pid:nonce of the claiming process
    Column("claimed_at", DateTime(timezone=True), nullable=False),
)

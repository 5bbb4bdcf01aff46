"""The real device recordings the parsing, upload and browser tests use: shared/activity-samples beside the
repository (MANIFEST.tsv says what each one holds).

Where they are missing, the tests that need them skip; with KINDSTRIDE_REQUIRE_SERVICES=1 (CI) they run and
fail instead, so a CI machine without the recordings is noticed rather than silently testing less."""

from pathlib import Path

import pytest

from tests.support.services import REQUIRE_SERVICES

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "activity-samples"

needs_samples = pytest.mark.skipif(
    not SAMPLES.is_dir() and not REQUIRE_SERVICES,
    reason=f"activity samples not found in {SAMPLES}")

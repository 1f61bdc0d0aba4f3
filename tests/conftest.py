"""Shared pytest set-up. Each area keeps its fixtures in tests/fixtures_<area>.py, listed here."""

pytest_plugins: list[str] = ["tests.fixtures_hub", "tests.fixtures_ic", "tests.fixtures_icsim", "tests.fixtures_models", "tests.fixtures_upload"]

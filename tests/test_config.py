"""feeds.yaml validation: every problem reported at once, with its location."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import load_config, parse_config
from monitor.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
BAD = Path(__file__).parent / "fixtures" / "config" / "bad"

EXPECTED = {
    "unknown_key.yaml": "outlets[0].feeds[0].frequency: unknown key",
    "bad_url.yaml": "outlets[0].feeds[0].url: must be http(s), got 'ftp://diariox.example/rss'",
    "bad_section.yaml": "outlets[0].feeds[0].section: must be one of news, opinion, got 'blogs'",
    "no_feeds.yaml": "outlets[0].feeds: is required",
    "not_yaml.yaml": "not valid YAML",
    "duplicate_url.yaml": "outlets[1].feeds[0].url: duplicate feed url (also outlets[0].feeds[0])",
    "bad_types.yaml": "defaults.timeout_s: must be a number, got str",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_config_names_the_problem(name: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(BAD / name)
    assert EXPECTED[name] in str(err.value)
    assert str(BAD / name) in str(err.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(BAD / "bad_types.yaml")
    problems = err.value.problems
    assert "defaults.timeout_s: must be a number, got str" in problems
    assert "defaults.max_bytes: must be at least 1" in problems
    assert "outlets[0].enabled: must be true/false, got str" in problems


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(BAD / "nope.yaml")


def test_valid_config_builds_feeds_with_defaults() -> None:
    config = parse_config({
        "version": 1,
        "defaults": {"timeout_s": 5, "max_bytes": 1000, "per_host_delay_s": 0},
        "outlets": [{"name": "La Jornada", "state": "", "feeds": [
            {"url": "https://www.jornada.com.mx/rss/opinion.xml", "section": "opinion"},
            {"url": "https://www.jornada.com.mx/rss/politica.xml", "section": "news", "enabled": False},
        ]}],
    })
    assert config.outlets[0].id == "la-jornada"
    assert config.fetch.read_timeout_s == 5 and config.fetch.max_bytes == 1000
    feeds = config.enabled_feeds()
    assert [f.section for _, f in feeds] == ["opinion"]
    assert feeds[0][1].id.startswith("la-jornada/opinion-")


def test_shipped_feeds_yaml_is_valid() -> None:
    config = load_config(ROOT / "feeds.yaml")
    assert len(config.outlets) >= 15
    assert any(f.section == "opinion" for _, f in config.enabled_feeds())

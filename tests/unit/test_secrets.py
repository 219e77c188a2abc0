"""Secrets are checked where they are configured: distributed roles need them set, and
none may be guessable."""

from pathlib import Path

import pytest

from chunkcast.config import WeakSecret, load_settings, prepare
from chunkcast.testing import free_port

STRONG_KEY = "vX3q9_Lk2mP8rT5wZ1yB7nC4dF6gH0jK-sample"
STRONG_TOKEN = "Qw8eRt5yUi2oPa7s"


@pytest.mark.parametrize("key", ["dev", "changeme", "a" * 64, "0123456789" * 2])
def test_a_weak_secret_key_is_refused(tmp_path: Path, key: str) -> None:
    settings = load_settings(data_dir=tmp_path, secret_key=key)
    with pytest.raises(WeakSecret, match="CHUNKCAST_SECRET_KEY is too weak"):
        prepare(settings)


def test_a_weak_admin_token_is_refused(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, secret_key=STRONG_KEY, admin_token="dev")
    with pytest.raises(WeakSecret, match="CHUNKCAST_ADMIN_TOKEN is too weak"):
        prepare(settings)


def test_distributed_roles_need_both_secrets_configured(tmp_path: Path) -> None:
    with pytest.raises(WeakSecret, match="CHUNKCAST_SECRET_KEY and CHUNKCAST_ADMIN_TOKEN"):
        prepare(load_settings(data_dir=tmp_path), generate=False)
    with pytest.raises(WeakSecret, match="CHUNKCAST_ADMIN_TOKEN must be set"):
        prepare(load_settings(data_dir=tmp_path, secret_key=STRONG_KEY), generate=False)
    ready = prepare(load_settings(data_dir=tmp_path, secret_key=STRONG_KEY,
                                  admin_token=STRONG_TOKEN), generate=False)
    assert ready.secret_key == STRONG_KEY
    assert not (tmp_path / "secret-key").exists()


def test_the_embedded_mode_generates_strong_secrets(tmp_path: Path) -> None:
    ready = prepare(load_settings(data_dir=tmp_path))
    assert len(ready.secret_key) >= 32 and len(ready.admin_token) >= 32
    assert (tmp_path / "secret-key").stat().st_mode & 0o777 == 0o600


def test_chunkcast_api_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "chunkcast", "api", "--port", str(free_port())],
        env={"PATH": "/usr/bin:/bin", "CHUNKCAST_DATA_DIR": str(tmp_path)},
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "CHUNKCAST_SECRET_KEY and CHUNKCAST_ADMIN_TOKEN must be set" in result.stderr
    assert not (tmp_path / "secret-key").exists()

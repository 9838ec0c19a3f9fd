"""Every CT_* value is validated at start; an error names the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from ct_service.exceptions import SettingsError
from ct_service.settings import Settings
from ct_service.target import Direction


@pytest.mark.unit
def test_nothing_set_means_embedded_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    assert settings.embedded
    assert settings.home == tmp_path / ".ct-service"
    assert settings.tracking_uri == f"sqlite:///{tmp_path}/.ct-service/mlflow.db"
    assert settings.registry_uri == settings.tracking_uri
    assert settings.artifact_root == (tmp_path / ".ct-service" / "artifacts").as_uri()
    assert settings.target.metric == "test_accuracy"
    assert settings.target.threshold == 0.8
    assert settings.target.direction is Direction.MAXIMIZE
    assert settings.budget.max_attempts == 5
    assert not settings.smtp.enabled and not settings.notify_webhook_url


@pytest.mark.unit
def test_values_are_read_and_typed():
    settings = Settings.from_env(
        {
            "CT_BROKER_URL": "redis://127.0.0.1:6379/3",
            "CT_TRACKING_URI": "http://mlflow:5000",
            "CT_TARGET_METRIC": "rmse",
            "CT_TARGET_THRESHOLD": "0.8",
            "CT_TARGET_DIRECTION": "minimize",
            "CT_MAX_ATTEMPTS": "7",
            "CT_SMTP_HOST": "mail",
            "CT_SMTP_SECURITY": "starttls",
            "CT_MAIL_TO": "a@example.com, b@example.com",
            "CT_WATCHDOG": "off",
            "CT_WATCHDOG_INTERVAL_SECONDS": "5",
            "CT_HEARTBEAT_SECONDS": "2",
            "CT_LEASE_SECONDS": "6",
            "CT_MAX_RESUMES": "0",
        }
    )
    assert settings.recovery.watchdog_enabled is False
    assert settings.recovery.watchdog_interval_seconds == 5.0
    assert (settings.recovery.heartbeat_seconds, settings.recovery.lease_seconds) == (2.0, 6.0)
    assert settings.recovery.max_resumes == 0
    assert not settings.embedded
    assert settings.artifact_root == ""  # the tracking server decides
    assert settings.target.describe() == "rmse <= 0.8"
    assert settings.budget.max_attempts == 7
    assert settings.smtp.port == 587
    assert settings.smtp.recipients == ("a@example.com", "b@example.com")
    assert settings.visibility_timeout_seconds > settings.attempt_timeout_seconds


@pytest.mark.unit
@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CT_MAX_ATTEMPTS", "many", "CT_MAX_ATTEMPTS must be a whole number; got 'many'"),
        ("CT_MAX_ATTEMPTS", "0", "CT_MAX_ATTEMPTS must be at least 1; got '0'"),
        ("CT_TARGET_THRESHOLD", "high", "CT_TARGET_THRESHOLD must be a number"),
        (
            "CT_TARGET_DIRECTION",
            "up",
            "CT_TARGET_DIRECTION must be one of maximize, minimize; got 'up'",
        ),
        ("CT_BROKER_URL", "amqp://x", "CT_BROKER_URL must start with redis://"),
        ("CT_EXECUTION", "kubernetes", "CT_EXECUTION must be one of local"),
        ("CT_SMTP_PORT", "70000", "CT_SMTP_PORT must be between 1 and 65535"),
        ("CT_SMTP_SECURITY", "tls", "CT_SMTP_SECURITY must be one of none, starttls, ssl"),
        ("CT_MAIL_TO", "ops", "CT_MAIL_TO must be comma-separated e-mail addresses"),
        ("CT_ATTEMPT_TIMEOUT_SECONDS", "-5", "CT_ATTEMPT_TIMEOUT_SECONDS must be at least 1"),
        ("CT_LOG_LEVEL", "loud", "CT_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR"),
        ("CT_WATCHDOG", "maybe", "CT_WATCHDOG must be one of on, off; got 'maybe'"),
        ("CT_MAX_RESUMES", "-1", "CT_MAX_RESUMES must be at least 0"),
        ("CT_HEARTBEAT_SECONDS", "0", "CT_HEARTBEAT_SECONDS must be at least 0.2"),
        ("CT_LEASE_SECONDS", "20", "CT_LEASE_SECONDS must be at least 3 x CT_HEARTBEAT_SECONDS"),
        ("CT_WEBHOOK_BODY_SECONDS", "0", "CT_WEBHOOK_BODY_SECONDS must be between 0.1 and 600"),
    ],
)
def test_a_bad_value_names_its_variable(name, value, message):
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({name: value})
    assert message in str(raised.value)


@pytest.mark.unit
def test_a_secret_url_is_not_echoed_in_its_error():
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"CT_NOTIFY_WEBHOOK_URL": "ftp://hooks/T000/SECRET-TOKEN"})
    assert "CT_NOTIFY_WEBHOOK_URL" in str(raised.value)
    assert "SECRET-TOKEN" not in str(raised.value)


@pytest.mark.unit
def test_secrets_stay_out_of_repr_and_can_come_from_files(tmp_path: Path):
    secret_file = tmp_path / "password"
    secret_file.write_text("s3cret-from-file\n")
    settings = Settings.from_env(
        {
            "CT_SMTP_PASSWORD_FILE": str(secret_file),
            "CT_NOTIFY_WEBHOOK_URL": "https://hooks.example.com/T000/SECRET-TOKEN",
        }
    )
    assert settings.smtp.password == "s3cret-from-file"
    assert "s3cret" not in repr(settings)
    assert "SECRET-TOKEN" not in repr(settings)


@pytest.mark.unit
def test_an_unreadable_secret_file_names_the_variable(tmp_path: Path):
    with pytest.raises(SettingsError, match="CT_SMTP_PASSWORD_FILE: cannot read"):
        Settings.from_env({"CT_SMTP_PASSWORD_FILE": str(tmp_path / "missing")})

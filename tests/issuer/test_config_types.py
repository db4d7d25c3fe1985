"""A mistyped configuration is refused, with the file, line, table and value (issue 14).

TOML has booleans; ``"false"`` is a string, and ``bool("false")`` is ``True``. Every
setting is checked against its type; unknown keys are refused; the message names the
file, the line, the table (client id or username) and the bad value, never a secret.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scopegate._errors import ConfigurationError
from scopegate.issuer import Client, IssuerConfig, load_config

HEAD = 'issuer = "https://auth.example"\naudience = "api://demo"\n'
CLIENT = '[[clients]]\nid = "svc-a"\nsecret = "svc-a-secret-value"\n'
RS = '[[clients]]\nid = "rs"\nsecret = "rs-secret-value"\n'
USER = '[[users]]\nusername = "alice"\npassword = "alice-password-value"\n'


def refused(tmp_path: Path, text: str) -> str:
    """Load *text* as issuer.toml; return the ConfigurationError message."""
    path = tmp_path / "issuer.toml"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    return str(info.value)


def line_of(text: str, needle: str) -> int:
    """1-based number of the first line of *text* containing *needle*."""
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        pytest.param("allow_password_grant", '"false"', id="password-grant-string"),
        pytest.param("insecure_dev_mode", '"false"', id="insecure-dev-mode-string"),
        pytest.param("allow_long_lived_tokens", "1", id="long-lived-integer"),
    ],
)
def test_string_for_a_top_level_boolean(tmp_path: Path, setting: str, value: str) -> None:
    """A quoted "false" where a TOML boolean belongs is refused, naming file, line and value."""
    text = HEAD + "access_token_ttl = 600\n" + f"{setting} = {value}\n" + CLIENT
    message = refused(tmp_path, text)
    assert f"issuer.toml:{line_of(text, setting)}" in message
    assert setting in message
    assert value in message
    assert "true or false" in message


def test_string_for_a_client_boolean(tmp_path: Path) -> None:
    """introspect = "false" in a client table names the client and the line."""
    text = HEAD + CLIENT + RS + 'grant_types = []\nintrospect = "false"\n'
    message = refused(tmp_path, text)
    assert f"issuer.toml:{line_of(text, 'introspect')}" in message
    assert '[[clients]] "rs"' in message
    assert "introspect must be true or false" in message
    assert '"false"' in message


def test_string_for_a_user_boolean(tmp_path: Path) -> None:
    """disabled = "true" in a user table names the username."""
    text = HEAD + CLIENT + USER + 'disabled = "true"\n'
    message = refused(tmp_path, text)
    assert f"issuer.toml:{line_of(text, 'disabled')}" in message
    assert '[[users]] "alice"' in message
    assert '"true"' in message


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param("access_token_ttl = true", "integer", id="bool-for-int"),
        pytest.param('access_token_ttl = "600"', "integer", id="string-for-int"),
        pytest.param("access_token_ttl = 600.0", "integer", id="float-for-int"),
        pytest.param("failure_window = nan", "number", id="nan"),
        pytest.param("backoff_max = inf", "number", id="infinity"),
        pytest.param('backoff_max = "900"', "number", id="string-for-number"),
        pytest.param("audience2 = 1", "unknown setting", id="unknown-top-level"),
        pytest.param('token_format = "JWT"', '"jwt"', id="bad-choice"),
        pytest.param("token_format = 1", '"jwt"', id="int-for-choice"),
        pytest.param("signing_key = 5", "string", id="int-for-path"),
        pytest.param('previous_signing_keys = "a.pem"', "list of strings", id="string-for-list"),
        pytest.param('scope_policy = "lenient"', '"narrow"', id="bad-scope-policy"),
        pytest.param("scope_policy = true", '"strict"', id="bool-scope-policy"),
        pytest.param('authorization_code_ttl = "60"', "integer", id="string-code-ttl"),
        pytest.param("authorization_code_ttl = 3600", "at most 600", id="long-code-ttl"),
        pytest.param("authorization_code_ttl = 0", "positive", id="zero-code-ttl"),
        pytest.param("acr = 1", "string", id="int-acr"),
        pytest.param('acr = ""', "acr", id="empty-acr"),
        pytest.param('cors_origins = "*"', "list of strings", id="string-cors"),
        pytest.param('cors_origins = ["*", "https://a.example"]', "cannot be combined", id="mixed"),
        pytest.param('cors_origins = ["https://a.example/"]', "trailing slash", id="cors-slash"),
    ],
)
def test_top_level_types(tmp_path: Path, line: str, expected: str) -> None:
    """Every top-level setting is type-checked, with the file and the line."""
    text = HEAD + line + "\n" + CLIENT
    message = refused(tmp_path, text)
    assert "issuer.toml:3:" in message, message
    assert expected in message, message


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param("refresh_tokens = 0", "true or false", id="int-for-bool"),
        pytest.param('scopes = "items:read"', "list of strings", id="string-for-list"),
        pytest.param("scopes = [1, 2]", "list of strings", id="ints-in-list"),
        pytest.param("audience = 5", "string", id="int-for-string"),
        pytest.param("grant_type = []", "unknown setting", id="unknown-key"),
        pytest.param('auth_methods = ["client_secret_jwt"]', "auth_methods", id="bad-method"),
        pytest.param('resources = "https://a.example"', "list of strings", id="string-resources"),
        pytest.param('resources = ["/relative"]', "absolute URIs", id="relative-resource"),
        pytest.param('resources = ["https://a.example/#x"]', "fragment", id="fragment-resource"),
        pytest.param('scope_policy = "loose"', '"narrow"', id="bad-client-scope-policy"),
        pytest.param('redirect_uris = "https://a.example/cb"', "list of strings", id="string-uris"),
        pytest.param('redirect_uris = ["http://a.example/cb"]', "loopback", id="http-redirect"),
        pytest.param('grant_types = ["authorization_code"]', "redirect_uris", id="code-no-uris"),
        pytest.param('token_endpoint_auth_method = "nope"', '"none"', id="bad-method-name"),
    ],
)
def test_client_table_types(tmp_path: Path, line: str, expected: str) -> None:
    """Client settings are type-checked; the client is named by its id."""
    text = HEAD + CLIENT + line + "\n"
    message = refused(tmp_path, text)
    assert f"issuer.toml:{line_of(text, line)}:" in message, message
    assert '[[clients]] "svc-a"' in message, message
    assert expected in message, message


def test_public_client_and_user_acr_load(tmp_path: Path) -> None:
    """A public client needs no secret; users may carry their own acr."""
    text = (
        HEAD
        + 'acr = "urn:example:pwd"\n'
        + '[[clients]]\nid = "spa"\ntoken_endpoint_auth_method = "none"\n'
        + 'grant_types = ["authorization_code", "refresh_token"]\n'
        + 'redirect_uris = ["https://spa.example/cb"]\n'
        + USER
        + 'acr = "urn:example:mfa"\n'
    )
    path = tmp_path / "issuer.toml"
    path.write_text(text)
    loaded = load_config(path)
    assert loaded.config.acr == "urn:example:pwd"
    (spa,) = loaded.clients
    assert spa.public
    assert spa.redirect_uris == ("https://spa.example/cb",)
    assert loaded.users[0].acr == "urn:example:mfa"
    bad = text.replace(
        'grant_types = ["authorization_code", "refresh_token"]',
        'grant_types = ["client_credentials"]',
    )
    assert "public client" in refused(tmp_path, bad)
    with_secret = HEAD + CLIENT + 'auth_methods = ["none"]\n'
    assert "has no secret" in refused(tmp_path, with_secret)


def test_user_acr_type(tmp_path: Path) -> None:
    """A user's acr must be a string."""
    assert "acr must be a string" in refused(tmp_path, HEAD + CLIENT + USER + "acr = 2\n")


def test_unknown_user_key(tmp_path: Path) -> None:
    """A typo in a user table is refused with its line and the username."""
    text = HEAD + CLIENT + USER + 'scope = ["items:read"]\n'
    message = refused(tmp_path, text)
    assert f"issuer.toml:{line_of(text, 'scope =')}:" in message
    assert '[[users]] "alice"' in message
    assert "scope" in message


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        pytest.param(
            HEAD + '[[clients]]\nid = "c"\nsecret = ["hunter2-secret"]\n', "hunter2", id="secret"
        ),
        pytest.param(
            HEAD + '[[clients]]\nid = "c"\nsecrets = "hunter2-secret"\n', "hunter2", id="secrets"
        ),
        pytest.param(
            HEAD + '[[users]]\nusername = "u"\npassword = ["hunter2-pw"]\n',
            "hunter2",
            id="password",
        ),
        pytest.param(
            HEAD + 'redis_url = ["redis://:hunter2@127.0.0.1/0"]\n', "hunter2", id="redis-url"
        ),
    ],
)
def test_secret_values_are_never_echoed(tmp_path: Path, text: str, secret: str) -> None:
    """A mistyped secret, password or Redis URL is refused without showing its value."""
    message = refused(tmp_path, text)
    assert secret not in message
    assert "issuer.toml:" in message
    assert "not shown" in message


def test_client_value_errors_name_the_client(tmp_path: Path) -> None:
    """A value check inside a client (unknown grant) still names the file and the client."""
    text = HEAD + CLIENT + 'grant_types = ["implicit"]\n'
    message = refused(tmp_path, text)
    assert "issuer.toml" in message
    assert '[[clients]] "svc-a"' in message


def test_clients_must_be_an_array_of_tables(tmp_path: Path) -> None:
    """[clients] (one table) instead of [[clients]] is refused with a hint."""
    message = refused(tmp_path, HEAD + '[clients]\nid = "x"\n')
    assert "[[clients]]" in message


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({"allow_password_grant": "false"}, id="password-grant"),
        pytest.param({"insecure_dev_mode": "false"}, id="insecure-dev-mode"),
        pytest.param({"allow_long_lived_tokens": 1}, id="int-for-bool"),
        pytest.param({"user_max_failures": True}, id="bool-for-int"),
        pytest.param({"max_body_bytes": 65536.0}, id="float-for-int"),
        pytest.param({"failure_window": float("inf")}, id="infinite"),
        pytest.param({"backoff_base": "60"}, id="string-for-number"),
        pytest.param({"audience": 5}, id="int-for-string"),
    ],
)
def test_issuer_config_checks_its_own_types(settings: dict[str, object]) -> None:
    """IssuerConfig itself refuses a value of the wrong type (a string for a bool...)."""
    values: dict[str, object] = {"issuer": "https://auth.example", "audience": "api://demo"}
    values.update(settings)
    with pytest.raises(ConfigurationError) as info:
        IssuerConfig(**values)  # type: ignore[arg-type]
    assert next(iter(settings)) in str(info.value)


def test_insecure_dev_mode_string_does_not_allow_http() -> None:
    """The finding: insecure_dev_mode = "false" let a plain-http issuer start."""
    with pytest.raises(ConfigurationError):
        IssuerConfig(issuer="http://auth.example", audience="x", insecure_dev_mode="false")  # type: ignore[arg-type]


def test_client_checks_its_own_types() -> None:
    """Client refuses a string where a boolean belongs."""
    with pytest.raises(ConfigurationError):
        Client("c", ("s",), introspect="false")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        Client("c", ("s",), disabled="no")  # type: ignore[arg-type]


def test_well_typed_config_still_loads(tmp_path: Path) -> None:
    """The documented format keeps loading, including auth_methods and the new limits."""
    text = (
        HEAD
        + "allow_password_grant = true\nclient_max_failures = 10\nclient_backoff_max = 30\n"
        + "lookup_max_misses = 50\nlookup_window = 30\nbackoff_base = 30\n"
        + CLIENT
        + 'auth_methods = ["client_secret_post"]\nintrospect = false\n'
        + USER
        + "disabled = false\n"
    )
    path = tmp_path / "issuer.toml"
    path.write_text(text)
    loaded = load_config(path)
    assert loaded.config.allow_password_grant is True
    assert loaded.config.client_max_failures == 10
    assert loaded.clients[0].auth_methods == frozenset({"client_secret_post"})
    assert loaded.clients[0].introspect is False

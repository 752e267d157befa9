import pytest

from slo_pipeline.adapters.listen_address import parse_listen
from slo_pipeline.settings import Settings
from webhook.server import run


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("0.0.0.0:9110", ("0.0.0.0", 9110)),
        ("[::1]:9", ("::1", 9)),
        (":9110", ("127.0.0.1", 9110)),  # no host named: loopback, never every interface
        (" 127.0.0.1:80 ", ("127.0.0.1", 80)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["localhost", "9110", "host:port", "host:70000", "host:-1", ""])
def test_parse_listen_names_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_listen(text)


def test_webhook_refuses_a_random_port_before_starting_anything() -> None:
    with pytest.raises(ValueError, match="fixed port"):
        run(Settings(webhook_token="t" * 32), "127.0.0.1:0")

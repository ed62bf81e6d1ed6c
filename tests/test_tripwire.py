import socket

import httpx
import pytest

from aigw_lab.testing import tripwire


@pytest.mark.tripwire_expected
def test_public_address_is_blocked():
    with pytest.raises(tripwire.NetworkTripwireError):
        socket.create_connection(("93.184.215.14", 80), timeout=1)
    assert tripwire.violations()


@pytest.mark.tripwire_expected
def test_dns_lookup_is_blocked_even_through_httpx():
    with pytest.raises(httpx.ConnectError):
        httpx.get("https://api.openai.com/v1/models", timeout=2)
    assert any("api.openai.com" in v for v in tripwire.violations())


def test_loopback_is_allowed():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname(), timeout=1)
    client.close()
    server.close()
    assert tripwire.violations() == []


pytest_plugins = ["pytester"]


def test_plugin_fails_a_test_that_swallows_the_blocked_attempt(pytester):
    pytester.makepyfile(
        """
        import socket

        def test_sneaky():
            try:
                socket.create_connection(("93.184.215.14", 80), timeout=1)
            except OSError:
                pass

        def test_innocent():
            assert True
        """
    )
    result = pytester.runpytest_subprocess("-p", "aigw_lab.testing.pytest_plugin")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*network tripwire*93.184.215.14*"])

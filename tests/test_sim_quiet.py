"""The simulated servers stay quiet when a poller drops its connection (gpuwatch exiting), and
still report real errors."""

from gpuwatch.sim.quiet import QuietHTTPServer


def _error_output(exc, capsys) -> str:
    srv = QuietHTTPServer.__new__(QuietHTTPServer)  # handle_error needs no socket
    try:
        raise exc
    except Exception:
        srv.handle_error(None, ("127.0.0.1", 1))
    return capsys.readouterr().err


def test_a_dropped_connection_prints_nothing(capsys):
    assert _error_output(ConnectionResetError(104, "Connection reset by peer"), capsys) == ""
    assert _error_output(BrokenPipeError(32, "Broken pipe"), capsys) == ""


def test_a_real_error_is_still_reported(capsys):
    assert "ZeroDivisionError" in _error_output(ZeroDivisionError("boom"), capsys)

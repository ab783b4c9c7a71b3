"""Hostile and unusual byte orders against a real ``serve`` process, with raw sockets.

Every request here is written in ONE ``sendall`` (loopback: one segment), so the server reads
the pieces together: pipelined HTTP requests, a handshake with frames behind it, a valid frame
followed by an invalid one, a close between fragments, endless fragments, broken UTF-8 in the
first fragment of a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from .conftest import ServeProcess, serve_factory
from .rawws import BINARY, CONT, PING, PONG, TEXT, RawClient, close_frame, frame, handshake

Factory = Callable[..., ServeProcess]


@pytest.fixture(scope="module")
def module_serve() -> Iterator[Factory]:
    yield from serve_factory()


@pytest.fixture(scope="module")
def echo(module_serve: Factory) -> tuple[ServeProcess, int]:
    """One ``serve --protocol echo`` for the module, with a small fragment cap."""
    proc = module_serve(
        "--port", "0", "--protocol", "echo", "--max-fragments", "50", "--max-message-size", "4096"
    )
    return proc, proc.ready_port()


@pytest.fixture(scope="module")
def lokin(module_serve: Factory) -> tuple[ServeProcess, int]:
    """One ``serve`` with the LOK IN protocol (the default)."""
    proc = module_serve("--port", "0")
    return proc, proc.ready_port()


def no_crash(proc: ServeProcess) -> None:
    """serve logged no assertion, traceback or asyncio transport error."""
    proc.wait_for(r"ready")  # drain what is there
    time.sleep(0.2)
    while proc._drain(0.05) is not None:
        pass
    for needle in (
        "AssertionError",
        "Traceback",
        "handler failed",
        "Fatal error",
        "write_eof",
        "parser failed",
    ):
        assert needle not in proc.stderr, proc.stderr


# -- 1. any byte order --------------------------------------------------------------------------


def test_pipelined_http_requests_first_answered_then_clean_close(lokin: tuple[ServeProcess, int]) -> None:
    proc, port = lokin
    request = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    with RawClient(port) as c:
        c.send(request + request)
        status, headers, body = c.read_http()
        assert status == 200 and headers["connection"] == "close" and b'"status": "ok"' in body
        assert c.at_eof()  # closed cleanly after the first answer, as its Connection: close says
    no_crash(proc)


def test_handshake_then_close_frame_in_one_segment(lokin: tuple[ServeProcess, int]) -> None:
    proc, port = lokin
    with RawClient(port) as c:
        c.send(handshake(port) + close_frame(1000, "bye"))
        status, _, _ = c.read_http()
        assert status == 101
        frames = c.frames_until_close()
        assert frames[0].opcode == TEXT and '"welcome"' in frames[0].text  # then the close echo
        assert frames[-1].close_code == 1000
        assert c.at_eof()
    no_crash(proc)


def test_handshake_then_frames_then_a_get_in_one_segment(echo: tuple[ServeProcess, int]) -> None:
    proc, port = echo
    get = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    with RawClient(port) as c:
        c.send(handshake(port) + frame(TEXT, b"one") + frame(BINARY, b"\x00two") + get)
        assert c.read_http()[0] == 101
        frames = c.frames_until_close()
        assert [(f.opcode, f.payload) for f in frames[:2]] == [(TEXT, b"one"), (BINARY, b"\x00two")]
        assert frames[-1].close_code == 1002  # the GET is not a frame: a protocol error, after the echoes
    no_crash(proc)


def test_valid_frame_echoed_before_the_invalid_one_fails(echo: tuple[ServeProcess, int]) -> None:
    # Autobahn 3.2: a text message, then a frame with a reserved bit, then a ping, in one read.
    proc, port = echo
    with RawClient(port) as c:
        c.send(handshake(port))
        assert c.read_http()[0] == 101
        c.send(frame(TEXT, b"hello") + frame(TEXT, b"bad", rsv=2) + frame(PING, b"p"))
        frames = c.frames_until_close()
        assert (frames[0].opcode, frames[0].payload) == (TEXT, b"hello")
        assert frames[-1].close_code == 1002
        assert PONG not in [f.opcode for f in frames]  # nothing is processed after the failure
    no_crash(proc)


def test_close_between_fragments_is_a_normal_close(echo: tuple[ServeProcess, int]) -> None:
    # Autobahn 7.1.5: RFC 6455 allows control frames between fragments; a close ends normally.
    proc, port = echo
    with RawClient(port) as c:
        c.send(handshake(port) + frame(TEXT, b"frag", fin=False) + close_frame(1000))
        assert c.read_http()[0] == 101
        frames = c.frames_until_close()
        assert [f.close_code for f in frames] == [1000]  # no echo of the unfinished message, no 1002
    no_crash(proc)


def test_ping_between_fragments_then_the_whole_message(echo: tuple[ServeProcess, int]) -> None:
    _, port = echo
    with RawClient(port) as c:
        c.send(
            handshake(port)
            + frame(TEXT, b"ab", fin=False)
            + frame(PING, b"x")
            + frame(CONT, "é".encode()[:1], fin=False)  # a code point split across fragments
            + frame(CONT, "é".encode()[1:])
        )
        assert c.read_http()[0] == 101
        pong, message = c.read_frame(), c.read_frame()
        assert (pong.opcode, pong.payload) == (PONG, b"x")  # answered while the message is open
        assert (message.opcode, message.payload) == (TEXT, "abé".encode())


# -- UTF-8 checked per fragment -----------------------------------------------------------------


def test_invalid_utf8_in_first_fragment_fails_at_once(echo: tuple[ServeProcess, int]) -> None:
    # Autobahn 6.4.x: the message is never finished; the server must not wait for its end.
    _, port = echo
    with RawClient(port, timeout=3) as c:
        c.send(handshake(port) + frame(TEXT, b"ok \xf4\x90\x80\x80 then", fin=False))
        assert c.read_http()[0] == 101
        started = time.monotonic()
        frames = c.frames_until_close()
        assert frames[-1].close_code == 1007 and time.monotonic() - started < 1.5


def test_invalid_utf8_in_a_frame_still_arriving_fails_at_once(echo: tuple[ServeProcess, int]) -> None:
    # Autobahn 6.4.3: one text frame of 3000 bytes; its first 40 arrive and are already invalid.
    _, port = echo
    whole = frame(TEXT, ("κόσμε" * 200).encode()[:1958] + b"\xf4\x90\x80\x80" + b"x" * 1038)
    assert len(whole) == 3000 + 8
    with RawClient(port, timeout=3) as c:
        c.send(handshake(port))
        assert c.read_http()[0] == 101
        c.send(whole[:1000])  # valid so far
        time.sleep(0.2)
        c.send(whole[1000:1980])  # the invalid code point; 1028 bytes of the frame never sent
        started = time.monotonic()
        frames = c.frames_until_close()
        assert frames[-1].close_code == 1007 and time.monotonic() - started < 1.5


def test_valid_text_frame_arriving_in_odd_pieces_is_echoed(echo: tuple[ServeProcess, int]) -> None:
    # The partial check unmasks each piece at its offset and carries split code points over.
    _, port = echo
    payload = ("añ€😀" * 300).encode()  # 1-, 2-, 3- and 4-byte code points
    whole = frame(TEXT, payload)
    with RawClient(port) as c:
        c.send(handshake(port))
        assert c.read_http()[0] == 101
        for start in range(0, len(whole), 997):  # 997: never on a mask or code point boundary
            c.send(whole[start : start + 997])
            time.sleep(0.02)
        got = c.read_frame()
        assert (got.opcode, got.payload) == (TEXT, payload)


def test_fragmented_text_with_a_continuation_still_arriving(echo: tuple[ServeProcess, int]) -> None:
    _, port = echo
    first = frame(TEXT, "é".encode()[:1], fin=False)  # the code point continues in the next frame
    cont = frame(CONT, "é".encode()[1:] + b"ok" * 500)
    with RawClient(port) as c:
        c.send(handshake(port) + first + cont[:300])
        assert c.read_http()[0] == 101
        time.sleep(0.2)
        c.send(cont[300:])
        got = c.read_frame()
        assert (got.opcode, got.payload) == (TEXT, "é".encode() + b"ok" * 500)


def test_invalid_utf8_unfragmented_is_1007(
    echo: tuple[ServeProcess, int], lokin: tuple[ServeProcess, int]
) -> None:
    for _, port in (echo, lokin):
        with RawClient(port) as c:
            c.send(handshake(port) + frame(TEXT, b"\xff"))
            assert c.read_http()[0] == 101
            assert c.frames_until_close()[-1].close_code == 1007


# -- 2. fragment limits ---------------------------------------------------------------------------


def test_fragment_cap_exact_limit_and_one_more(echo: tuple[ServeProcess, int]) -> None:
    _, port = echo  # --max-fragments 50
    with RawClient(port) as c:  # 50 fragments: accepted
        c.send(
            handshake(port)
            + frame(BINARY, b"a", fin=False)
            + frame(CONT, b"b", fin=False) * 48
            + frame(CONT, b"c")
        )
        assert c.read_http()[0] == 101
        got = c.read_frame()
        assert (got.opcode, got.payload) == (BINARY, b"a" + b"b" * 48 + b"c")
    with RawClient(port) as c:  # 51: closed with 1009
        c.send(handshake(port) + frame(BINARY, b"a", fin=False) + frame(CONT, b"", fin=False) * 50)
        assert c.read_http()[0] == 101
        frames = c.frames_until_close()
        assert frames[-1].close_code == 1009 and b"50 fragments" in frames[-1].payload


def test_empty_fragments_count_their_headers_toward_the_size_limit(echo: tuple[ServeProcess, int]) -> None:
    _, port = echo  # --max-message-size 4096, --max-fragments 50: 40 empty fragments are 240 bytes
    with RawClient(port) as c:
        c.send(handshake(port) + frame(TEXT, b"x" * 3900, fin=False) + frame(CONT, b"", fin=False) * 40)
        assert c.read_http()[0] == 101
        frames = c.frames_until_close()
        assert frames[-1].close_code == 1009  # 3900 + 8 + 40 * 6 > 4096 though the payload is 3900


def test_endless_empty_fragments_are_cut(lokin: tuple[ServeProcess, int]) -> None:
    proc, port = lokin  # default --max-fragments 4096
    with RawClient(port) as c:
        c.send(handshake(port) + frame(BINARY, b"", fin=False))
        assert c.read_http()[0] == 101
        assert '"welcome"' in c.read_frame().text
        empty = frame(CONT, b"", fin=False)
        sent = 0
        try:
            for _ in range(50):  # bounded: 50 x 1000 frames, far past the cap
                c.send(empty * 1000)
                sent += 1000
        except (BrokenPipeError, ConnectionResetError):
            pass
        frames = c.frames_until_close()
        assert frames[-1].close_code == 1009
        assert sent < 50_000 or c.at_eof()
    no_crash(proc)


# -- 6. --protocol echo ---------------------------------------------------------------------------


def test_echo_protocol_has_no_welcome_and_echoes_json_verbatim(echo: tuple[ServeProcess, int]) -> None:
    _, port = echo
    ping = b'{"type": "ping", "id": 7}'
    with RawClient(port) as c:
        c.send(handshake(port) + frame(TEXT, ping) + close_frame())
        assert c.read_http()[0] == 101
        frames = c.frames_until_close()
        assert [(f.opcode, f.payload) for f in frames[:-1]] == [(TEXT, ping)]  # no welcome, no pong


def test_echo_protocol_is_announced(echo: tuple[ServeProcess, int], lokin: tuple[ServeProcess, int]) -> None:
    proc, port = echo
    assert "Protocol:    echo" in proc.stderr
    assert "Protocol:" not in lokin[0].stderr
    with RawClient(port) as c:
        c.send(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        health = json.loads(c.read_http()[2])
    assert health["protocol"] == "echo" and health["limits"]["max_fragments"] == 50


def test_lokin_protocol_answers_json_ping(lokin: tuple[ServeProcess, int]) -> None:
    _, port = lokin
    with RawClient(port) as c:
        c.send(handshake(port) + frame(TEXT, b'{"type": "ping", "id": 7}') + close_frame())
        assert c.read_http()[0] == 101
        frames = c.frames_until_close()
        assert '"welcome"' in frames[0].text and '"pong"' in frames[1].text and '"id": 7' in frames[1].text


# -- 3. one open timeout across TCP + TLS + upgrade ------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, trustme.CA]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    d: Path = tmp_path_factory.mktemp("tls")
    certfile, keyfile = d / "cert.pem", d / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    return str(certfile), str(keyfile), ca


def test_open_timeout_counts_from_accept_on_wss(
    serve_process: Factory, tls_files: tuple[str, str, trustme.CA]
) -> None:
    certfile, keyfile, ca = tls_files
    proc = serve_process("--port", "0", "--open-timeout", "2", "--certfile", certfile, "--keyfile", keyfile)
    port = proc.ready_port()
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    started = time.monotonic()
    raw = socket.create_connection(("127.0.0.1", port), timeout=6)
    time.sleep(1.2)  # a slow TLS client: most of the timeout is spent before the ClientHello
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        try:
            assert tls.recv(1) == b""  # then it never sends its upgrade: cut
        except (ConnectionResetError, ssl.SSLError):
            pass
    elapsed = time.monotonic() - started
    # One 2 s timeout from the accept (it was 2 s of TLS, then 2 s more for the upgrade: 3.2 s).
    assert 1.8 < elapsed < 2.8, elapsed


async def test_open_timeout_counts_from_accept_on_wss_in_process(
    make_server: Callable[..., Any], tls_files: tuple[str, str, trustme.CA]
) -> None:
    # The same with the standard asyncio loop (the serve process above runs uvloop when installed).
    certfile, keyfile, ca = tls_files
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    async with make_server(certfile=certfile, keyfile=keyfile, open_timeout=2.0) as srv:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        await asyncio.sleep(1.2)
        async with asyncio.timeout(6):
            await writer.start_tls(ctx, server_hostname="127.0.0.1")
            with contextlib.suppress(ConnectionResetError, ssl.SSLError):
                assert await reader.read() == b""
        elapsed = time.monotonic() - started
        writer.close()
    assert 1.8 < elapsed < 2.8, elapsed


# -- hostile input: no traceback, no assertion, still serving ------------------------------------


def test_random_bytes_after_the_handshake_never_crash(lokin: tuple[ServeProcess, int]) -> None:
    import random

    proc, port = lokin
    rng = random.Random(9)  # fixed seed: the same 150 connections every run
    pieces = [
        lambda: frame(TEXT, rng.randbytes(rng.randrange(0, 200)), fin=rng.random() < 0.7),
        lambda: frame(BINARY, rng.randbytes(rng.randrange(0, 200)), fin=rng.random() < 0.7),
        lambda: frame(CONT, rng.randbytes(rng.randrange(0, 50)), fin=rng.random() < 0.5),
        lambda: frame(PING, rng.randbytes(rng.randrange(0, 130))),
        lambda: frame(rng.randrange(16), rng.randbytes(rng.randrange(0, 20)), rsv=rng.randrange(8)),
        lambda: close_frame(rng.randrange(0, 5000), "x" * rng.randrange(0, 3)),
        lambda: rng.randbytes(rng.randrange(1, 40)),
        lambda: b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    for i in range(150):
        data = b"" if i % 10 == 0 else handshake(port)
        data += b"".join(rng.choice(pieces)() for _ in range(rng.randrange(1, 8)))
        with RawClient(port, timeout=0.5) as c:
            try:
                c.send(data)
                if i % 10 != 5:  # most end with an EOF; a few just stop (the server waits)
                    c.sock.shutdown(socket.SHUT_WR)
                while c._fill():  # read whatever the server answers, to its close
                    pass
            except (ConnectionResetError, BrokenPipeError, TimeoutError):
                pass
    with RawClient(port) as c:  # still serving
        c.send(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        assert c.read_http()[0] == 200
    no_crash(proc)


async def test_fragmented_messages_with_permessage_deflate(make_server: Callable[..., Any]) -> None:
    from websockets.asyncio.client import connect

    async with (
        make_server(compression=True, protocol="echo") as srv,
        asyncio.timeout(10),
        connect(srv.url, compression="deflate") as ws,
    ):
        assert ws.protocol.extensions  # permessage-deflate negotiated
        await ws.send(["κό", "σμε " * 1000, "fin"])  # three compressed fragments
        assert await ws.recv() == "κό" + "σμε " * 1000 + "fin"
        await ws.send([b"\x00" * 5000, b"\x01"])
        assert await ws.recv() == b"\x00" * 5000 + b"\x01"

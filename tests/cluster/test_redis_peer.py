from tests.peers.redis import RedisPeer
def test_redis_peer(redis_server: RedisPeer) -> None:
    assert redis_server.command("PING").startswith(b"+PONG")
    port = redis_server.port
    redis_server.kill()
    assert redis_server.pid is None
    redis_server.start()
    assert redis_server.port == port and redis_server.command("PING").startswith(b"+PONG")

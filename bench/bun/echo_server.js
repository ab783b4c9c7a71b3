// bench/bun/echo_server.js: the same welcome and the same echo as bench/node/echo_server.js, on Bun.serve
// (uWebSockets inside): the performance anchor of bench/capacity.py (`--servers serve,bun`).
// No compression, no idle timeout (the load client holds idle connections), every origin accepted.
//
// Usage: HOST=127.0.0.1 bench/bun/node_modules/@oven/bun-linux-x64/bin/bun bench/bun/echo_server.js PORT
// (npm ci --prefix bench/bun installs the binary, pinned by package-lock.json).

const PORT = parseInt(process.argv[2] || process.env.PORT || '8080', 10);
const HOST = process.env.HOST || '127.0.0.1';

function newClientId() {
  return 'user_' + Math.random().toString(36).slice(2, 11);
}

const server = Bun.serve({
  port: PORT,
  hostname: HOST,
  fetch(req, srv) {
    if (srv.upgrade(req)) return;
    return new Response('Upgrade Required', { status: 426 });
  },
  websocket: {
    perMessageDeflate: false,
    idleTimeout: 0,
    maxPayloadLength: 1 << 20,
    open(ws) {
      ws.send(JSON.stringify({ type: 'welcome', clientId: newClientId() }));
    },
    message(ws, message) {
      ws.send(message); // a string comes back as text, a Buffer as binary
    },
  },
});

console.log(`ready on ${HOST}:${server.port}`);

function shutdown() {
  server.stop(true);
  process.exit(0);
}

process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

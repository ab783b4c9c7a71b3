// bench/node/echo_server.js: tests/peers/node/server.js (the original LOK IN server) WITHOUT the
// broadcast, so that the echo figures compare like with like against `lokin-doctor serve` (which only
// echoes). Same `ws` (tests/peers/node/node_modules, pinned 8.23.0), same WebSocket.Server options
// (verifyClient accepting every origin), same welcome message, same echo; no per-connection console
// log (server.js logs every connect and disconnect: that is measured separately, see RESULTS.md).
//
// Usage: HOST=127.0.0.1 node bench/node/echo_server.js PORT

const path = require('path');
const WebSocket = require(path.join(__dirname, '..', '..', 'tests', 'peers', 'node', 'node_modules', 'ws'));

const PORT = parseInt(process.argv[2] || process.env.PORT || '8080', 10);
const HOST = process.env.HOST || '127.0.0.1';

const wss = new WebSocket.Server({ port: PORT, host: HOST, verifyClient: () => true });

function newClientId() {
  return 'user_' + Math.random().toString(36).slice(2, 11);
}

wss.on('listening', () => {
  console.log(`ready on ${HOST}:${PORT}`);
});

wss.on('connection', (ws) => {
  ws.send(JSON.stringify({ type: 'welcome', clientId: newClientId() }));
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
  ws.on('error', () => {});
});

function shutdown() {
  for (const ws of wss.clients) {
    ws.terminate();
  }
  wss.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}

process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

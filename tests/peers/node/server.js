// The original LOK IN WebSocket server, as described in CORRECTIONS_WEBSOCKET.md, kept as a real peer
// for the lokin-doctor test-suite (tests/peers/fixtures.py starts it as `node server.js PORT`).
//
// Faithful to the write-up: `new WebSocket.Server({ port, verifyClient })`, verifyClient logs the
// Origin and accepts every origin, each client gets `{type: 'welcome', clientId: 'user_xxx'}`,
// messages are echoed back to their sender and broadcast to the other clients, a startup banner,
// and SIGTERM closes everything cleanly.
//
// One deliberate difference: the original binds every interface. The test-suite must bind loopback
// only, so the bind address comes from the HOST environment variable (the fixture sets 127.0.0.1).
// Without HOST it behaves like the original (all interfaces).

const WebSocket = require('ws');

const PORT = parseInt(process.argv[2] || process.env.PORT || '8080', 10);
const HOST = process.env.HOST || undefined;

const options = {
  port: PORT,
  verifyClient: (info) => {
    console.log(`📥 Nouvelle tentative de connexion depuis: ${info.origin}`);
    return true; // Accepter les connexions cross-origin
  },
};
if (HOST) {
  options.host = HOST;
}

const wss = new WebSocket.Server(options);
const clients = new Map();

function newClientId() {
  return 'user_' + Math.random().toString(36).slice(2, 11);
}

wss.on('listening', () => {
  const started = new Date().toLocaleString('fr-FR');
  console.log('╔════════════════════════════════════════════════╗');
  console.log('║   🚀 Serveur WebSocket LOK IN                 ║');
  console.log('╚════════════════════════════════════════════════╝');
  console.log('');
  console.log(`📍 Port: ${PORT}`);
  console.log('🌐 Protocol: ws:// (local) / wss:// (production)');
  console.log(`⏰ Démarré le: ${started}`);
  console.log('');
  console.log('✅ Serveur prêt à recevoir des connexions');
  console.log('📡 En attente...');
});

wss.on('connection', (ws, req) => {
  const clientId = newClientId();
  clients.set(ws, clientId);
  console.log(`✅ Client connecté: ${clientId} (${req.socket.remoteAddress}) ${req.url}`);

  ws.send(JSON.stringify({ type: 'welcome', clientId: clientId }));

  ws.on('message', (data, isBinary) => {
    // Echo to the sender, unchanged.
    ws.send(data, { binary: isBinary });
    // Broadcast to everybody else.
    const text = isBinary ? null : data.toString();
    for (const [other, otherId] of clients) {
      if (other !== ws && other.readyState === WebSocket.OPEN) {
        other.send(JSON.stringify({ type: 'broadcast', from: clientId, to: otherId, data: text }));
      }
    }
  });

  ws.on('close', (code) => {
    clients.delete(ws);
    console.log(`👋 Client déconnecté: ${clientId} (code ${code})`);
  });

  ws.on('error', (err) => {
    console.error(`⚠️ Erreur client ${clientId}: ${err.message}`);
  });
});

wss.on('error', (err) => {
  console.error(`❌ Erreur serveur: ${err.message}`);
  process.exit(1);
});

function shutdown(signal) {
  console.log(`\n🛑 ${signal} reçu, arrêt du serveur...`);
  for (const ws of wss.clients) {
    ws.close(1001, 'Server shutting down');
  }
  wss.close(() => {
    console.log('✅ Serveur arrêté proprement');
    process.exit(0);
  });
  // Do not hang on a client that never answers the close frame.
  setTimeout(() => {
    for (const ws of wss.clients) {
      ws.terminate();
    }
    process.exit(0);
  }, 1000).unref();
}

process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

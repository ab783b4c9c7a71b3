// A real Socket.IO 4 server for the lokin-doctor test-suite, on 127.0.0.1 (loopback only).
//   node server.js PORT [--path /socket.io] [--refuse] [--eio3] [--transports polling]
//                  [--allow-origin ORIGIN] [--hang] [--connect-timeout MS]
// --path     : the Engine.IO path (socket.io's `path` option; default /socket.io)
// --refuse   : a middleware on the main namespace refuses every client: the Socket.IO CONNECT gets
//              44{"message":"not authorized"} (what an auth middleware does)
// --eio3     : allowEIO3 (Socket.IO 2 clients accepted too)
// --transports LIST  : socket.io's transports option, comma-separated (polling: long-polling only)
// --allow-origin O   : an allowRequest hook that takes only the handshakes whose Origin is O (the
//                      canonical callback(null, ok): engine.io answers 403 / 400 "Forbidden" to others)
// --deny-message M   : with --allow-origin, the hook refuses with its own words: callback(M, false)
// --hang     : a middleware on the main namespace that never calls next(): the CONNECT gets no answer
// --connect-timeout MS : socket.io's connectTimeout (the client is closed when no namespace joined in MS)
// Plain HTTP requests outside the path get a small web page, as an Express app next to Socket.IO would.
"use strict";
const http = require("http");
const { Server } = require("socket.io");

const args = process.argv.slice(2);
const port = Number(args[0]);
const opt = (name) => args.includes(name);
const value = (name, dflt) => (args.indexOf(name) >= 0 ? args[args.indexOf(name) + 1] : dflt);
const host = process.env.HOST || "127.0.0.1";

const page = "<!DOCTYPE html><html><head><title>Chat</title></head><body>chat</body></html>";
const httpServer = http.createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/html" });
  res.end(page);
});
const io = new Server(httpServer, {
  path: value("--path", "/socket.io"),
  allowEIO3: opt("--eio3"),
  cors: { origin: "*" },
  transports: value("--transports", "polling,websocket").split(","),
  connectTimeout: Number(value("--connect-timeout", "45000")),
  ...(opt("--allow-origin")
    ? {
        allowRequest: (req, callback) => {
          const ok = req.headers.origin === value("--allow-origin");
          callback(ok ? null : value("--deny-message", null), ok);
        },
      }
    : {}),
});
if (opt("--refuse")) {
  io.use((socket, next) => next(new Error("not authorized")));
}
if (opt("--hang")) {
  io.use((socket, next) => console.log(`holding ${socket.id}: next() never called`));
}
io.on("connection", (socket) => {
  console.log(`connected ${socket.id}`);
  socket.emit("welcome", { id: socket.id });
  socket.on("message", (data) => socket.emit("message", data));
});
httpServer.listen(port, host, () => console.log(`socket.io listening on ${host}:${port}`));
process.on("SIGTERM", () => {
  io.close();
  process.exit(0);
});

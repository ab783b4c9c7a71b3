// A real Socket.IO 4 server for the lokin-doctor test-suite, on 127.0.0.1 (loopback only).
//   node server.js PORT [--path /socket.io] [--refuse] [--eio3]
// --path     : the Engine.IO path (socket.io's `path` option; default /socket.io)
// --refuse   : a middleware on the main namespace refuses every client: the Socket.IO CONNECT gets
//              44{"message":"not authorized"} (what an auth middleware does)
// --eio3     : allowEIO3 (Socket.IO 2 clients accepted too)
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
});
if (opt("--refuse")) {
  io.use((socket, next) => next(new Error("not authorized")));
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

// A real Socket.IO 2 server (Engine.IO protocol 3) for the lokin-doctor test-suite, on 127.0.0.1.
//   node server.js PORT
"use strict";
const http = require("http");

const port = Number(process.argv[2]);
const host = process.env.HOST || "127.0.0.1";
const httpServer = http.createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/html" });
  res.end("<!DOCTYPE html><html><head><title>Chat</title></head><body>chat</body></html>");
});
const io = require("socket.io")(httpServer);
io.on("connection", (socket) => {
  console.log(`connected ${socket.id}`);
  socket.emit("welcome", { id: socket.id });
});
httpServer.listen(port, host, () => console.log(`socket.io listening on ${host}:${port}`));
process.on("SIGTERM", () => {
  io.close();
  process.exit(0);
});

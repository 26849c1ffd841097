#!/usr/bin/env node
// The floor of a Node.js TLS proxy: a node:tls server whose sockets are piped to and from a
// plaintext backend connection, one per client, checking nothing (`npm run bench -- --only
// haproxy,proxy,pipe`). Whatever it costs per request, any proxy written on Node's public
// socket API costs at least as much; what resp-tls-proxy costs beyond it is its own work.
//
//   node bench/pipe-forwarder.mjs PORT BACKEND_PORT CERT_FILE KEY_FILE
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

const [port, backendPort, certFile, keyFile] = process.argv.slice(2);
if (!keyFile) {
  console.error('usage: node bench/pipe-forwarder.mjs PORT BACKEND_PORT CERT_FILE KEY_FILE');
  process.exit(2);
}
const server = tls.createServer({ cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile), noDelay: true }, (client) => {
  const backend = net.connect({ host: '127.0.0.1', port: Number(backendPort), noDelay: true });
  client.pipe(backend);
  backend.pipe(client);
  client.on('error', () => backend.destroy());
  backend.on('error', () => client.destroy());
  client.on('close', () => backend.destroy());
  backend.on('close', () => client.destroy());
});
server.on('tlsClientError', () => {});
server.listen(Number(port), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));

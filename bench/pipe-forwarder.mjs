#!/usr/bin/env node
// A plain Node.js TLS pipe, as a baseline: a node:tls server whose sockets are piped to and from
// a plaintext backend connection, one per client, checking nothing and closing nothing in order
// (`npm run bench -- --only haproxy,proxy,pipe`). It offers the proxy's TLS settings (ciphers,
// minimum version), so the two differ in what they do per byte, not in what they negotiate.
//
//   node bench/pipe-forwarder.mjs PORT BACKEND_PORT CERT_FILE KEY_FILE
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { CIPHERS } from '../dist/config/tls.js';

const [port, backendPort, certFile, keyFile] = process.argv.slice(2);
if (!keyFile) {
  console.error('usage: node bench/pipe-forwarder.mjs PORT BACKEND_PORT CERT_FILE KEY_FILE');
  process.exit(2);
}
const server = tls.createServer({ cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile), ciphers: CIPHERS, minVersion: 'TLSv1.2', noDelay: true }, (client) => {
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

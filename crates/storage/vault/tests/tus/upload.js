// Upload a file with the real tus-js-client in several chunks through a TCP
// proxy that cuts the connection once, in the middle of a PATCH body, after
// a given number of bytes (a dropped connection). tus-js-client then resumes
// by itself: HEAD for the offset the server kept, PATCH from there.
// Usage: node upload.js ENDPOINT FILE CUT_AFTER_BYTES CHUNK_SIZE
// Prints one JSON line: {url, accepted, headOffsets, patchOffsets, cut, size}.
'use strict';
const tus = require('tus-js-client');
const fs = require('fs');
const net = require('net');

const [endpoint, file, cutArg, chunkArg] = process.argv.slice(2);
const cutAfter = Number(cutArg);
const chunkSize = Number(chunkArg);
const data = fs.readFileSync(file);
const target = new URL(endpoint);

let upstreamBytes = 0;
let cut = false;
const proxy = net.createServer((client) => {
  const server = net.connect(Number(target.port), target.hostname);
  server.on('data', (d) => client.write(d));
  server.on('end', () => client.end());
  server.on('error', () => client.destroy());
  client.on('error', () => server.destroy());
  client.on('end', () => server.end());
  client.on('data', (d) => {
    if (!cut && upstreamBytes + d.length >= cutAfter) {
      cut = true;
      server.write(d.subarray(0, cutAfter - upstreamBytes), () => {
        server.end();
        client.destroy();
      });
      upstreamBytes = cutAfter;
      return;
    }
    if (cut && client.destroyed) return;
    upstreamBytes += d.length;
    server.write(d);
  });
});

proxy.listen(0, '127.0.0.1', () => {
  const via = new URL(endpoint);
  via.port = String(proxy.address().port);
  const accepted = [];
  const headOffsets = [];
  const patchOffsets = [];
  const up = new tus.Upload(data, {
    endpoint: via.toString(),
    chunkSize,
    retryDelays: [100, 500, 1000, 2000],
    metadata: { filename: 'data.bin', package: 'pkg-1' },
    headers: { 'x-user': 'alice' },
    storeFingerprintForResuming: false,
    onChunkComplete: (_c, acc) => accepted.push(acc),
    onBeforeRequest: (req) => {
      if (req.getMethod() === 'PATCH') patchOffsets.push(Number(req.getHeader('Upload-Offset')));
    },
    onAfterResponse: (req, res) => {
      if (req.getMethod() === 'HEAD') headOffsets.push(Number(res.getHeader('Upload-Offset')));
    },
    onSuccess: () => {
      console.log(JSON.stringify({ url: up.url, accepted, headOffsets, patchOffsets, cut, size: data.length }));
      proxy.close();
      process.exit(0);
    },
    onError: (e) => { console.error(String(e)); process.exit(1); },
  });
  up.start();
});

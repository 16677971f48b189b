// Upload a file with the real tus-js-client in several chunks, abort it in
// the middle of a chunk (the connection is dropped), ask the server for the
// offset with HEAD, then resume with a new Upload from the upload URL.
// Usage: node upload.js ENDPOINT FILE ABORT_AT_BYTES CHUNK_SIZE
// Prints one JSON line: {url, lastAccepted, headOffset, resumedFrom, size}.
'use strict';
const tus = require('tus-js-client');
const fs = require('fs');

const [endpoint, file, abortAtArg, chunkArg] = process.argv.slice(2);
const abortAt = Number(abortAtArg);
const chunkSize = Number(chunkArg);
const data = fs.readFileSync(file);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function first() {
  return new Promise((resolve, reject) => {
    let lastAccepted = 0;
    let aborted = false;
    const up = new tus.Upload(data, {
      endpoint,
      chunkSize,
      retryDelays: [0, 200, 500],
      metadata: { filename: 'data.bin', package: 'pkg-1' },
      headers: { 'x-user': 'alice' },
      storeFingerprintForResuming: false,
      onChunkComplete: (_chunk, accepted) => { lastAccepted = accepted; },
      onProgress: (sent) => {
        if (!aborted && sent >= abortAt) {
          aborted = true;
          // drop the connection in the middle of a PATCH body
          up.abort(false).then(() => resolve({ url: up.url, lastAccepted }), reject);
        }
      },
      onSuccess: () => reject(new Error('finished before the abort point')),
      onError: reject,
    });
    up.start();
  });
}

async function headOffset(url) {
  // the server persists what arrived once it sees the body end; wait until stable
  let prev = -1;
  for (let i = 0; i < 50; i++) {
    const r = await fetch(url, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0', 'x-user': 'alice' } });
    if (r.status !== 200) throw new Error(`HEAD ${r.status}`);
    const off = Number(r.headers.get('upload-offset'));
    if (off === prev) return off;
    prev = off;
    await sleep(200);
  }
  return prev;
}

function resume(url) {
  return new Promise((resolve, reject) => {
    let resumedFrom = null;
    const up = new tus.Upload(data, {
      endpoint,
      uploadUrl: url,
      chunkSize,
      retryDelays: [0, 200, 500],
      headers: { 'x-user': 'alice' },
      storeFingerprintForResuming: false,
      onBeforeRequest: (req) => {
        if (resumedFrom === null && req.getMethod() === 'PATCH') {
          resumedFrom = Number(req.getHeader('Upload-Offset'));
        }
      },
      onSuccess: () => resolve(resumedFrom),
      onError: reject,
    });
    up.start();
  });
}

(async () => {
  const { url, lastAccepted } = await first();
  const off = await headOffset(url);
  const resumedFrom = await resume(url);
  console.log(JSON.stringify({ url, lastAccepted, headOffset: off, resumedFrom, size: data.length }));
})().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });

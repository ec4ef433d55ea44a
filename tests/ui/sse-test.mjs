// sse-test.mjs - the UI's parser of the event stream (ui/api.js readEvents)
// on what a network does to a stream: lines cut anywhere between chunks,
// CRLF, CR or LF line ends, comments, several data lines, ids without data.
import assert from 'node:assert/strict';
import { readEvents } from '../../ui/api.js';

function body(chunks) {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(c) {
      for (const x of chunks) c.enqueue(typeof x === 'string' ? enc.encode(x) : x);
      c.close();
    },
  });
}

async function parse(chunks) {
  const out = [];
  await readEvents(body(chunks), (ev) => out.push(ev));
  return out;
}

const text = ': keep-alive\n\nid: 7\ndata: {"index":7,"type":"task","state":"RUNNING"}\n\n' +
  'id: 8\r\ndata: {"index":8,\r\ndata: "type":"node"}\r\n\r\n' +
  'id: 9\rdata:{"index":9}\r\r' + 'id: 10\n\n' + 'event: cut\ndata: x\n\n' + 'id: 11\ndata: partial';
const want = [
  { data: '{"index":7,"type":"task","state":"RUNNING"}', id: '7' },
  { data: '{"index":8,\n"type":"node"}', id: '8' },
  { data: '{"index":9}', id: '9' },
  { data: '', id: '10' },
  { data: 'x', event: 'cut' },
];
// Whole, then cut at every byte, then one byte at a time (a multi-byte
// character cut in two included).
assert.deepEqual(await parse([text]), want);
for (let i = 1; i < text.length; i++) assert.deepEqual(await parse([text.slice(0, i), text.slice(i)]), want, `cut at ${i}`);
const bytes = new TextEncoder().encode('data: é€\n\n');
assert.deepEqual(await parse([...bytes].map((b) => new Uint8Array([b]))), [{ data: 'é€' }]);
console.log('sse-test: ok');

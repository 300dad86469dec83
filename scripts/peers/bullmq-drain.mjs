// BullMQ's drain, as `prosaas bench drain` measures its own: JOBS no-op jobs queued first (addBulk
// in batches of 1,000), then one Worker with CONCURRENCY and BullMQ's own defaults drains them;
// prints one JSON line with jobs/s from the worker's start to the last completion.
//   node bullmq-drain.mjs REDIS_PORT JOBS CONCURRENCY
import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';

const [port, jobs, concurrency] = process.argv.slice(2).map(Number);
// BullMQ 6 takes a client instance in an ES module (its own connection options need CommonJS).
const connect = () => new IORedis({ host: '127.0.0.1', port, maxRetriesPerRequest: null });
const name = `peer-drain-${process.pid}`;
const queue = new Queue(name, { connection: connect() });
for (let i = 0; i < jobs; i += 1000) {
  const batch = [];
  for (let j = i; j < Math.min(i + 1000, jobs); j++) batch.push({ name: 'noop', data: { i: j } });
  await queue.addBulk(batch);
}
let done = 0;
let finish;
const finished = new Promise((resolve) => { finish = resolve; });
const started = process.hrtime.bigint();
const worker = new Worker(name, async () => null, { connection: connect(), concurrency });
worker.on('completed', () => { if (++done === jobs) finish(); });
await finished;
const secs = Number(process.hrtime.bigint() - started) / 1e9;
console.log(JSON.stringify({ peer: 'bullmq 6.7.6', jobs, concurrency, secs, per_sec: jobs / secs }));
await worker.close();
await queue.obliterate({ force: true });
await queue.close();
process.exit(0);

// The web app's side of the render queue, for the end-to-end tests.
//
//   node producer.mjs spec.json
//
// spec.json: {redisUrl, queueName, jobs: [{data, opts}], timeoutMs}
//
// Listens to the queue's QueueEvents (opened first, positioned at the stream's current end so no
// event of ours can be missed), adds every job as the web app does (`queue.add('render', data,
// opts)`), and prints one JSON line per event on stdout:
//   {"event":"added","jobId","renderId"}
//   {"event":"progress","jobId","data"}
//   {"event":"completed","jobId","returnvalue"}
//   {"event":"failed","jobId","failedReason"}
// Every line also carries `at` (epoch milliseconds). Exits 0 once every added job is completed or
// failed for good (no attempt left, or state 'failed'); on timeout prints {"event":"timeout"}
// and exits 2. Events of jobs this run did not add are printed too; readers filter by jobId.
import { readFileSync } from 'node:fs';
import { Job, Queue, QueueEvents } from 'bullmq';
import IORedis from 'ioredis';

const JOB_NAME = 'render';

function emit(event) {
  process.stdout.write(JSON.stringify({ ...event, at: Date.now() }) + '\n');
}

function connect(redisUrl) {
  return new IORedis(redisUrl, { maxRetriesPerRequest: null });
}

async function main() {
  const specPath = process.argv[2];
  if (!specPath) {
    process.stderr.write('usage: node producer.mjs spec.json\n');
    process.exit(64);
  }
  const spec = JSON.parse(readFileSync(specPath, 'utf8'));
  const { redisUrl, queueName, jobs = [], timeoutMs = 60000 } = spec;

  const queueConnection = connect(redisUrl);
  const eventsConnection = connect(redisUrl);
  const queue = new Queue(queueName, { connection: queueConnection });
  await queue.waitUntilReady();

  // Start reading right after the newest event already in the stream (not at '$', which is
  // only resolved when the first XREAD reaches Redis and could skip early events).
  const newest = await queueConnection.xrevrange(queue.keys.events, '+', '-', 'COUNT', 1);
  const lastEventId = newest.length > 0 ? newest[0][0] : '0-0';
  const queueEvents = new QueueEvents(queueName, { connection: eventsConnection, lastEventId });
  await queueEvents.waitUntilReady();

  const added = new Map(); // jobId -> {attempts}
  const finished = new Set();
  const early = []; // terminal events seen before their job's add() returned
  let adding = true;
  let exiting = false;
  let timer = null;

  async function shutdown(code) {
    if (exiting) return;
    exiting = true;
    clearTimeout(timer);
    try {
      await Promise.race([
        Promise.allSettled([queueEvents.close(), queue.close()]),
        new Promise((resolve) => setTimeout(resolve, 2000)),
      ]);
    } finally {
      process.exit(code);
    }
  }

  function checkDone() {
    if (!adding && [...added.keys()].every((jobId) => finished.has(jobId))) {
      shutdown(0);
    }
  }

  async function failedForGood(jobId) {
    const job = await Job.fromId(queue, jobId);
    if (!job) return true; // removed on fail: it cannot come back
    const attempts = job.opts?.attempts ?? added.get(jobId)?.attempts ?? 1;
    if (job.attemptsMade >= attempts) return true;
    return (await job.getState()) === 'failed';
  }

  async function onTerminal(kind, jobId) {
    if (!added.has(jobId)) {
      if (adding) early.push({ kind, jobId });
      return;
    }
    if (kind === 'completed' || (await failedForGood(jobId))) {
      finished.add(jobId);
    }
    checkDone();
  }

  timer = setTimeout(() => {
    emit({ event: 'timeout', pending: [...added.keys()].filter((jobId) => !finished.has(jobId)) });
    shutdown(2);
  }, timeoutMs);

  queueEvents.on('error', (error) => process.stderr.write(`QueueEvents error: ${error}\n`));
  queueEvents.on('progress', ({ jobId, data }) => emit({ event: 'progress', jobId, data }));
  queueEvents.on('completed', ({ jobId, returnvalue }) => {
    let value = returnvalue;
    if (typeof value === 'string') {
      try {
        value = JSON.parse(value);
      } catch {
        // not JSON: keep the string
      }
    }
    emit({ event: 'completed', jobId, returnvalue: value });
    onTerminal('completed', jobId).catch((error) => process.stderr.write(`${error}\n`));
  });
  queueEvents.on('failed', ({ jobId, failedReason }) => {
    emit({ event: 'failed', jobId, failedReason });
    onTerminal('failed', jobId).catch((error) => process.stderr.write(`${error}\n`));
  });

  for (const { data, opts = {} } of jobs) {
    const job = await queue.add(JOB_NAME, data, opts);
    added.set(job.id, { attempts: opts.attempts ?? 1 });
    emit({ event: 'added', jobId: job.id, renderId: data?.renderId ?? null });
  }
  adding = false;
  for (const { kind, jobId } of early.splice(0)) {
    await onTerminal(kind, jobId);
  }
  checkDone();
}

main().catch((error) => {
  process.stderr.write(`producer failed: ${error?.stack ?? error}\n`);
  process.exit(1);
});

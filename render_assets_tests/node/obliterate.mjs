// The web app's bluntest cancel: `node obliterate.mjs REDIS_URL QUEUE` removes the whole queue,
// jobs being processed included (`obliterate({force: true})`).
import { Queue } from 'bullmq';
import IORedis from 'ioredis';

const [redisUrl, queueName] = process.argv.slice(2);
const queue = new Queue(queueName, { connection: new IORedis(redisUrl, { maxRetriesPerRequest: null }) });
await queue.obliterate({ force: true });
await queue.close();
process.exit(0);

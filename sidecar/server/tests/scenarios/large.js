// Large writes, Node.js driver edition (tests/large_writes.rs runs it on
// both stores): a document of exactly 16 MiB round-trips; eight 10 MB
// documents insert in one insertMany call; an updateMany and a deleteMany
// whose images total ~100 MB and a 40 MB transaction each commit atomically
// (one commit: the head moves by one, and, with ARGON_PAST_READS=yes, the
// state just before it has none of it, the one after all of it). Prints OK.
//
//   ARGON_URI=... ARGON_DB=... ARGON_PAST_READS=yes|no node large.js
const assert = require('node:assert/strict');
const { MongoClient, Binary, BSON } = require('mongodb');

const uri = process.env.ARGON_URI;
const dbName = process.env.ARGON_DB;
const pastReads = process.env.ARGON_PAST_READS === 'yes';
const MIB = 1 << 20;
const LIMIT = 16 * MIB;

// n bytes that depend on `tag` (a whole document reads back equal).
function pad(tag, n) {
  const block = Buffer.alloc(4093);
  for (let i = 0; i < block.length; i++) block[i] = (i * 131 + tag) % 256;
  const out = Buffer.alloc(n);
  for (let at = 0; at < n; at += block.length) block.copy(out, at, 0, Math.min(block.length, n - at));
  return new Binary(out);
}

function samePad(got, tag, n, what) {
  assert.ok(Buffer.from(got.buffer).equals(Buffer.from(pad(tag, n).buffer)), `${what} is not whole`);
}

async function main() {
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 10000 });
  await client.connect();
  const admin = client.db('admin');
  const db = client.db(dbName);
  const head = async () => (await admin.command({ argonLogInfo: 'main' })).branch.headSeq;
  const at = (seq) => client.db(`${dbName}~main@${seq}`);

  // Eight 10 MB documents in one call (the driver splits them by
  // maxMessageSizeBytes; each message is one commit).
  const ten = [];
  for (let i = 0; i < 8; i++) ten.push({ _id: i, pad: pad(i, 10_000_000) });
  const r = await db.collection('bulk').insertMany(ten);
  assert.equal(r.insertedCount, 8);
  assert.equal(await db.collection('bulk').countDocuments({}), 8);
  for (let i = 0; i < 8; i++) {
    const d = await db.collection('bulk').findOne({ _id: i });
    samePad(d.pad, i, 10_000_000, `document ${i}`);
  }

  // A document of exactly maxBsonObjectSize round-trips.
  assert.equal((await admin.command({ hello: 1 })).maxBsonObjectSize, LIMIT);
  const overhead = BSON.calculateObjectSize({ _id: 'max', pad: new Binary(Buffer.alloc(0)) });
  const max = { _id: 'max', pad: pad(1, LIMIT - overhead) };
  assert.equal(BSON.calculateObjectSize(max), LIMIT);
  await db.collection('bulk').insertOne(max);
  samePad((await db.collection('bulk').findOne({ _id: 'max' })).pad, 1, LIMIT - overhead, 'the 16 MiB document');

  // updateMany: ten 5 MB documents rewritten (50 MB of new documents and
  // 50 MB of the ones they replace, one commit).
  const upd = db.collection('upd');
  const five = [];
  for (let i = 0; i < 10; i++) five.push({ _id: i, tag: 0, pad: pad(i, 5_000_000) });
  await upd.insertMany(five);
  let before = await head();
  const u = await upd.updateMany({}, { $set: { tag: 1 } });
  assert.deepEqual([u.matchedCount, u.modifiedCount], [10, 10]);
  assert.equal(await head(), before + 1, 'one commit');
  const tags = async (d) => (await d.collection('upd').find({}, { projection: { tag: 1 } }).toArray()).map((x) => x.tag);
  if (pastReads) assert.deepEqual(await tags(at(before)), Array(10).fill(0));
  assert.deepEqual(await tags(db), Array(10).fill(1));
  for (let i = 0; i < 10; i++) samePad((await upd.findOne({ _id: i })).pad, i, 5_000_000, `updated ${i}`);

  // deleteMany: the eight 10 MB documents and the 16 MiB one, one commit.
  before = await head();
  assert.equal((await db.collection('bulk').deleteMany({})).deletedCount, 9);
  assert.equal(await head(), before + 1);
  if (pastReads) assert.equal(await at(before).collection('bulk').countDocuments({}), 9);
  assert.equal(await db.collection('bulk').countDocuments({}), 0);

  // A 40 MB transaction: eight 5 MiB documents and a counter, one commit.
  await db.collection('counters').insertOne({ _id: 'loads', n: 0 });
  before = await head();
  const session = client.startSession();
  try {
    await session.withTransaction(async () => {
      for (let i = 0; i < 8; i++) {
        await db.collection('txn').insertOne({ _id: i, pad: pad(100 + i, 5 * MIB) }, { session });
      }
      await db.collection('counters').updateOne({ _id: 'loads' }, { $inc: { n: 8 } }, { session });
    });
  } finally {
    await session.endSession();
  }
  assert.equal(await head(), before + 1, 'the transaction is one commit');
  if (pastReads) {
    assert.equal(await at(before).collection('txn').countDocuments({}), 0);
    assert.equal((await at(before).collection('counters').findOne({ _id: 'loads' })).n, 0);
  }
  assert.equal(await db.collection('txn').countDocuments({}), 8);
  assert.equal((await db.collection('counters').findOne({ _id: 'loads' })).n, 8);
  for (let i = 0; i < 8; i++) samePad((await db.collection('txn').findOne({ _id: i })).pad, 100 + i, 5 * MIB, `txn ${i}`);

  await client.close();
  console.log('OK');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

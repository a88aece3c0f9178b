// Authentication, Node.js driver edition (see tests/auth.rs): SCRAM-SHA-256
// and SCRAM-SHA-1 as root, a readWrite user on preview-* that can write
// preview-1 and cannot read main, and a wrong password failing with 18.
const { MongoClient } = require('mongodb');
const assert = require('assert');

const base = process.env.ARGON_HOSTPORT;
const pw = encodeURIComponent(process.env.ARGON_PASSWORD);

async function withClient(userinfo, params, f) {
  const c = new MongoClient(`mongodb://${userinfo}${base}/?directConnection=true&serverSelectionTimeoutMS=10000${params}`);
  try { return await f(c); } finally { await c.close(); }
}

(async () => {
  for (const mech of ['SCRAM-SHA-256', 'SCRAM-SHA-1']) {
    await withClient(`root:${pw}@`, `&authSource=admin&authMechanism=${mech}`, async (c) => {
      await c.db('app').collection('node').insertOne({ mech });
      assert.ok(await c.db('app').collection('node').findOne({ mech }));
    });
  }
  await withClient(`root:${pw}@`, '&authSource=admin', async (c) => {
    await c.db('admin').command({ ping: 1 });
  });
  await withClient(`dev:${pw}@`, '&authSource=admin', async (c) => {
    await c.db('app~preview-1').collection('node').insertOne({ by: 'node' });
    await assert.rejects(c.db('app').collection('node').findOne({}), (e) => e.code === 13);
  });
  await withClient(`root:${pw}x@`, '&authSource=admin', async (c) => {
    await assert.rejects(c.db('app').collection('node').findOne({}), (e) => e.code === 18);
  });
  console.log('OK');
})().catch((e) => { console.error(e); process.exit(1); });

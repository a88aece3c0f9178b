// The driver scenario, Node.js edition: the `mongodb` driver runs the same
// steps as every other client (see tests/clients.rs), then mongoose runs its
// own models against the server and a branch. Prints OK.
//
//   ARGON_URI=... ARGON_DB=... ARGON_BRANCH=... node scenario.js
const assert = require('node:assert/strict');
const { MongoClient } = require('mongodb');
const mongoose = require('mongoose');

const uri = process.env.ARGON_URI;
const dbName = process.env.ARGON_DB;
const branch = process.env.ARGON_BRANCH;

async function expectCode(promise, code, what) {
  try {
    await promise;
  } catch (e) {
    assert.equal(e.code, code, `${what}: ${e}`);
    return e;
  }
  assert.fail(`${what} succeeded`);
}

async function driverScenario(client) {
  const admin = client.db('admin');
  const db = client.db(dbName);
  const people = db.collection('people');
  assert.equal((await db.command({ ping: 1 })).ok, 1);

  // inserts
  const docs = [];
  for (let i = 0; i < 10; i++) {
    docs.push({ _id: i, name: `p${i}`, age: 20 + i, group: i % 2 === 0 ? 'even' : 'odd' });
  }
  await people.insertMany(docs);
  const r1 = await people.insertOne({ name: 'no-id', age: 99 });
  assert.ok(r1.insertedId);
  assert.equal(await people.countDocuments({}), 11);

  // finds with filters, sort and limit
  const found = await people.find({ age: { $gte: 22, $lt: 99 }, group: 'even' }).sort({ age: -1 }).limit(2).toArray();
  assert.deepEqual(found.map((d) => d._id), [8, 6]);
  assert.equal((await people.findOne({ _id: 3 })).name, 'p3');
  const names = await people.find({ _id: { $in: [1, 2] } }, { projection: { name: 1, _id: 0 } }).sort({ _id: 1 }).toArray();
  assert.deepEqual(names, [{ name: 'p1' }, { name: 'p2' }]);

  // updates
  const u = await people.updateMany({ group: 'odd' }, { $inc: { age: 100 } });
  assert.deepEqual([u.matchedCount, u.modifiedCount], [5, 5]);
  assert.equal((await people.updateOne({ _id: 0 }, { $set: { name: 'zero' } })).modifiedCount, 1);

  // deletes
  assert.equal((await people.deleteOne({ _id: 9 })).deletedCount, 1);
  assert.equal((await people.deleteMany({ age: { $gt: 100, $lt: 199 } })).deletedCount, 4);
  assert.equal(await people.countDocuments({}), 6);

  // upserts
  const up = await people.updateOne({ _id: 100 }, { $set: { name: 'hundred' } }, { upsert: true });
  assert.equal(up.upsertedId, 100);
  const up2 = await people.updateOne({ _id: 100 }, { $set: { age: 1 } }, { upsert: true });
  assert.equal(up2.upsertedId, null);
  assert.equal(up2.matchedCount, 1);

  // findAndModify: post-image, pre-image, remove
  const after = await people.findOneAndUpdate({ _id: 0 }, { $inc: { age: 1 } }, { returnDocument: 'after' });
  assert.equal(after.age, 21);
  const before = await people.findOneAndUpdate({ _id: 0 }, { $set: { tag: 'x' } });
  assert.equal(before.tag, undefined);
  assert.equal(before.age, 21);
  const removed = await people.findOneAndDelete({ _id: 100 });
  assert.equal(removed.name, 'hundred');
  assert.equal(await people.countDocuments({}), 6);

  // a cursor over several batches
  const many = [];
  for (let i = 0; i < 250; i++) many.push({ _id: i, x: i });
  await db.collection('many').insertMany(many);
  const ids = (await db.collection('many').find({}).sort({ _id: 1 }).batchSize(7).toArray()).map((d) => d._id);
  assert.deepEqual(ids, [...Array(250).keys()]);

  // a duplicate key
  await expectCode(people.insertOne({ _id: 0, name: 'again' }), 11000, 'duplicate _id');

  // branch create -> write on the branch -> main unchanged
  const created = await admin.command({ argonCreateBranch: branch, from: 'main' });
  assert.equal(created.branch.name, branch);
  assert.equal(created.branch.parent, 'main');
  const onBranch = client.db(`${dbName}~${branch}`).collection('people');
  await onBranch.insertOne({ _id: 500, name: 'branch-only' });
  await onBranch.updateOne({ _id: 0 }, { $set: { name: 'changed-on-branch' } });
  assert.equal(await onBranch.countDocuments({}), 7);
  assert.equal(await people.countDocuments({}), 6);
  assert.equal((await people.findOne({ _id: 0 })).name, 'zero');
  assert.equal(await people.findOne({ _id: 500 }), null);

  // a read at a past point of main
  const head = (await admin.command({ argonLogInfo: 'main' })).branch.headSeq;
  await people.deleteOne({ _id: 0 });
  assert.equal(await people.findOne({ _id: 0 }), null);
  const past = client.db(`${dbName}~main@${head}`).collection('people');
  assert.equal((await past.findOne({ _id: 0 })).name, 'zero');
  assert.equal(await past.countDocuments({}), 6);
  try {
    await past.insertOne({ _id: 1000 });
    assert.fail('a write to a past point was accepted');
  } catch (e) {
    // IllegalOperation (20), as mongod answers a write it may not take. The
    // driver rewrites code 20 on a retryable write into its MMAPv1 hint and
    // keeps the server's error as originalError.
    const original = e.originalError ?? e;
    assert.equal(original.code, 20, String(e));
    assert.match(String(original.errmsg ?? original), /read-only/);
  }
}

async function mongooseScenario() {
  const itemSchema = new mongoose.Schema({
    _id: Number,
    name: { type: String, required: true },
    qty: { type: Number, default: 0 },
    sku: { type: String, unique: true, sparse: true },
  });
  const conn = await mongoose.createConnection(uri, { dbName: `${dbName}_mongoose` }).asPromise();
  const Item = conn.model('Item', itemSchema);
  await Item.init(); // builds the unique index
  await Item.create([{ _id: 1, name: 'a', qty: 5, sku: 's1' }, { _id: 2, name: 'b', qty: 1 }, { _id: 3, name: 'c', qty: 9 }]);
  const top = await Item.find({ qty: { $gte: 2 } }).sort({ qty: -1 }).limit(1).lean();
  assert.deepEqual(top.map((d) => d._id), [3]);
  const updated = await Item.findOneAndUpdate({ _id: 2 }, { $inc: { qty: 10 } }, { new: true }).lean();
  assert.equal(updated.qty, 11);
  await Item.updateOne({ _id: 4 }, { $set: { name: 'd' } }, { upsert: true });
  assert.equal(await Item.countDocuments(), 4);
  await Item.deleteOne({ _id: 1 });
  assert.equal(await Item.countDocuments(), 3);
  await expectCode(Item.create({ _id: 2, name: 'dup' }), 11000, 'mongoose duplicate _id');
  await Item.create({ _id: 5, name: 'e', sku: 'x' });
  await expectCode(Item.create({ _id: 6, name: 'f', sku: 'x' }), 11000, 'mongoose unique sku');

  // the same models on a branch of this database
  const admin = conn.getClient().db('admin');
  await admin.command({ argonCreateBranch: `${branch}-m`, from: 'main' });
  const bconn = await mongoose.createConnection(uri, { dbName: `${dbName}_mongoose~${branch}-m` }).asPromise();
  const BItem = bconn.model('Item', itemSchema);
  await BItem.create({ _id: 7, name: 'branch' });
  assert.equal(await BItem.countDocuments(), 5);
  assert.equal(await Item.countDocuments(), 4);
  await bconn.close();
  await conn.close();
}

(async () => {
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 10000 });
  await client.connect();
  try {
    await driverScenario(client);
  } finally {
    await client.close();
  }
  await mongooseScenario();
  console.log('OK');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});

// Transactions through the Node.js driver's withTransaction and mongoose
// against a running sidecar (see tests/transaction_clients.rs). Prints OK.
//
//   ARGON_URI=... ARGON_DB=... node transactions.js
const assert = require('node:assert/strict');
const { MongoClient } = require('mongodb');
const mongoose = require('mongoose');

const uri = process.env.ARGON_URI;
const dbName = process.env.ARGON_DB;

async function driver() {
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 10000 });
  await client.connect();
  const accounts = client.db(dbName).collection('accounts');
  await accounts.deleteMany({});
  await accounts.insertMany([{ _id: 'a', balance: 100 }, { _id: 'b', balance: 0 }]);
  const session = client.startSession();
  let attempts = 0;
  await session.withTransaction(async () => {
    attempts += 1;
    await accounts.updateOne({ _id: 'a' }, { $inc: { balance: -10 } }, { session });
    if (attempts === 1) {
      // Another client commits to the same document first: a conflict.
      await accounts.updateOne({ _id: 'a' }, { $inc: { balance: 1 } });
    }
    const a = await accounts.findOne({ _id: 'a' }, { session });
    assert.equal(a.balance, attempts === 1 ? 90 : 91);
    await accounts.updateOne({ _id: 'b' }, { $inc: { balance: 10 } }, { session });
  });
  await session.endSession();
  assert.equal(attempts, 2);
  assert.equal((await accounts.findOne({ _id: 'a' })).balance, 91);
  assert.equal((await accounts.findOne({ _id: 'b' })).balance, 10);

  // Aborted: nothing lands.
  const s2 = client.startSession();
  s2.startTransaction();
  await accounts.insertOne({ _id: 'c', balance: 5 }, { session: s2 });
  await s2.abortTransaction();
  await s2.endSession();
  assert.equal(await accounts.countDocuments({ _id: 'c' }), 0);
  await client.close();
}

async function withMongoose() {
  const conn = await mongoose.createConnection(uri, { dbName, serverSelectionTimeoutMS: 10000 }).asPromise();
  const Order = conn.model('Order', new mongoose.Schema({ _id: String, item: String, qty: Number }));
  const Stock = conn.model('Stock', new mongoose.Schema({ _id: String, qty: Number }));
  await Order.deleteMany({});
  await Stock.deleteMany({});
  await Stock.create({ _id: 'apple', qty: 10 });
  await conn.transaction(async (session) => {
    await Order.create([{ _id: 'o1', item: 'apple', qty: 3 }], { session });
    await Stock.updateOne({ _id: 'apple' }, { $inc: { qty: -3 } }, { session });
  });
  assert.equal((await Stock.findById('apple')).qty, 7);
  assert.equal(await Order.countDocuments(), 1);
  // A failing callback aborts: neither write lands.
  await assert.rejects(conn.transaction(async (session) => {
    await Order.create([{ _id: 'o2', item: 'apple', qty: 1 }], { session });
    await Stock.updateOne({ _id: 'apple' }, { $inc: { qty: -1 } }, { session });
    throw new Error('out of stock');
  }), /out of stock/);
  assert.equal((await Stock.findById('apple')).qty, 7);
  assert.equal(await Order.countDocuments(), 1);
  await conn.close();
}

(async () => {
  await driver();
  await withMongoose();
  console.log('OK');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});

// Document validation as mongoose users meet it: a collection created with
// a validator refuses a model's save with 121 and errInfo, and a TTL index
// declared in the schema (`expires`) is created. Prints OK.
//
//   ARGON_URI=... ARGON_DB=... node validation.js
const assert = require('node:assert/strict');
const mongoose = require('mongoose');

const uri = process.env.ARGON_URI;
const dbName = process.env.ARGON_DB;

async function main() {
  const conn = await mongoose.createConnection(uri, { dbName }).asPromise();
  await conn.db.createCollection('orders', {
    validator: { qty: { $gte: 1 }, status: { $in: ['new', 'paid'] } },
  });
  const Order = conn.model('Order', new mongoose.Schema({
    _id: Number,
    qty: Number,
    status: String,
    at: { type: Date, expires: 3600 },
  }), 'orders');
  await Order.init();
  await Order.create({ _id: 1, qty: 2, status: 'new' });
  try {
    await Order.create({ _id: 2, qty: 0, status: 'lost' });
    assert.fail('an invalid order was saved');
  } catch (e) {
    assert.equal(e.code, 121, `${e}`);
    const details = e.errInfo.details;
    assert.equal(details.operatorName, '$and');
    assert.deepEqual(details.clausesNotSatisfied.map((c) => c.index), [0, 1]);
  }
  const indexes = await conn.db.collection('orders').indexes();
  const ttl = indexes.find((i) => i.key.at === 1);
  assert.equal(ttl.expireAfterSeconds, 3600, JSON.stringify(indexes));
  assert.equal(await Order.countDocuments(), 1);
  await conn.close();
  console.log('OK');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

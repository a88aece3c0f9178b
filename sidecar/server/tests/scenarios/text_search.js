// Text search as mongoose users meet it: a schema's text index (with
// weights) built by Model.init(), $text with the score projected and
// sorted, and a $text query without a text index failing with 27. Prints OK.
//
//   ARGON_URI=... ARGON_DB=... node text_search.js
const assert = require('node:assert/strict');
const mongoose = require('mongoose');

const uri = process.env.ARGON_URI;
const dbName = process.env.ARGON_DB;

async function main() {
  const conn = await mongoose.createConnection(uri, { dbName }).asPromise();
  const schema = new mongoose.Schema({ _id: Number, title: String, body: String });
  schema.index({ title: 'text', body: 'text' }, { weights: { title: 3 }, name: 'search' });
  const Post = conn.model('Post', schema, 'posts');
  await Post.init();
  await Post.create([
    { _id: 1, title: 'Running shoes', body: 'for trail runners' },
    { _id: 2, title: 'Socks', body: 'good for running' },
    { _id: 3, title: 'Hats', body: 'warm wool' },
  ]);
  const indexes = await conn.db.collection('posts').indexes();
  const text = indexes.find((i) => i.name === 'search');
  assert.deepEqual(text.key, { _fts: 'text', _ftsx: 1 }, JSON.stringify(indexes));
  assert.deepEqual(text.weights, { body: 1, title: 3 });
  const found = await Post.find(
    { $text: { $search: 'run' } },
    { score: { $meta: 'textScore' } },
  ).sort({ score: { $meta: 'textScore' } }).lean();
  // 1: "Running" in the title (weight 3, one of two terms: 3 x 0.75; the
  // body's "runners" stems to "runner"); 2: "running" in the body (0.75).
  assert.deepEqual(found.map((d) => [d._id, d.score]), [[1, 3 * 0.75], [2, 0.75]]);
  assert.equal(await Post.countDocuments({ $text: { $search: 'wool -socks' } }), 1);
  assert.equal(await Post.countDocuments({ $text: { $search: 'wool -hats' } }), 0);
  const Plain = conn.model('Plain', new mongoose.Schema({ _id: Number, t: String }), 'plain');
  await Plain.create({ _id: 1, t: 'x' });
  await assert.rejects(Plain.find({ $text: { $search: 'x' } }), (e) => e.code === 27);
  await conn.close();
  console.log('OK');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

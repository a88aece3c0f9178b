// Geospatial as mongoose users meet it: a schema's 2dsphere index built by
// Model.init(), Query#near (a $nearSphere with $geometry and maxDistance),
// countDocuments (its $near refused with 5626500 as on MongoDB, its
// $geoWithin + $centerSphere counted), Aggregate#near (the $geoNear
// stage), and an invalid point refused with 16755. Distances are checked against the spherical
// law of cosines computed here. Prints OK.
//
//   ARGON_URI=... ARGON_DB=... node geo.js
const assert = require('node:assert/strict');
const mongoose = require('mongoose');

const uri = process.env.ARGON_URI;
const dbName = process.env.ARGON_DB;
const R = 6378100;

function distance([l1, p1], [l2, p2]) {
  const r = Math.PI / 180;
  const c = Math.sin(p1 * r) * Math.sin(p2 * r) + Math.cos(p1 * r) * Math.cos(p2 * r) * Math.cos((l2 - l1) * r);
  return Math.acos(Math.min(1, Math.max(-1, c))) * R;
}

async function main() {
  const conn = await mongoose.createConnection(uri, { dbName }).asPromise();
  const schema = new mongoose.Schema({
    _id: String,
    loc: { type: { type: String, enum: ['Point'] }, coordinates: [Number] },
  });
  schema.index({ loc: '2dsphere' });
  const Store = conn.model('Store', schema, 'stores');
  await Store.init();
  const cities = {
    'new-york': [-73.9857, 40.7484],
    philadelphia: [-75.1652, 39.9526],
    boston: [-71.0589, 42.3601],
    washington: [-77.0369, 38.9072],
    london: [-0.1278, 51.5074],
  };
  await Store.create(Object.entries(cities).map(([_id, coordinates]) => ({ _id, loc: { type: 'Point', coordinates } })));
  const ny = cities['new-york'];
  const want = Object.keys(cities)
    .map((n) => [n, distance(ny, cities[n])])
    .filter(([, d]) => d <= 400000)
    .sort((a, b) => a[1] - b[1]);
  const near = await Store.find()
    .where('loc')
    .near({ center: { type: 'Point', coordinates: ny }, maxDistance: 400000, spherical: true })
    .lean();
  assert.deepEqual(near.map((d) => d._id), want.map(([n]) => n));
  // countDocuments runs an aggregation $match, where MongoDB refuses
  // $near (5626500) and points to $geoWithin.
  await assert.rejects(
    Store.countDocuments({ loc: { $near: { $geometry: { type: 'Point', coordinates: ny }, $maxDistance: 400000 } } }),
    (e) => e.code === 5626500,
  );
  assert.equal(
    await Store.countDocuments({ loc: { $geoWithin: { $centerSphere: [ny, 400000 / R] } } }),
    want.length,
  );
  const agg = await Store.aggregate().near({
    near: { type: 'Point', coordinates: ny },
    distanceField: 'dist',
    spherical: true,
    maxDistance: 400000,
  });
  assert.deepEqual(agg.map((d) => d._id), want.map(([n]) => n));
  for (const [i, d] of agg.entries()) {
    assert.ok(Math.abs(d.dist - want[i][1]) < 1, `${d._id}: ${d.dist} vs ${want[i][1]}`);
  }
  await assert.rejects(
    Store.create({ _id: 'nowhere', loc: { type: 'Point', coordinates: [200, 0] } }),
    (e) => e.code === 16755,
  );
  await conn.close();
  console.log('OK');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

// The driver scenario, mongosh edition (scripted shell): the same steps as
// every other client (see tests/clients.rs). The test prepends
// `const DB = "..."; const BRANCH = "...";`. Prints OK.
function check(cond, what) {
  if (!cond) throw new Error(`assertion failed: ${what}`);
}
function same(a, b, what) {
  const [x, y] = [JSON.stringify(a), JSON.stringify(b)];
  if (x !== y) throw new Error(`${what}: got ${x}, want ${y}`);
}
function errorCode(fn) {
  try {
    fn();
  } catch (e) {
    return e.code ?? String(e);
  }
  return null;
}

const d = db.getSiblingDB(DB);
const people = d.people;
same(d.runCommand({ ping: 1 }).ok, 1, 'ping');

// inserts
const docs = [];
for (let i = 0; i < 10; i++) docs.push({ _id: i, name: `p${i}`, age: 20 + i, group: i % 2 === 0 ? 'even' : 'odd' });
people.insertMany(docs);
check(people.insertOne({ name: 'no-id', age: 99 }).insertedId, 'insertedId');
same(people.countDocuments({}), 11, 'count after inserts');

// finds with filters, sort and limit
same(people.find({ age: { $gte: 22, $lt: 99 }, group: 'even' }).sort({ age: -1 }).limit(2).toArray().map((x) => x._id), [8, 6], 'sorted find');
same(people.findOne({ _id: 3 }).name, 'p3', 'findOne');
same(people.find({ _id: { $in: [1, 2] } }, { name: 1, _id: 0 }).sort({ _id: 1 }).toArray(), [{ name: 'p1' }, { name: 'p2' }], 'projection');

// updates
const u = people.updateMany({ group: 'odd' }, { $inc: { age: 100 } });
same([u.matchedCount, u.modifiedCount], [5, 5], 'updateMany');
same(people.updateOne({ _id: 0 }, { $set: { name: 'zero' } }).modifiedCount, 1, 'updateOne');

// deletes
same(people.deleteOne({ _id: 9 }).deletedCount, 1, 'deleteOne');
same(people.deleteMany({ age: { $gt: 100, $lt: 199 } }).deletedCount, 4, 'deleteMany');
same(people.countDocuments({}), 6, 'count after deletes');

// upserts (mongosh's UpdateResult names the upserted _id `insertedId`)
const up1 = people.updateOne({ _id: 100 }, { $set: { name: 'hundred' } }, { upsert: true });
same([up1.insertedId, up1.upsertedCount], [100, 1], 'upsert inserts');
const up2 = people.updateOne({ _id: 100 }, { $set: { age: 1 } }, { upsert: true });
same([up2.insertedId ?? null, up2.upsertedCount, up2.matchedCount], [null, 0, 1], 'upsert matches');

// findAndModify: post-image, pre-image, remove
same(people.findOneAndUpdate({ _id: 0 }, { $inc: { age: 1 } }, { returnDocument: 'after' }).age, 21, 'post-image');
const before = people.findOneAndUpdate({ _id: 0 }, { $set: { tag: 'x' } });
same([before.tag ?? null, before.age], [null, 21], 'pre-image');
same(people.findOneAndDelete({ _id: 100 }).name, 'hundred', 'findOneAndDelete');
same(d.runCommand({ findAndModify: 'people', query: { _id: 0 }, update: { $set: { tag: 'y' } }, new: true }).value.tag, 'y', 'findAndModify command');
same(people.countDocuments({}), 6, 'count after findAndModify');

// a cursor over several batches
const many = [];
for (let i = 0; i < 250; i++) many.push({ _id: i, x: i });
d.many.insertMany(many);
same(d.many.find({}).sort({ _id: 1 }).batchSize(7).toArray().map((x) => x._id), [...Array(250).keys()], 'cursor batches');

// a duplicate key
same(errorCode(() => people.insertOne({ _id: 0, name: 'again' })), 11000, 'duplicate _id');

// branch create -> write on the branch -> main unchanged
const admin = db.getSiblingDB('admin');
const created = admin.runCommand({ argonCreateBranch: BRANCH, from: 'main' });
same([created.ok, created.branch.name, created.branch.parent], [1, BRANCH, 'main'], 'argonCreateBranch');
const onBranch = db.getSiblingDB(`${DB}~${BRANCH}`).people;
onBranch.insertOne({ _id: 500, name: 'branch-only' });
onBranch.updateOne({ _id: 0 }, { $set: { name: 'changed-on-branch' } });
same(onBranch.countDocuments({}), 7, 'branch count');
same(people.countDocuments({}), 6, 'main count');
same(people.findOne({ _id: 0 }).name, 'zero', 'main unchanged');
same(people.findOne({ _id: 500 }), null, 'branch write not on main');

// a read at a past point of main
const head = admin.runCommand({ argonLogInfo: 'main' }).branch.headSeq;
people.deleteOne({ _id: 0 });
same(people.findOne({ _id: 0 }), null, 'deleted on main');
const past = db.getSiblingDB(`${DB}~main@${head}`).people;
same(past.findOne({ _id: 0 }).name, 'zero', 'past point');
same(past.countDocuments({}), 6, 'past count');
check(String(errorCode(() => past.insertOne({ _id: 1000 }))) !== 'null', 'a write to a past point fails');

print('OK');

# The driver scenario, pymongo edition. Every client runs the same steps
# (see tests/clients.rs); this one asserts with pymongo and prints OK.
#
#   python scenario.py <uri> <db> <branch>
import sys

from pymongo import MongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError, OperationFailure

uri, dbname, branch = sys.argv[1], sys.argv[2], sys.argv[3]
client = MongoClient(uri, serverSelectionTimeoutMS=10000)
admin = client.admin
db = client[dbname]
people = db.people

assert db.command("ping")["ok"] == 1

# inserts
people.insert_many(
    [{"_id": i, "name": f"p{i}", "age": 20 + i, "group": "even" if i % 2 == 0 else "odd"} for i in range(10)]
)
r = people.insert_one({"name": "no-id", "age": 99})
assert r.inserted_id is not None
assert people.count_documents({}) == 11

# finds with filters, sort and limit
found = list(people.find({"age": {"$gte": 22, "$lt": 99}, "group": "even"}).sort("age", -1).limit(2))
assert [d["_id"] for d in found] == [8, 6], found
assert people.find_one({"_id": 3})["name"] == "p3"
names = [d["name"] for d in people.find({"_id": {"$in": [1, 2]}}, {"name": 1, "_id": 0}).sort("_id", 1)]
assert names == ["p1", "p2"], names

# updates
r = people.update_many({"group": "odd"}, {"$inc": {"age": 100}})
assert (r.matched_count, r.modified_count) == (5, 5), r.raw_result
r = people.update_one({"_id": 0}, {"$set": {"name": "zero"}})
assert r.modified_count == 1

# deletes
assert people.delete_one({"_id": 9}).deleted_count == 1
assert people.delete_many({"age": {"$gt": 100, "$lt": 199}}).deleted_count == 4
assert people.count_documents({}) == 6

# upserts
r = people.update_one({"_id": 100}, {"$set": {"name": "hundred"}}, upsert=True)
assert r.upserted_id == 100, r.raw_result
r = people.update_one({"_id": 100}, {"$set": {"age": 1}}, upsert=True)
assert r.upserted_id is None and r.matched_count == 1

# findAndModify: post-image, pre-image, remove
after = people.find_one_and_update({"_id": 0}, {"$inc": {"age": 1}}, return_document=ReturnDocument.AFTER)
assert after["age"] == 21, after
before = people.find_one_and_update({"_id": 0}, {"$set": {"tag": "x"}})
assert "tag" not in before and before["age"] == 21
removed = people.find_one_and_delete({"_id": 100})
assert removed["name"] == "hundred"
assert people.count_documents({}) == 6

# a cursor over several batches
db.many.insert_many([{"_id": i, "x": i} for i in range(250)])
ids = [d["_id"] for d in db.many.find({}).sort("_id", 1).batch_size(7)]
assert ids == list(range(250)), ids[:10]

# a duplicate key
try:
    people.insert_one({"_id": 0, "name": "again"})
    raise AssertionError("a duplicate _id was accepted")
except DuplicateKeyError as e:
    assert e.code == 11000, e.details

# branch create -> write on the branch -> main unchanged
created = admin.command({"argonCreateBranch": branch, "from": "main"})
assert created["branch"]["name"] == branch and created["branch"]["parent"] == "main", created
on_branch = client[f"{dbname}~{branch}"].people
on_branch.insert_one({"_id": 500, "name": "branch-only"})
on_branch.update_one({"_id": 0}, {"$set": {"name": "changed-on-branch"}})
assert on_branch.count_documents({}) == 7
assert people.count_documents({}) == 6
assert people.find_one({"_id": 0})["name"] == "zero"
assert people.find_one({"_id": 500}) is None

# a read at a past point of main
head = admin.command({"argonLogInfo": "main"})["branch"]["headSeq"]
people.delete_one({"_id": 0})
assert people.find_one({"_id": 0}) is None
past = client[f"{dbname}~main@{head}"].people
assert past.find_one({"_id": 0})["name"] == "zero"
assert past.count_documents({}) == 6
try:
    past.insert_one({"_id": 1000})
    raise AssertionError("a write to a past point was accepted")
except OperationFailure as e:
    assert "read-only" in str(e), e

print("OK")

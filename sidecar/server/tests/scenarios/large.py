# Large writes, pymongo edition (tests/large_writes.rs runs it on both
# stores): a document of exactly 16 MiB round-trips; eight 10 MB documents
# insert in one insert_many call; an update_many and a delete_many whose
# images total ~100 MB and a 40 MB transaction each commit atomically (one
# commit: the head moves by one, and, with past reads on, the state just
# before it has none of it, the one after all of it). Prints OK.
#
#   python large.py <uri> <db> <past reads: yes|no>
import sys

import bson
from pymongo import MongoClient

uri, dbname, past_reads = sys.argv[1], sys.argv[2], sys.argv[3] == "yes"
client = MongoClient(uri, serverSelectionTimeoutMS=10000)
admin = client.admin
db = client[dbname]
MIB = 1 << 20
LIMIT = 16 * MIB


def head():
    return admin.command({"argonLogInfo": "main"})["branch"]["headSeq"]


def at(seq):
    """The database at commit `seq` of main (time travel)."""
    return client[f"{dbname}~main@{seq}"]


def pad(tag, n):
    """n bytes that depend on `tag` (a whole document reads back equal;
    pymongo stores bytes as binary subtype 0 and reads them back as bytes)."""
    block = bytes((i * 131 + tag) % 256 for i in range(4093))
    return (block * (n // len(block) + 1))[:n]


# Eight 10 MB documents in one call (the driver splits them by
# maxMessageSizeBytes, 48 MB; each message is one commit).
ten = [{"_id": i, "pad": pad(i, 10_000_000)} for i in range(8)]
r = db.bulk.insert_many(ten)
assert r.inserted_ids == list(range(8))
assert db.bulk.count_documents({}) == 8
for d in ten:
    assert db.bulk.find_one({"_id": d["_id"]}) == d, d["_id"]

# A document of exactly maxBsonObjectSize round-trips.
assert client.admin.command("hello")["maxBsonObjectSize"] == LIMIT
doc = {"_id": "max", "pad": pad(1, 0)}
doc["pad"] = pad(1, LIMIT - len(bson.encode(doc)))
assert len(bson.encode(doc)) == LIMIT
db.bulk.insert_one(doc)
assert db.bulk.find_one({"_id": "max"}) == doc

# update_many: ten 5 MB documents rewritten, so the commit logs 50 MB of
# new documents and 50 MB of the ones they replace.
db.upd.insert_many([{"_id": i, "tag": 0, "pad": pad(i, 5_000_000)} for i in range(10)])
before = head()
r = db.upd.update_many({}, {"$set": {"tag": 1}})
assert (r.matched_count, r.modified_count) == (10, 10), r.raw_result
assert head() == before + 1, "one commit"
if past_reads:
    assert sorted(d["tag"] for d in at(before).upd.find({}, {"tag": 1})) == [0] * 10
assert sorted(d["tag"] for d in db.upd.find({}, {"tag": 1})) == [1] * 10
for i in range(10):
    assert db.upd.find_one({"_id": i}) == {"_id": i, "tag": 1, "pad": pad(i, 5_000_000)}

# delete_many: the eight 10 MB documents and the 16 MiB one go in one
# commit (~96 MB of pre-images).
before = head()
assert db.bulk.delete_many({}).deleted_count == 9
assert head() == before + 1
if past_reads:
    assert at(before).bulk.count_documents({}) == 9
    assert at(before).bulk.find_one({"_id": "max"}) == doc
assert db.bulk.count_documents({}) == 0

# A 40 MB transaction: eight 5 MB documents and a counter, one commit.
db.counters.insert_one({"_id": "loads", "n": 0})
before = head()
with client.start_session() as s:
    with s.start_transaction():
        for i in range(8):
            db.txn.insert_one({"_id": i, "pad": pad(100 + i, 5 * MIB)}, session=s)
        db.counters.update_one({"_id": "loads"}, {"$inc": {"n": 8}}, session=s)
assert head() == before + 1, "the transaction is one commit"
if past_reads:
    assert at(before).txn.count_documents({}) == 0
    assert at(before).counters.find_one({"_id": "loads"})["n"] == 0
assert db.txn.count_documents({}) == 8
assert db.counters.find_one({"_id": "loads"})["n"] == 8
for i in range(8):
    assert db.txn.find_one({"_id": i})["pad"] == pad(100 + i, 5 * MIB)

print("OK")

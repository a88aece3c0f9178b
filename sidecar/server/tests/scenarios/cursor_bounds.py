# Cursor bounds and capped collections through pymongo's own helpers:
# Cursor.min()/max() with hint(), sort by $natural both ways, a capped
# collection's collMod cappedMax, and a capped write refused inside a
# transaction (263). Expected answers are computed here. Prints OK.
#
#   python cursor_bounds.py <uri> <db>
import sys

from pymongo import ASCENDING, DESCENDING, MongoClient
from pymongo.errors import OperationFailure

uri, db_name = sys.argv[1], sys.argv[2]
client = MongoClient(uri)
db = client[db_name]
db.drop_collection("items")
items = db.items
docs = [{"_id": i, "a": i % 7, "b": i % 3} for i in range(50)]
items.insert_many(docs)
items.create_index([("a", ASCENDING), ("b", DESCENDING)], name="a_b")

# min inclusive, max exclusive, in the index's order (b descending).
def key(d):
    return (d["a"], -d["b"])

lo, hi = (2, -2), (5, -1)
want = sorted(d["_id"] for d in docs if lo <= key(d) < hi)
got = sorted(d["_id"] for d in items.find().hint("a_b").min([("a", 2), ("b", 2)]).max([("a", 5), ("b", 1)]).batch_size(4))
assert got == want, (got, want)
assert want, "the range selects something"

try:
    # pymongo refuses this itself: the server's answer, through a command.
    db.command("find", "items", min={"a": 2, "b": 2})
    raise AssertionError("min without a hint")
except OperationFailure as e:
    assert e.code == 291, e.details
try:
    list(items.find().hint("a_b").min([("a", 5), ("b", 1)]).max([("a", 2), ("b", 2)]))
    raise AssertionError("min after max")
except OperationFailure as e:
    assert e.code == 51175, e.details

# Natural order both ways: _id order here, insertion order when capped.
ids = [d["_id"] for d in items.find().sort("$natural", DESCENDING).batch_size(7)]
assert ids == list(range(49, -1, -1)), ids
db.drop_collection("log")
log = db.create_collection("log", capped=True, size=100000, max=100)
order = [30, 10, 40, 0, 20]
for i in order:
    log.insert_one({"_id": i})
assert [d["_id"] for d in log.find()] == order
assert [d["_id"] for d in log.find().sort("$natural", -1)] == order[::-1]
assert [d["_id"] for d in log.find().hint([("$natural", -1)]).batch_size(2)] == order[::-1]

# A smaller cappedMax holds from the next insert.
db.command("collMod", "log", cappedMax=3)
assert db.list_collections(filter={"name": "log"}).next()["options"]["max"] == 3
log.insert_one({"_id": 50})
assert [d["_id"] for d in log.find()] == [0, 20, 50], list(log.find())
try:
    db.command("collMod", "items", cappedSize=4096)
    raise AssertionError("collMod cappedSize on a collection that is not capped")
except OperationFailure as e:
    assert e.code == 72, e.details

# Inside a transaction a capped collection is read, not written.
with client.start_session() as s:
    s.start_transaction()
    assert log.find_one({"_id": 50}, session=s) is not None
    try:
        log.insert_one({"_id": 60}, session=s)
        raise AssertionError("a capped insert in a transaction")
    except OperationFailure as e:
        assert e.code == 263, e.details
    try:
        s.abort_transaction()
    except OperationFailure:
        pass
assert log.find_one({"_id": 60}) is None
print("OK")

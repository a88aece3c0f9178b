# Transactions through pymongo against a running sidecar (see
# tests/transaction_clients.rs): the money transfer that once half-committed,
# abort, read-your-own-writes, a conflict retried by with_transaction, and
# the lifetime limit. Prints OK.
#
#   python transactions.py <uri> <db> <lifetime seconds>
import sys
import threading
import time

from pymongo import MongoClient
from pymongo.errors import OperationFailure

uri, dbname, lifetime = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = MongoClient(uri, serverSelectionTimeoutMS=10000)
accounts = client[dbname].accounts
accounts.drop()
accounts.insert_many([{"_id": "a", "balance": 100}, {"_id": "b", "balance": 0}])


def balances():
    return {d["_id"]: d["balance"] for d in accounts.find({"_id": {"$in": ["a", "b"]}})}


# The transfer from the bug report: both updates or neither.
with client.start_session() as s:
    s.start_transaction()
    accounts.update_one({"_id": "a"}, {"$inc": {"balance": -10}}, session=s)
    accounts.update_one({"_id": "b"}, {"$inc": {"balance": 10}}, session=s)
    assert accounts.find_one({"_id": "a"}, session=s)["balance"] == 90
    assert balances() == {"a": 100, "b": 0}, balances()
    s.commit_transaction()
assert balances() == {"a": 90, "b": 10}, balances()

# Abort.
with client.start_session() as s:
    s.start_transaction()
    accounts.update_one({"_id": "a"}, {"$set": {"balance": 0}}, session=s)
    s.abort_transaction()
assert balances() == {"a": 90, "b": 10}, balances()

# with_transaction retries a conflict from another client.
attempts = []


def transfer(s):
    attempts.append(1)
    accounts.update_one({"_id": "a"}, {"$inc": {"balance": -5}}, session=s)
    if len(attempts) == 1:
        t = threading.Thread(
            target=lambda: accounts.update_one({"_id": "a"}, {"$inc": {"balance": 1000}})
        )
        t.start()
        t.join()
    accounts.update_one({"_id": "b"}, {"$inc": {"balance": 5}}, session=s)


with client.start_session() as s:
    s.with_transaction(transfer)
assert len(attempts) == 2, attempts
assert balances() == {"a": 1085, "b": 15}, balances()

# A transaction older than the lifetime limit is aborted.
with client.start_session() as s:
    s.start_transaction()
    accounts.update_one({"_id": "b"}, {"$set": {"balance": -1}}, session=s)
    time.sleep(lifetime + 1.5)
    try:
        s.commit_transaction()
        raise AssertionError("an expired transaction committed")
    except OperationFailure as e:
        assert e.code == 251, e.details
assert balances() == {"a": 1085, "b": 15}, balances()
print("OK")

# Text search through pymongo's own helpers: create_index with TEXT and
# weights, find with $text sorted by the text score, index_information.
# Prints OK.
#
#   python text_search.py <uri> <db>
import sys

from pymongo import MongoClient, TEXT
from pymongo.errors import OperationFailure

uri, db_name = sys.argv[1], sys.argv[2]
client = MongoClient(uri)
db = client[db_name]
db.drop_collection("posts")
posts = db.posts
posts.insert_many([
    {"_id": 1, "title": "Brewing coffee at home", "body": "Grind the beans"},
    {"_id": 2, "title": "Tea time", "body": "coffee mentioned"},
    {"_id": 3, "title": "Cakes", "body": "baking a chocolate cake"},
])
name = posts.create_index([("title", TEXT), ("body", TEXT)], weights={"title": 5}, name="search")
assert name == "search", name
info = posts.index_information()["search"]
assert info["weights"] == {"body": 1, "title": 5}, info
assert info["textIndexVersion"] == 3, info
cursor = posts.find(
    {"$text": {"$search": "coffee"}},
    {"score": {"$meta": "textScore"}},
).sort([("score", {"$meta": "textScore"})])
got = [(d["_id"], round(d["score"], 6)) for d in cursor]
# title weight 5, "coffee" one of 3 terms: 5 x (0.5/3 + 0.5); body 1 x 0.75.
assert got == [(1, round(5 * (0.5 / 3 + 0.5), 6)), (2, 0.75)], got
assert posts.count_documents({"$text": {"$search": "bake"}}) == 1
try:
    db.other.insert_one({"a": 1})
    db.other.find_one({"$text": {"$search": "x"}})
    raise AssertionError("$text without a text index")
except OperationFailure as e:
    assert e.code == 27, e
print("OK")

# Document validation through pymongo's own helpers: create_collection with
# a $jsonSchema validator, a refused insert (WriteError 121 with errInfo),
# bypass_document_validation, collMod to warn, a TTL index. Prints OK.
#
#   python validation.py <uri> <db>
import sys

from pymongo import MongoClient
from pymongo.errors import WriteError

uri, db_name = sys.argv[1], sys.argv[2]
client = MongoClient(uri)
db = client[db_name]
db.drop_collection("people")
people = db.create_collection(
    "people",
    validator={"$jsonSchema": {
        "bsonType": "object",
        "required": ["name"],
        "properties": {"age": {"bsonType": "int", "minimum": 0}},
    }},
)
people.insert_one({"_id": 1, "name": "ann", "age": 30})
try:
    people.insert_one({"_id": 2, "age": -1})
    raise AssertionError("an invalid document was accepted")
except WriteError as e:
    assert e.code == 121, e
    info = e.details["errInfo"]
    assert info["failingDocumentId"] == 2, info
    rules = [r["operatorName"] for r in info["details"]["schemaRulesNotSatisfied"]]
    assert rules == ["properties", "required"], rules
people.insert_one({"_id": 3, "age": -1}, bypass_document_validation=True)
try:
    people.update_one({"_id": 1}, {"$set": {"age": "old"}})
    raise AssertionError("an invalid update was accepted")
except WriteError as e:
    assert e.code == 121, e
db.command("collMod", "people", validationAction="warn")
people.insert_one({"_id": 4})
options = people.options()
assert options["validationAction"] == "warn", options
assert options["validationLevel"] == "strict", options
assert sorted(d["_id"] for d in people.find()) == [1, 3, 4]
people.create_index("at", expireAfterSeconds=3600)
ttl = [i for i in people.list_indexes() if i["name"] == "at_1"][0]
assert ttl["expireAfterSeconds"] == 3600, ttl
print("OK")

# Geospatial through pymongo's own helpers: create_index with GEOSPHERE and
# GEO2D, index_information, find with $near/$nearSphere/$geoWithin, and an
# invalid location refused with 16755. Prints OK.
#
#   python geo.py <uri> <db>
import math
import sys

from pymongo import GEO2D, GEOSPHERE, MongoClient
from pymongo.errors import WriteError

uri, db_name = sys.argv[1], sys.argv[2]
client = MongoClient(uri)
db = client[db_name]
db.drop_collection("places")
places = db.places
name = places.create_index([("loc", GEOSPHERE)])
assert name == "loc_2dsphere", name
info = places.index_information()[name]
assert info["key"] == [("loc", "2dsphere")] and info["2dsphereIndexVersion"] == 3, info
cities = {
    "paris": (2.3522, 48.8566),
    "london": (-0.1278, 51.5074),
    "brussels": (4.3517, 50.8503),
    "rome": (12.4964, 41.9028),
}
places.insert_many([{"_id": n, "loc": {"type": "Point", "coordinates": list(c)}} for n, c in cities.items()])


def distance(a, b):
    r = math.radians
    c = math.sin(r(a[1])) * math.sin(r(b[1])) + math.cos(r(a[1])) * math.cos(r(b[1])) * math.cos(r(b[0] - a[0]))
    return math.acos(max(-1.0, min(1.0, c))) * 6378100


paris = cities["paris"]
want = sorted((n for n in cities if distance(paris, cities[n]) <= 500000), key=lambda n: distance(paris, cities[n]))
got = [d["_id"] for d in places.find({"loc": {"$near": {"$geometry": {"type": "Point", "coordinates": list(paris)}, "$maxDistance": 500000}}})]
assert got == want, (got, want)
box = {"type": "Polygon", "coordinates": [[[-1, 48], [5, 48], [5, 52], [-1, 52], [-1, 48]]]}
got = sorted(d["_id"] for d in places.find({"loc": {"$geoWithin": {"$geometry": box}}}))
assert got == ["brussels", "london", "paris"], got
try:
    places.insert_one({"_id": "bad", "loc": {"type": "Point", "coordinates": [0, 100]}})
    raise AssertionError("an invalid point was taken")
except WriteError as e:
    assert e.code == 16755, e
db.drop_collection("grid")
assert db.grid.create_index([("p", GEO2D)], min=0, max=10) == "p_2d"
db.grid.insert_many([{"_id": i, "p": [i, i]} for i in range(10)])
got = [d["_id"] for d in db.grid.find({"p": {"$near": [4.2, 4.2]}}).limit(3)]
assert got == [4, 5, 3], got
print("OK")

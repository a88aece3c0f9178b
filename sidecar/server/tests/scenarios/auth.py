# Authentication and branch-scoped roles, pymongo edition (see tests/auth.rs).
# The server runs `serve --auth` and has users `root` (root), `dev`
# (readWrite on branches preview-*), `ops` (branchAdmin on preview-*, read
# everywhere); branch preview-1 exists.
#
#   python auth.py <host:port> <password>
import sys

from pymongo import MongoClient
from pymongo.errors import OperationFailure

hostport, password = sys.argv[1], sys.argv[2]


def client(user=None, pw=None, **kw):
    if user is None:
        return MongoClient(f"mongodb://{hostport}/?directConnection=true", serverSelectionTimeoutMS=10000, **kw)
    return MongoClient(
        f"mongodb://{hostport}/?directConnection=true",
        username=user,
        password=pw,
        authSource="admin",
        serverSelectionTimeoutMS=10000,
        **kw,
    )


def fails_with(code, f):
    try:
        f()
    except OperationFailure as e:
        assert e.code == code, (code, e.code, e.details)
        return e
    raise AssertionError(f"expected error {code}")


# Both mechanisms, and the driver's default (SCRAM-SHA-256 through
# saslSupportedMechs, with speculative authentication in hello).
for mech in ["SCRAM-SHA-256", "SCRAM-SHA-1", None]:
    kw = {"authMechanism": mech} if mech else {}
    c = client("root", password, **kw)
    assert c.admin.command("ping")["ok"] == 1
    status = c.admin.command("connectionStatus")
    assert status["authInfo"]["authenticatedUsers"] == [{"user": "root", "db": "admin"}], status
    c.app.things.insert_one({"mech": mech or "default"})
    c.close()

# A wrong password and an unknown user: the same error, 18.
wrong = fails_with(18, lambda: client("root", password + "x").app.things.find_one())
unknown = fails_with(18, lambda: client("nobody", password).app.things.find_one())
assert str(wrong) == str(unknown), (str(wrong), str(unknown))
fails_with(18, lambda: client("root", password + "x", authMechanism="SCRAM-SHA-1").app.things.find_one())

# Unauthenticated: only the handshake.
anon = client()
assert anon.admin.command("ping")["ok"] == 1
assert anon.admin.command("hello")["ok"] == 1
fails_with(13, lambda: anon.app.things.find_one())
fails_with(13, lambda: anon.app.things.insert_one({}))
fails_with(13, lambda: anon.admin.command("argonListBranches"))
fails_with(13, lambda: anon.admin.command("createUser", "sneaky", pwd="x", roles=["root"]))

# readWrite on preview-*: writes preview-1, cannot read main, cannot change branches.
dev = client("dev", password)
dev["app~preview-1"].things.insert_one({"_id": 1, "by": "dev"})
assert dev["app~preview-1"].things.find_one({"_id": 1})["by"] == "dev"
fails_with(13, lambda: dev.app.things.find_one())
# listDatabases shows only what the user may read: nothing of main for dev.
assert dev.list_database_names() == [], dev.list_database_names()
assert "app" in client("root", password).list_database_names()
fails_with(13, lambda: dev["app~main"].things.find_one())
fails_with(13, lambda: dev.admin.command("argonCreateBranch", "preview-2", **{"from": "preview-1"}))
fails_with(13, lambda: dev.admin.command("argonResetBranch", "preview-1", toSeq=0))
fails_with(13, lambda: dev.admin.command("argonDeleteBranch", "preview-1"))
fails_with(13, lambda: dev.admin.command("createUser", "x", pwd="x", roles=[]))
fails_with(13, lambda: dev.admin.command("getCmdLineOpts"))

# branchAdmin on preview-*: creates, resets and deletes those branches only.
ops = client("ops", password)
ops.admin.command("argonCreateBranch", "preview-2", **{"from": "main"})
r = ops.admin.command("argonResetBranch", "preview-2", toSeq=0)
assert r["applied"], r
fails_with(13, lambda: ops.admin.command("argonCreateBranch", "other", **{"from": "main"}))
fails_with(13, lambda: ops.admin.command("argonResetBranch", "main", toSeq=0))
ops.admin.command("argonDeleteBranch", "preview-2")

# A protected branch refuses reset and delete at the server, whoever asks.
root = client("root", password)
root.admin.command("argonProtectBranch", "preview-1")
listed = {b["name"]: b for b in root.admin.command("argonListBranches")["branches"]}
assert listed["preview-1"]["protected"] is True, listed
for who in [ops, root]:
    fails_with(20, lambda: who.admin.command("argonResetBranch", "preview-1", toSeq=0))
    fails_with(20, lambda: who.admin.command("argonDeleteBranch", "preview-1"))
dry = ops.admin.command("argonResetBranch", "preview-1", toSeq=0, dryRun=True)
assert not dry["applied"]
fails_with(13, lambda: ops.admin.command("argonProtectBranch", "preview-1", protected=False))
assert dev["app~preview-1"].things.find_one({"_id": 1})["by"] == "dev"

# User management as mongod's.
root.admin.command("createUser", "temp", pwd=password, roles=[{"role": "read", "db": "app"}])
fails_with(51003, lambda: root.admin.command("createUser", "temp", pwd=password, roles=[]))
fails_with(31, lambda: root.admin.command("createUser", "t2", pwd=password, roles=["wizard"]))
info = root.admin.command("usersInfo", "temp")["users"]
assert [u["user"] for u in info] == ["temp"] and "credentials" not in info[0], info
assert sorted(info[0]["mechanisms"]) == ["SCRAM-SHA-1", "SCRAM-SHA-256"], info
temp = client("temp", password)
temp.app.things.find_one()
fails_with(13, lambda: temp.app.things.insert_one({}))
root.admin.command("grantRolesToUser", "temp", roles=[{"role": "readWrite", "db": "app"}])
temp.app.things.insert_one({"by": "temp"})
root.admin.command("revokeRolesFromUser", "temp", roles=[{"role": "readWrite", "db": "app"}])
fails_with(13, lambda: temp.app.things.insert_one({}))
root.admin.command("updateUser", "temp", pwd=password + "2")
fails_with(18, lambda: client("temp", password).app.things.find_one())
client("temp", password + "2").app.things.find_one()
root.admin.command("dropUser", "temp")
fails_with(11, lambda: root.admin.command("dropUser", "temp"))
fails_with(18, lambda: client("temp", password + "2").app.things.find_one())
all_users = sorted(u["user"] for u in root.admin.command("usersInfo", 1)["users"])
assert all_users == ["dev", "ops", "root"], all_users

# Nothing shows a password.
for reply in [root.admin.command("getCmdLineOpts"), root.admin.command("serverStatus")]:
    assert password not in str(reply), reply
    assert "secret@" not in str(reply), reply

print("OK")

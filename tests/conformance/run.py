#!/usr/bin/env python3
"""Runs MongoDB's unified-format spec tests against an Argon sidecar through pymongo.

    run.py [--uri URI | --sidecar PATH] [--verbose] [--only SUBSTRING] DIR_OR_FILE...

With `--sidecar`, the runner starts `PATH serve --enable-test-commands` itself
on a free port over an embedded store in a temporary directory and stops it
at the end. With `--uri`, it uses a server that is already running (started
with `--enable-test-commands`: the tests set fail points).

Requirements (`runOnRequirements`) are judged as MongoDB 8.0 in the topology
the server presents in `hello`, never by the version the server reports: Argon
aims at 8.0's behaviour whatever its handshake says. A test is skipped only
for a requirement the server truly does not meet (the cause is listed); an
operation, argument or check this runner does not implement makes the test
FAIL, so leaving something out can never raise the score.

Output: one line per file (`PASS`/`FAIL` with counts), failures with their
reason under `--verbose`, skip causes, and as the last line
`N passed, N failed, N skipped`.

The format is MongoDB's "Unified Test Format"
(specifications/source/unified-test-format/unified-test-format.md).
"""

import argparse
import collections
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback

import bson
import pymongo
from bson import json_util
from bson.json_util import JSONOptions
from pymongo import monitoring
from pymongo.errors import (
    BulkWriteError,
    ClientBulkWriteException,
    ConfigurationError,
    InvalidOperation,
    OperationFailure,
    PyMongoError,
)
from pymongo.operations import (
    DeleteMany,
    DeleteOne,
    InsertOne,
    ReplaceOne,
    UpdateMany,
    UpdateOne,
)
from pymongo.read_concern import ReadConcern
from pymongo.read_preferences import make_read_preference, read_pref_mode_from_name
from pymongo.write_concern import WriteConcern

# The server version requirements are judged against.
TARGET_VERSION = (8, 0, 0)
# Commands a driver never reports to command monitoring unless asked
# (unified format: "observeSensitiveCommands"), and the handshake.
SENSITIVE = {
    "authenticate", "saslstart", "saslcontinue", "getnonce", "createuser",
    "updateuser", "copydbgetnonce", "copydbsaslstart", "copydb", "hello",
    "ismaster",
}
# A test that runs longer than this fails (a hang must not stop the run).
SOCKET_TIMEOUT_MS = 20000
# withTransaction retries a transient error for 120 s; no spec test needs more
# than a few retries, and a server that answers every attempt with a transient
# error would otherwise hold the run for two minutes per test.
try:
    import pymongo.client_session_shared as _session_shared

    _session_shared._WITH_TRANSACTION_RETRY_TIME_LIMIT = 10
except (ImportError, AttributeError):
    pass


class Unsupported(Exception):
    """An operation or argument this runner does not implement: the test fails."""


class Mismatch(AssertionError):
    pass


# --------------------------------------------------------------------------
# Requirements


def parse_version(text):
    parts = [int(p) for p in re.findall(r"\d+", text)[:3]]
    return tuple(parts + [0] * (3 - len(parts)))


def requirement_unmet(req, topology):
    """None when `req` is met by MongoDB 8.0 in `topology`, else the cause."""
    for key, value in req.items():
        if key == "minServerVersion":
            if TARGET_VERSION < parse_version(value):
                return f"minServerVersion {value}"
        elif key == "maxServerVersion":
            if TARGET_VERSION > parse_version(value):
                return f"maxServerVersion {value}"
        elif key == "topologies":
            if topology not in value:
                return f"topology {topology} not in {value}"
        elif key == "serverless":
            if value == "require":
                return "serverless required"
        elif key == "auth":
            if value:
                return "auth required"
        elif key == "csfle":
            if value:
                return "csfle required"
        elif key == "serverParameters":
            return "serverParameters"
        elif key == "authMechanism":
            return "authMechanism"
        else:
            raise Unsupported(f"runOnRequirements key {key}")
    return None


def requirements_unmet(reqs, topology):
    """None when any of `reqs` is met (or there are none), else the causes."""
    if not reqs:
        return None
    causes = []
    for req in reqs:
        cause = requirement_unmet(req, topology)
        if cause is None:
            return None
        causes.append(cause)
    return "; ".join(causes)


# --------------------------------------------------------------------------
# Matching (unified format, "Evaluating Matches")


def is_number(v):
    return isinstance(v, (int, float, bson.Int64, bson.Decimal128)) and not isinstance(v, bool)


def num(v):
    if isinstance(v, bson.Decimal128):
        return v.to_decimal()
    return v


TYPE_NAMES = {
    "double": lambda v: isinstance(v, float),
    "string": lambda v: isinstance(v, str),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "binData": lambda v: isinstance(v, (bytes, bson.Binary)),
    "objectId": lambda v: isinstance(v, bson.ObjectId),
    "bool": lambda v: isinstance(v, bool),
    "date": lambda v: hasattr(v, "isoformat") or isinstance(v, bson.DatetimeMS),
    "null": lambda v: v is None,
    "regex": lambda v: isinstance(v, (bson.Regex, re.Pattern)),
    "int": lambda v: isinstance(v, int) and not isinstance(v, (bool, bson.Int64))
    and -(2**31) <= v < 2**31,
    "timestamp": lambda v: isinstance(v, bson.Timestamp),
    "long": lambda v: isinstance(v, bson.Int64)
    or (isinstance(v, int) and not isinstance(v, bool) and not -(2**31) <= v < 2**31),
    "decimal": lambda v: isinstance(v, bson.Decimal128),
    "minKey": lambda v: isinstance(v, bson.MinKey),
    "maxKey": lambda v: isinstance(v, bson.MaxKey),
    "javascript": lambda v: isinstance(v, bson.Code),
}


class Matcher:
    def __init__(self, entities, lsids):
        self.entities = entities
        # Each session's id, kept at creation: an ended session has none.
        self.lsids = lsids

    def match(self, expected, actual, path="", root=True):
        if isinstance(expected, dict) and len(expected) == 1:
            (op, arg), = expected.items()
            if op.startswith("$$"):
                return self.special(op, arg, actual, path)
        if isinstance(expected, dict):
            if not isinstance(actual, dict):
                raise Mismatch(f"{path or '/'}: expected a document, got {actual!r}")
            for key, value in expected.items():
                sub = f"{path}.{key}"
                if isinstance(value, dict) and len(value) == 1:
                    (op, arg), = value.items()
                    if op == "$$exists":
                        if bool(arg) != (key in actual):
                            raise Mismatch(f"{sub}: $$exists {arg}, actual {actual!r}")
                        continue
                    if op == "$$unsetOrMatches" and key not in actual:
                        continue
                if key not in actual:
                    raise Mismatch(f"{sub}: missing (actual {actual!r})")
                self.match(value, actual[key], sub, root=False)
            if not root:
                extra = [k for k in actual if k not in expected]
                if extra:
                    raise Mismatch(f"{path}: unexpected fields {extra} in {actual!r}")
            return
        if isinstance(expected, list):
            if not isinstance(actual, list):
                raise Mismatch(f"{path or '/'}: expected an array, got {actual!r}")
            if len(expected) != len(actual):
                raise Mismatch(
                    f"{path or '/'}: expected {len(expected)} elements, got {len(actual)}: {actual!r}"
                )
            for i, (e, a) in enumerate(zip(expected, actual)):
                # Documents directly in a result array are root-level (the
                # unified format lets a find's expected documents name only
                # some fields); deeper ones are not.
                self.match(e, a, f"{path}[{i}]", root=root and isinstance(e, dict))
            return
        if is_number(expected) and is_number(actual):
            if num(expected) != num(actual):
                raise Mismatch(f"{path or '/'}: expected {expected!r}, got {actual!r}")
            return
        if type(expected) is bool or type(actual) is bool:
            if type(expected) is not type(actual) or expected != actual:
                raise Mismatch(f"{path or '/'}: expected {expected!r}, got {actual!r}")
            return
        if expected != actual:
            raise Mismatch(f"{path or '/'}: expected {expected!r}, got {actual!r}")

    def special(self, op, arg, actual, path):
        if op == "$$exists":
            # Only meaningful as a field's value (handled above).
            if not arg:
                raise Mismatch(f"{path}: $$exists false at a value position")
            return
        if op == "$$type":
            names = arg if isinstance(arg, list) else [arg]
            for name in names:
                check = TYPE_NAMES.get(name)
                if check is None:
                    raise Unsupported(f"$$type {name}")
                if check(actual):
                    return
            raise Mismatch(f"{path}: {actual!r} is not of type {arg}")
        if op == "$$unsetOrMatches":
            # A whole result that is absent (a partial result the driver
            # does not report) is unset; a field is handled by its document.
            if actual is None and path.endswith("result"):
                return None
            return self.match(arg, actual, path, root=False)
        if op == "$$matchesEntity":
            return self.match(self.entities[arg], actual, path, root=False)
        if op == "$$matchesHexBytes":
            if bytes(actual) != bytes.fromhex(arg):
                raise Mismatch(f"{path}: bytes differ")
            return
        if op == "$$sessionLsid":
            return self.match(self.lsids[arg], actual, path, root=False)
        if op == "$$lte":
            if not (is_number(actual) and num(actual) <= num(arg)):
                raise Mismatch(f"{path}: {actual!r} > {arg!r}")
            return
        if op == "$$matchAsDocument":
            return self.match(arg, json_util.loads(actual), path, root=False)
        if op == "$$matchAsRoot":
            return self.match(arg, actual, path, root=True)
        raise Unsupported(f"special operator {op}")


def exact_equal(a, b):
    """Collection contents: exact, numbers by value, field order ignored."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(exact_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(exact_equal(x, y) for x, y in zip(a, b))
    if is_number(a) and is_number(b):
        return num(a) == num(b)
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    return a == b


# --------------------------------------------------------------------------
# Events


class EventListener(monitoring.CommandListener):
    def __init__(self, observe, ignore, sensitive):
        self.observe = set(observe)
        self.ignore = set(ignore)
        self.sensitive = sensitive
        self.events = []
        self.recording = True

    def _keep(self, name):
        lname = name.lower()
        if name in self.ignore:
            return False
        if lname in SENSITIVE and not self.sensitive:
            return False
        return self.recording and name != "configureFailPoint"

    def started(self, event):
        if "commandStartedEvent" in self.observe and self._keep(event.command_name):
            self.events.append(("commandStartedEvent", event))

    def succeeded(self, event):
        if "commandSucceededEvent" in self.observe and self._keep(event.command_name):
            self.events.append(("commandSucceededEvent", event))

    def failed(self, event):
        if "commandFailedEvent" in self.observe and self._keep(event.command_name):
            self.events.append(("commandFailedEvent", event))


def check_events(matcher, expected_list, clients):
    for expectation in expected_list:
        event_type = expectation.get("eventType", "command")
        if event_type != "command":
            raise Unsupported(f"expectEvents eventType {event_type}")
        listener = clients[expectation["client"]].listener
        actual = listener.events
        expected = expectation["events"]
        if expectation.get("ignoreExtraEvents"):
            actual = actual[: len(expected)]
        if len(actual) != len(expected):
            names = [f"{kind}:{e.command_name}" for kind, e in actual]
            raise Mismatch(f"expected {len(expected)} events, got {len(actual)}: {names}")
        for i, (exp, (kind, event)) in enumerate(zip(expected, actual)):
            (exp_kind, fields), = exp.items()
            if exp_kind != kind:
                raise Mismatch(f"event {i}: expected {exp_kind}, got {kind} {event.command_name}")
            for key, value in fields.items():
                where = f"event {i} {key}"
                if key == "command":
                    matcher.match(value, event.command, where)
                elif key == "reply":
                    matcher.match(value, event.reply, where)
                elif key == "commandName":
                    if value != event.command_name:
                        raise Mismatch(f"{where}: {event.command_name}")
                elif key == "databaseName":
                    if value != event.database_name:
                        raise Mismatch(f"{where}: {event.database_name}")
                elif key == "hasServiceId":
                    if bool(value) != (event.service_id is not None):
                        raise Mismatch(f"{where}")
                elif key == "hasServerConnectionId":
                    pass  # every server answers with a connection id
                else:
                    raise Unsupported(f"event field {key}")


# --------------------------------------------------------------------------
# Entities and arguments


class ClientEntity:
    def __init__(self, spec, uri):
        observe = spec.get("observeEvents", [])
        unsupported = set(observe) - {
            "commandStartedEvent", "commandSucceededEvent", "commandFailedEvent"
        }
        if unsupported:
            raise Unsupported(f"observeEvents {sorted(unsupported)}")
        self.listener = EventListener(
            observe,
            spec.get("ignoreCommandMonitoringEvents", []),
            spec.get("observeSensitiveCommands", False),
        )
        options = {}
        for key, value in spec.get("uriOptions", {}).items():
            if key.lower() == "appname":
                options["appname"] = value
            elif key in ("retryWrites", "retryReads", "w", "readConcernLevel",
                         "heartbeatFrequencyMS", "serverSelectionTimeoutMS",
                         "connectTimeoutMS", "socketTimeoutMS", "maxPoolSize",
                         "readPreference", "journal", "wTimeoutMS"):
                options[key] = value
            else:
                raise Unsupported(f"uriOption {key}")
        for key in spec:
            if key not in ("id", "observeEvents", "ignoreCommandMonitoringEvents",
                           "observeSensitiveCommands", "uriOptions",
                           "useMultipleMongoses", "storeEventsAsEntities"):
                raise Unsupported(f"client option {key}")
        if spec.get("storeEventsAsEntities"):
            raise Unsupported("storeEventsAsEntities")
        options.setdefault("socketTimeoutMS", SOCKET_TIMEOUT_MS)
        options.setdefault("serverSelectionTimeoutMS", 10000)
        self.client = pymongo.MongoClient(
            uri, event_listeners=[self.listener], document_class=dict, **options
        )


def read_concern(doc):
    return ReadConcern(doc.get("level"))


def write_concern(doc):
    args = {}
    for key, value in doc.items():
        if key == "w":
            args["w"] = value
        elif key == "j":
            args["j"] = value
        elif key == "wtimeoutMS":
            args["wtimeout"] = value
        elif key == "journal":
            args["j"] = value
        else:
            raise Unsupported(f"writeConcern {key}")
    return WriteConcern(**args)


def read_preference(doc):
    mode = read_pref_mode_from_name(doc["mode"][0].lower() + doc["mode"][1:])
    for key in doc:
        if key not in ("mode", "tagSets", "maxStalenessSeconds"):
            raise Unsupported(f"readPreference {key}")
    return make_read_preference(mode, doc.get("tagSets"), doc.get("maxStalenessSeconds", -1))


def collection_options(opts):
    out = {}
    for key, value in opts.items():
        if key == "readConcern":
            out["read_concern"] = read_concern(value)
        elif key == "writeConcern":
            out["write_concern"] = write_concern(value)
        elif key == "readPreference":
            out["read_preference"] = read_preference(value)
        elif key == "timeoutMS":
            raise Unsupported("timeoutMS")
        else:
            raise Unsupported(f"collection/database option {key}")
    return out


def sort_spec(value):
    if isinstance(value, dict):
        return list(value.items())
    return value


# --------------------------------------------------------------------------
# Results in the shape the unified format expects


def insert_one_result(r):
    return {"insertedId": r.inserted_id} if r.acknowledged else {"acknowledged": False}


def update_result(r):
    if not r.acknowledged:
        return {"acknowledged": False}
    out = {
        "matchedCount": r.matched_count,
        "modifiedCount": r.modified_count,
        "upsertedCount": 1 if r.upserted_id is not None else 0,
    }
    if r.upserted_id is not None:
        out["upsertedId"] = r.upserted_id
    return out


def bulk_result(r):
    if not r.acknowledged:
        return {"acknowledged": False}
    return {
        "deletedCount": r.deleted_count,
        "insertedCount": r.inserted_count,
        "matchedCount": r.matched_count,
        "modifiedCount": r.modified_count,
        "upsertedCount": r.upserted_count,
        "upsertedIds": {str(k): v for k, v in (r.upserted_ids or {}).items()},
    }


def bulk_raw_result(raw):
    """A BulkWriteError's partial result, in the unified format's names."""
    return {
        "deletedCount": raw.get("nRemoved", 0),
        "insertedCount": raw.get("nInserted", 0),
        "matchedCount": raw.get("nMatched", 0),
        "modifiedCount": raw.get("nModified", 0),
        "upsertedCount": raw.get("nUpserted", 0),
        "upsertedIds": {str(u["index"]): u["_id"] for u in raw.get("upserted", [])},
    }


def client_bulk_result(r):
    if r is None:
        return None
    if not r.acknowledged:
        return {"acknowledged": False}
    out = {
        "insertedCount": r.inserted_count,
        "upsertedCount": r.upserted_count,
        "matchedCount": r.matched_count,
        "modifiedCount": r.modified_count,
        "deletedCount": r.deleted_count,
    }
    if r.has_verbose_results:
        out["insertResults"] = {
            str(k): {"insertedId": v.inserted_id} for k, v in r.insert_results.items()
        }
        out["updateResults"] = {str(k): update_verbose(v) for k, v in r.update_results.items()}
        out["deleteResults"] = {
            str(k): {"deletedCount": v.deleted_count} for k, v in r.delete_results.items()
        }
    else:
        out["insertResults"] = {}
        out["updateResults"] = {}
        out["deleteResults"] = {}
    return out


def update_verbose(v):
    out = {"matchedCount": v.matched_count, "modifiedCount": v.modified_count}
    if v.upserted_id is not None:
        out["upsertedId"] = v.upserted_id
    return out


# --------------------------------------------------------------------------
# Operations


class TestRun:
    def __init__(self, uri, topology, file_doc):
        self.uri = uri
        self.topology = topology
        self.file = file_doc
        self.entities = {}
        self.clients = {}
        self.lsids = {}
        self.fail_points = []
        self.internal = None
        self.matcher = Matcher(self.entities, self.lsids)

    # -- entities

    def create_entities(self, specs):
        for spec in specs:
            (kind, body), = spec.items()
            eid = body["id"]
            if eid in self.entities:
                raise Unsupported(f"entity {eid} defined twice")
            if kind == "client":
                c = ClientEntity(body, self.uri)
                self.clients[eid] = c
                self.entities[eid] = c.client
            elif kind == "database":
                client = self.entities[body["client"]]
                opts = collection_options(body.get("databaseOptions", {}))
                self.entities[eid] = client.get_database(body["databaseName"], **opts)
            elif kind == "collection":
                db = self.entities[body["database"]]
                opts = collection_options(body.get("collectionOptions", {}))
                self.entities[eid] = db.get_collection(body["collectionName"], **opts)
            elif kind == "session":
                client = self.entities[body["client"]]
                opts = {}
                for key, value in body.get("sessionOptions", {}).items():
                    if key == "causalConsistency":
                        opts["causal_consistency"] = value
                    elif key == "snapshot":
                        opts["snapshot"] = value
                    elif key == "defaultTransactionOptions":
                        opts["default_transaction_options"] = pymongo.client_session.TransactionOptions(
                            **self.transaction_options(value)
                        )
                    else:
                        raise Unsupported(f"sessionOption {key}")
                self.entities[eid] = client.start_session(**opts)
                self.lsids[eid] = self.entities[eid].session_id
            else:
                raise Unsupported(f"entity kind {kind}")

    def transaction_options(self, value):
        out = {}
        for key, v in value.items():
            if key == "readConcern":
                out["read_concern"] = read_concern(v)
            elif key == "writeConcern":
                out["write_concern"] = write_concern(v)
            elif key == "readPreference":
                out["read_preference"] = read_preference(v)
            elif key == "maxCommitTimeMS":
                out["max_commit_time_ms"] = v
            else:
                raise Unsupported(f"transaction option {key}")
        return out

    def set_fail_point(self, client, command):
        client.admin.command(command)
        # The unified format: the runner turns every fail point a test set
        # off after the test.
        self.fail_points.append(command["configureFailPoint"])

    def close(self):
        for name in self.fail_points:
            self.internal.admin.command({"configureFailPoint": name, "mode": "off"})
        self.fail_points = []
        for value in self.entities.values():
            if isinstance(value, pymongo.client_session.ClientSession):
                try:
                    value.end_session()
                except PyMongoError:
                    pass
        for c in self.clients.values():
            c.client.close()

    # -- argument handling

    def take(self, args, allowed):
        """Converts the unified format's arguments to pymongo keywords.

        `allowed` maps an argument's name to its pymongo keyword (or to a
        function returning (keyword, value)). Any other argument is one the
        runner cannot pass on: the test fails rather than run without it.
        """
        out = {}
        for key, value in args.items():
            if key == "session":
                out["session"] = self.entities[value]
                continue
            if key == "rawData":
                # Drivers drop rawData for servers before 8.2 (the CRUD
                # spec), and requirements are judged as 8.0.
                continue
            target = allowed.get(key)
            if target is None:
                raise Unsupported(f"argument {key}")
            if callable(target):
                name, converted = target(value)
                out[name] = converted
            else:
                out[target] = value
        return out

    # -- running

    def run_operation(self, op):
        name = op["name"]
        target_name = op["object"]
        args = op.get("arguments", {})
        if target_name == "testRunner":
            return self.runner_operation(name, args)
        target = self.entities[target_name]
        if isinstance(target, pymongo.collection.Collection):
            return self.collection_operation(target, name, args)
        if isinstance(target, pymongo.database.Database):
            return self.database_operation(target, name, args)
        if isinstance(target, pymongo.MongoClient):
            return self.client_operation(target, name, args)
        if isinstance(target, pymongo.client_session.ClientSession):
            return self.session_operation(target, name, args)
        raise Unsupported(f"operation {name} on {target_name}")

    def runner_operation(self, name, args):
        if name == "failPoint":
            client = self.entities[args["client"]]
            self.set_fail_point(client, args["failPoint"])
            return None
        if name == "targetedFailPoint":
            # One server: the mongos a session is pinned to is that server.
            session = self.entities[args["session"]]
            if session._pinned_address is None:
                raise Mismatch("targetedFailPoint: the session is not pinned")
            self.set_fail_point(session.client, args["failPoint"])
            return None
        if name in ("assertCollectionExists", "assertCollectionNotExists"):
            names = self.internal.get_database(args["databaseName"]).list_collection_names()
            present = args["collectionName"] in names
            if present != (name == "assertCollectionExists"):
                raise Mismatch(f"{name} {args['collectionName']}")
            return None
        if name == "assertSessionTransactionState":
            session = self.entities[args["session"]]
            state = session._transaction.state
            names = {1: "none", 2: "starting", 3: "in_progress", 4: "committed", 5: "committed",
                     6: "aborted"}
            actual = names.get(state, str(state))
            if actual != args["state"]:
                raise Mismatch(f"transaction state {actual}, expected {args['state']}")
            return None
        if name in ("assertSessionPinned", "assertSessionUnpinned"):
            # A driver pins a transaction to the mongos (or load balancer)
            # it started on; Argon presents itself as one.
            pinned = self.entities[args["session"]]._pinned_address is not None
            if pinned != (name == "assertSessionPinned"):
                raise Mismatch(f"{name}: the session is {'' if pinned else 'not '}pinned")
            return None
        if name == "createEntities":
            self.create_entities(args["entities"])
            return None
        raise Unsupported(f"testRunner operation {name}")

    def session_operation(self, session, name, args):
        if name == "startTransaction":
            session.start_transaction(**self.transaction_options(args))
            return None
        if name == "commitTransaction":
            session.commit_transaction()
            return None
        if name == "abortTransaction":
            session.abort_transaction()
            return None
        if name == "endSession":
            session.end_session()
            return None
        if name == "withTransaction":
            ops = args["callback"]
            opts = self.transaction_options({k: v for k, v in args.items() if k != "callback"})

            def callback(_session):
                for o in ops:
                    self.execute(o, propagate=True)

            session.with_transaction(callback, **opts)
            return None
        raise Unsupported(f"session operation {name}")

    def client_operation(self, client, name, args):
        if name == "clientBulkWrite":
            models = []
            for model in args["models"]:
                (kind, body), = model.items()
                models.append(self.client_model(kind, body))
            kwargs = self.take(
                {k: v for k, v in args.items() if k != "models"},
                {"ordered": "ordered", "verboseResults": "verbose_results",
                 "bypassDocumentValidation": "bypass_document_validation",
                 "comment": "comment", "let": "let",
                 "writeConcern": lambda v: ("write_concern", write_concern(v))},
            )
            return client_bulk_result(client.bulk_write(models, **kwargs))
        if name == "listDatabases":
            return list(client.list_databases(**self.take(args, {"filter": "filter"})))
        raise Unsupported(f"client operation {name}")

    def client_model(self, kind, body):
        from pymongo.operations import (
            DeleteMany as D_M, DeleteOne as D_O, InsertOne as I_O, ReplaceOne as R_O,
            UpdateMany as U_M, UpdateOne as U_O,
        )
        body = dict(body)
        ns = body.pop("namespace")
        common = {"collation": "collation", "hint": "hint"}
        if kind == "insertOne":
            return I_O(body.pop("document"), namespace=ns, **self.take(body, {}))
        if kind in ("updateOne", "updateMany"):
            cls = U_O if kind == "updateOne" else U_M
            extra = {"upsert": "upsert", "arrayFilters": "array_filters", **common}
            if kind == "updateOne":
                extra["sort"] = "sort"
            return cls(body.pop("filter"), body.pop("update"), namespace=ns,
                       **self.take(body, extra))
        if kind == "replaceOne":
            return R_O(body.pop("filter"), body.pop("replacement"), namespace=ns,
                       **self.take(body, {"upsert": "upsert", **common, "sort": "sort"}))
        if kind in ("deleteOne", "deleteMany"):
            cls = D_O if kind == "deleteOne" else D_M
            return cls(body.pop("filter"), namespace=ns, **self.take(body, common))
        raise Unsupported(f"client bulk model {kind}")

    def database_operation(self, db, name, args):
        if name == "aggregate":
            pipeline = args["pipeline"]
            kwargs = self.take(
                {k: v for k, v in args.items() if k != "pipeline"},
                {"allowDiskUse": "allowDiskUse", "batchSize": "batchSize",
                 "comment": "comment", "let": "let", "maxTimeMS": "maxTimeMS",
                 "collation": "collation", "hint": "hint"},
            )
            return list(db.aggregate(pipeline, **kwargs))
        if name == "runCommand":
            command = args["command"]
            kwargs = self.take(
                {k: v for k, v in args.items() if k not in ("command", "commandName")},
                {"readPreference": lambda v: ("read_preference", read_preference(v))},
            )
            return db.command(command, **kwargs)
        if name == "createCollection":
            coll = args["collection"]
            kwargs = self.take({k: v for k, v in args.items() if k != "collection"},
                               {"viewOn": "viewOn", "pipeline": "pipeline",
                                "collation": "collation", "capped": "capped",
                                "size": "size", "max": "max",
                                "validator": "validator"})
            # The spec's createCollection is the `create` command alone (its
            # expectEvents list no listCollections before it), as MongoDB's
            # own pymongo runner calls it.
            db.create_collection(coll, check_exists=False, **kwargs)
            return None
        if name == "dropCollection":
            coll = args["collection"]
            kwargs = self.take({k: v for k, v in args.items() if k != "collection"}, {})
            db.drop_collection(coll, **kwargs)
            return None
        if name == "listCollections":
            return list(db.list_collections(**self.take(args, {"filter": "filter"})))
        if name == "listCollectionNames":
            return db.list_collection_names(**self.take(args, {"filter": "filter"}))
        if name == "modifyCollection":
            coll = args["collection"]
            rest = {k: v for k, v in args.items() if k != "collection"}
            return db.command({"collMod": coll, **rest})
        raise Unsupported(f"database operation {name}")

    def collection_operation(self, coll, name, args):
        args = dict(args)
        common_find = {
            "sort": lambda v: ("sort", sort_spec(v)), "skip": "skip", "limit": "limit",
            "batchSize": "batch_size", "projection": "projection", "hint": "hint",
            "collation": "collation", "comment": "comment", "let": "let",
            "allowDiskUse": "allow_disk_use", "maxTimeMS": "max_time_ms",
            "min": "min", "max": "max", "returnKey": "return_key",
            "showRecordId": "show_record_id", "noCursorTimeout": "no_cursor_timeout",
            "allowPartialResults": "allow_partial_results",
        }
        write_common = {"comment": "comment", "let": "let", "hint": "hint",
                        "collation": "collation"}
        if name == "find":
            flt = args.pop("filter", {})
            return list(coll.find(flt, **self.take(args, common_find)))
        if name == "findOne":
            flt = args.pop("filter", {})
            return coll.find_one(flt, **self.take(args, common_find))
        if name == "aggregate":
            pipeline = args.pop("pipeline")
            kwargs = self.take(args, {
                "allowDiskUse": "allowDiskUse", "batchSize": "batchSize",
                "comment": "comment", "let": "let", "maxTimeMS": "maxTimeMS",
                "collation": "collation", "hint": "hint",
                "bypassDocumentValidation": "bypassDocumentValidation",
            })
            return list(coll.aggregate(pipeline, **kwargs))
        if name == "countDocuments":
            flt = args.pop("filter")
            return coll.count_documents(flt, **self.take(args, {
                "skip": "skip", "limit": "limit", "hint": "hint", "collation": "collation",
                "comment": "comment", "maxTimeMS": "maxTimeMS"}))
        if name == "estimatedDocumentCount":
            return coll.estimated_document_count(**self.take(args, {
                "comment": "comment", "maxTimeMS": "maxTimeMS"}))
        if name == "count":
            # pymongo 4 has no Collection.count; the command it used to send.
            cmd = {"count": coll.name, "query": args.pop("filter", {})}
            kwargs = self.take(args, {"skip": "skip", "limit": "limit", "hint": "hint",
                                      "collation": "collation", "comment": "comment"})
            session = kwargs.pop("session", None)
            cmd.update(kwargs)
            return coll.database.command(cmd, session=session)["n"]
        if name == "distinct":
            key = args.pop("fieldName")
            flt = args.pop("filter", {})
            return coll.distinct(key, flt, **self.take(args, {
                "collation": "collation", "comment": "comment", "maxTimeMS": "maxTimeMS",
                "hint": "hint"}))
        if name == "insertOne":
            doc = args.pop("document")
            return insert_one_result(coll.insert_one(doc, **self.take(args, {
                "comment": "comment",
                "bypassDocumentValidation": "bypass_document_validation"})))
        if name == "insertMany":
            docs = args.pop("documents")
            r = coll.insert_many(docs, **self.take(args, {
                "ordered": "ordered", "comment": "comment",
                "bypassDocumentValidation": "bypass_document_validation"}))
            if not r.acknowledged:
                return {"acknowledged": False}
            return {"insertedIds": {str(i): v for i, v in enumerate(r.inserted_ids)}}
        if name in ("updateOne", "updateMany", "replaceOne"):
            flt = args.pop("filter")
            allowed = {"upsert": "upsert",
                       "bypassDocumentValidation": "bypass_document_validation",
                       **write_common}
            if name != "replaceOne":
                allowed["arrayFilters"] = "array_filters"
            if name != "updateMany":
                allowed["sort"] = "sort"
            if name == "replaceOne":
                doc = args.pop("replacement")
                return update_result(coll.replace_one(flt, doc, **self.take(args, allowed)))
            update = args.pop("update")
            method = coll.update_one if name == "updateOne" else coll.update_many
            return update_result(method(flt, update, **self.take(args, allowed)))
        if name in ("deleteOne", "deleteMany"):
            flt = args.pop("filter")
            method = coll.delete_one if name == "deleteOne" else coll.delete_many
            r = method(flt, **self.take(args, write_common))
            return {"deletedCount": r.deleted_count} if r.acknowledged else {"acknowledged": False}
        if name in ("findOneAndUpdate", "findOneAndReplace", "findOneAndDelete"):
            flt = args.pop("filter")
            allowed = {"projection": "projection", "sort": lambda v: ("sort", sort_spec(v)),
                       "maxTimeMS": "max_time_ms", **write_common}
            if name != "findOneAndDelete":
                allowed["upsert"] = "upsert"
                allowed["bypassDocumentValidation"] = "bypass_document_validation"
                allowed["returnDocument"] = lambda v: (
                    "return_document",
                    pymongo.ReturnDocument.AFTER if v == "After" else pymongo.ReturnDocument.BEFORE,
                )
            if name == "findOneAndUpdate":
                allowed["arrayFilters"] = "array_filters"
                update = args.pop("update")
                return coll.find_one_and_update(flt, update, **self.take(args, allowed))
            if name == "findOneAndReplace":
                doc = args.pop("replacement")
                return coll.find_one_and_replace(flt, doc, **self.take(args, allowed))
            return coll.find_one_and_delete(flt, **self.take(args, allowed))
        if name == "bulkWrite":
            requests = [self.bulk_model(r) for r in args.pop("requests")]
            r = coll.bulk_write(requests, **self.take(args, {
                "ordered": "ordered", "comment": "comment", "let": "let",
                "bypassDocumentValidation": "bypass_document_validation"}))
            result = bulk_result(r)
            if r.acknowledged:
                # pymongo's result has no inserted ids; the models' documents do.
                result["insertedIds"] = {
                    str(i): m._doc["_id"] for i, m in enumerate(requests)
                    if isinstance(m, InsertOne)
                }
            return result
        if name == "createIndex":
            keys = sort_spec(args.pop("keys"))
            return coll.create_index(keys, **self.take(args, {
                "name": "name", "unique": "unique", "sparse": "sparse",
                "expireAfterSeconds": "expireAfterSeconds"}))
        if name == "drop":
            coll.drop(**self.take(args, {}))
            return None
        raise Unsupported(f"collection operation {name}")

    def bulk_model(self, request):
        (kind, body), = request.items()
        body = dict(body)
        common = {"collation": "collation", "hint": "hint"}
        if kind == "insertOne":
            # pymongo adds the generated _id to this very document.
            return InsertOne(body.pop("document"), **self.take(body, {}))
        if kind in ("updateOne", "updateMany"):
            cls = UpdateOne if kind == "updateOne" else UpdateMany
            allowed = {"upsert": "upsert", "arrayFilters": "array_filters", **common}
            if kind == "updateOne":
                allowed["sort"] = "sort"
            return cls(body.pop("filter"), body.pop("update"), **self.take(body, allowed))
        if kind == "replaceOne":
            return ReplaceOne(body.pop("filter"), body.pop("replacement"),
                              **self.take(body, {"upsert": "upsert", **common, "sort": "sort"}))
        if kind in ("deleteOne", "deleteMany"):
            cls = DeleteOne if kind == "deleteOne" else DeleteMany
            return cls(body.pop("filter"), **self.take(body, common))
        raise Unsupported(f"bulk model {kind}")

    # -- one operation with its expectations

    def execute(self, op, propagate=False):
        """Runs one operation and checks it. With `propagate` (an operation
        of a withTransaction callback), a driver error is raised again once
        checked, whatever `expectError` or `ignoreResultAndError` say: the
        unified format lets it reach withTransaction, which decides whether
        to retry."""
        expect_error = op.get("expectError")
        for key in op:
            if key not in ("name", "object", "arguments", "expectResult", "expectError",
                           "saveResultAsEntity", "ignoreResultAndError"):
                raise Unsupported(f"operation field {key}")
        try:
            result = self.run_operation(op)
        except (Unsupported, Mismatch):
            raise
        except Exception as exc:  # noqa: BLE001 - any driver error is judged below
            if op.get("ignoreResultAndError"):
                if propagate:
                    raise
                return
            if expect_error is None:
                if propagate:
                    raise
                raise Mismatch(f"{op['name']} failed: {describe(exc)}") from exc
            self.check_error(expect_error, exc)
            if propagate:
                raise
            return
        if op.get("ignoreResultAndError"):
            return
        if expect_error is not None:
            raise Mismatch(f"{op['name']} succeeded ({result!r}), expected an error {expect_error}")
        if "expectResult" in op:
            self.matcher.match(op["expectResult"], result, f"{op['name']} result")
        if "saveResultAsEntity" in op:
            self.entities[op["saveResultAsEntity"]] = result

    def check_error(self, expected, exc):
        server_error = isinstance(exc, OperationFailure)
        details = getattr(exc, "details", None) or {}
        for key, value in expected.items():
            if key == "isError":
                continue
            if key == "isClientError":
                if value == server_error:
                    raise Mismatch(f"isClientError {value}, got {describe(exc)}")
            elif key == "errorContains":
                if value.lower() not in str(exc).lower():
                    raise Mismatch(f"error {describe(exc)} does not contain {value!r}")
            elif key == "errorCode":
                codes = error_codes(exc)
                if value not in codes:
                    raise Mismatch(f"error code {value} expected, got {describe(exc)}")
            elif key == "errorCodeName":
                names = error_code_names(exc)
                if value not in names:
                    raise Mismatch(f"codeName {value} expected, got {describe(exc)}")
            elif key == "errorLabelsContain":
                for label in value:
                    if not has_error_label(exc, label):
                        raise Mismatch(f"label {label} missing from {describe(exc)}")
            elif key == "errorLabelsOmit":
                for label in value:
                    if has_error_label(exc, label):
                        raise Mismatch(f"label {label} present in {describe(exc)}")
            elif key == "expectResult":
                partial = partial_result(exc)
                self.matcher.match(value, partial, "error partial result")
            elif key == "errorResponse":
                response = details
                # A client bulkWrite's top-level error holds the server's reply.
                if isinstance(exc, ClientBulkWriteException) and exc.error is not None:
                    response = getattr(exc.error, "details", None) or {}
                self.matcher.match(value, response, "errorResponse")
            elif key == "writeErrors":
                if not isinstance(exc, ClientBulkWriteException):
                    raise Mismatch(f"writeErrors expected, got {describe(exc)}")
                actual = {str(k): {"code": v.get("code")} if isinstance(v, dict) else v
                          for k, v in (exc.write_errors or {}).items()} \
                    if isinstance(exc.write_errors, dict) else \
                    {str(e["idx"]): {"code": e["code"]} for e in exc.write_errors or []}
                self.matcher.match(value, actual, "writeErrors")
            elif key == "writeConcernErrors":
                if not isinstance(exc, ClientBulkWriteException):
                    raise Mismatch(f"writeConcernErrors expected, got {describe(exc)}")
                actual = [{"code": e.get("code"), "message": e.get("errmsg")}
                          for e in exc.write_concern_errors or []]
                self.matcher.match(value, actual, "writeConcernErrors")
            elif key == "isTimeoutError":
                if value != isinstance(exc, pymongo.errors.ExecutionTimeout):
                    raise Mismatch(f"isTimeoutError {value}, got {describe(exc)}")
            else:
                raise Unsupported(f"expectError {key}")

    # -- a whole test

    def load_initial_data(self):
        for entry in self.file.get("initialData", []):
            db = self.internal.get_database(entry["databaseName"])
            coll = db.get_collection(entry["collectionName"],
                                     write_concern=WriteConcern(w="majority"))
            coll.drop()
            options = entry.get("createOptions", {})
            if entry["documents"]:
                if options:
                    db.create_collection(entry["collectionName"], **options)
                coll.insert_many(entry["documents"])
            else:
                db.create_collection(entry["collectionName"], **options)

    def check_outcome(self, outcome):
        for entry in outcome:
            coll = self.internal.get_database(entry["databaseName"]).get_collection(
                entry["collectionName"], read_concern=ReadConcern("local"))
            actual = list(coll.find({}, sort=[("_id", 1)]))
            expected = entry["documents"]
            if len(actual) != len(expected) or not all(
                exact_equal(e, a) for e, a in zip(expected, actual)
            ):
                raise Mismatch(
                    f"outcome {entry['collectionName']}: expected {expected!r}, got {actual!r}"
                )

    def run_test(self, test, internal):
        self.internal = internal
        # The unified format: end transactions earlier tests left open (a
        # session a driver discarded after a network error still holds
        # its transaction on the server).
        try:
            internal.admin.command({"killAllSessions": []})
        except OperationFailure as exc:
            if exc.code != 11601:  # Interrupted: this very session, killed
                raise
        self.load_initial_data()
        self.create_entities(self.file.get("createEntities", []))
        for c in self.clients.values():
            c.listener.events.clear()
        try:
            for key in test:
                if key not in ("description", "runOnRequirements", "operations",
                               "expectEvents", "outcome", "skipReason"):
                    raise Unsupported(f"test field {key}")
            for op in test["operations"]:
                self.execute(op)
            for c in self.clients.values():
                c.listener.recording = False
            if "expectEvents" in test:
                check_events(self.matcher, test["expectEvents"], self.clients)
            if "outcome" in test:
                self.check_outcome(test["outcome"])
        finally:
            self.close()


def error_codes(exc):
    codes = set()
    if isinstance(exc, OperationFailure) and exc.code is not None:
        codes.add(exc.code)
    details = getattr(exc, "details", None) or {}
    # A server error a driver reports as a connection-state error
    # (NotPrimaryError) keeps the reply in `details`.
    if isinstance(details, dict) and isinstance(details.get("code"), int):
        codes.add(details["code"])
    if isinstance(exc, BulkWriteError):
        for e in details.get("writeErrors", []):
            codes.add(e.get("code"))
        for e in details.get("writeConcernErrors", []):
            codes.add(e.get("code"))
    if isinstance(exc, ClientBulkWriteException):
        if exc.error is not None:
            codes |= error_codes(exc.error)
    return codes


def has_error_label(exc, label):
    if not isinstance(exc, PyMongoError):
        return False
    if exc.has_error_label(label):
        return True
    # A client bulkWrite's top-level error (the unified format's "error" of
    # a ClientBulkWriteException) carries the labels.
    if isinstance(exc, ClientBulkWriteException) and exc.error is not None:
        return has_error_label(exc.error, label)
    return False


def error_code_names(exc):
    names = set()
    details = getattr(exc, "details", None) or {}
    if isinstance(details, dict) and "codeName" in details:
        names.add(details["codeName"])
    if isinstance(exc, ClientBulkWriteException) and exc.error is not None:
        names |= error_code_names(exc.error)
    return names


def partial_result(exc):
    if isinstance(exc, BulkWriteError):
        return bulk_raw_result(exc.details)
    if isinstance(exc, ClientBulkWriteException):
        return client_bulk_result(exc.partial_result)
    return None


def describe(exc):
    code = getattr(exc, "code", None)
    text = str(exc)
    if len(text) > 300:
        text = text[:300] + "…"
    return f"{type(exc).__name__}(code={code}): {text}"


# --------------------------------------------------------------------------
# Files and the server


def load_file(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    options = JSONOptions(document_class=dict, tz_aware=False)
    return json_util.loads(text, json_options=options)


def server_topology(client):
    hello = client.admin.command("hello")
    if hello.get("msg") == "isdbgrid":
        return "sharded"
    if "serviceId" in hello:
        return "load-balanced"
    if "setName" in hello:
        return "replicaset"
    return "single"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sidecar(binary):
    data = tempfile.mkdtemp(prefix="argon-conformance-")
    port = free_port()
    log = open(os.path.join(data, "sidecar.log"), "wb")
    proc = subprocess.Popen(
        [binary, "serve", "--data", os.path.join(data, "wal"),
         "--listen", f"127.0.0.1:{port}", "--enable-test-commands"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{binary} exited: see {data}/sidecar.log")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, data, f"mongodb://127.0.0.1:{port}/?directConnection=true"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{binary} did not listen on {port} within 30 s")


def collect(paths):
    files = []
    for p in paths:
        if os.path.isdir(p):
            files += sorted(
                os.path.join(p, f) for f in os.listdir(p) if f.endswith(".json")
            )
        else:
            files.append(p)
    return files


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri")
    parser.add_argument("--sidecar", help="path of the argon-sidecar binary to start")
    parser.add_argument("--verbose", "-v", action="store_true")
    parser.add_argument("--only", help="run only tests whose file or description contains this")
    parser.add_argument("paths", nargs="+")
    opts = parser.parse_args()
    if bool(opts.uri) == bool(opts.sidecar):
        parser.error("give exactly one of --uri and --sidecar")

    proc = data = None
    uri = opts.uri
    if opts.sidecar:
        proc, data, uri = start_sidecar(opts.sidecar)
    try:
        return run_all(uri, collect(opts.paths), opts)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
            shutil.rmtree(data, ignore_errors=True)


def run_all(uri, files, opts):
    internal = pymongo.MongoClient(uri, document_class=dict,
                                   socketTimeoutMS=SOCKET_TIMEOUT_MS,
                                   serverSelectionTimeoutMS=10000)
    topology = server_topology(internal)
    totals = collections.Counter()
    skip_causes = collections.Counter()
    for path in files:
        name = os.path.basename(path)
        counts = collections.Counter()
        failures = []
        try:
            file_doc = load_file(path)
        except Exception as exc:  # noqa: BLE001
            print(f"FAIL {name}: unreadable: {exc}")
            totals["failed"] += 1
            continue
        file_cause = None
        try:
            file_cause = requirements_unmet(file_doc.get("runOnRequirements"), topology)
        except Unsupported as exc:
            failures.append((None, f"runner lacks {exc}"))
        for test in file_doc["tests"]:
            desc = test["description"]
            if opts.only and opts.only not in name and opts.only not in desc:
                continue
            try:
                cause = file_cause or requirements_unmet(test.get("runOnRequirements"), topology)
            except Unsupported as exc:
                counts["failed"] += 1
                failures.append((desc, f"runner lacks {exc}"))
                continue
            if cause is None and "skipReason" in test:
                cause = f"skipReason: {test['skipReason']}"
            if cause is not None:
                counts["skipped"] += 1
                skip_causes[cause] += 1
                continue
            try:
                TestRun(uri, topology, file_doc).run_test(test, internal)
                counts["passed"] += 1
            except Unsupported as exc:
                counts["failed"] += 1
                failures.append((desc, f"runner lacks {exc}"))
            except Mismatch as exc:
                counts["failed"] += 1
                failures.append((desc, str(exc)))
            except Exception as exc:  # noqa: BLE001 - a broken test is a failed test
                counts["failed"] += 1
                detail = describe(exc)
                if opts.verbose:
                    detail += "\n" + traceback.format_exc(limit=3)
                failures.append((desc, f"error: {detail}"))
        totals.update(counts)
        status = "FAIL" if counts["failed"] else "PASS"
        print(f"{status} {name}: {counts['passed']} passed, {counts['failed']} failed, "
              f"{counts['skipped']} skipped")
        if opts.verbose:
            for desc, why in failures:
                print(f"    - {desc}: {why}")
        sys.stdout.flush()
    internal.close()
    if skip_causes:
        print("skipped, by cause:")
        for cause, n in skip_causes.most_common():
            print(f"    {n:4d}  {cause}")
    print(f"{totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

//! Unit tests of the oplog decoder (`entry.rs`): every op kind, every catalog command, the
//! forms of transactions, writes to `system.views`, and malformed entries, which must be errors
//! that say what is wrong, never panics. Entries are written the way a MongoDB 6.0 replica set
//! writes them (`ts`, `t`, `v`, `wall`, `ui`, session fields), so the tests also show what the
//! decoder strips.

use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{doc, rawdoc, Binary, DateTime, Document, RawDocumentBuf, Timestamp};

use super::*;

const TIME: u32 = 1_700_000_000;

fn ts(increment: u32) -> Timestamp {
    Timestamp {
        time: TIME,
        increment,
    }
}

fn uuid(byte: u8) -> Binary {
    Binary {
        subtype: BinarySubtype::Uuid,
        bytes: vec![byte; 16],
    }
}

/// Every namespace (the server's own databases excepted), under its own name.
fn everything() -> NamespaceMap {
    NamespaceMap::new(Vec::new(), Vec::new(), None, None).unwrap()
}

fn only(patterns: &[&str]) -> NamespaceMap {
    let include = patterns.iter().map(|p| p.to_string()).collect();
    NamespaceMap::new(include, Vec::new(), None, None).unwrap()
}

fn renamed(from: &str, to: &str) -> NamespaceMap {
    NamespaceMap::new(Vec::new(), Vec::new(), Some(from.into()), Some(to.into())).unwrap()
}

/// A top-level entry as the server writes it: `ts`, `t`, `v`, `wall` around `body`.
fn entry(increment: u32, body: RawDocumentBuf) -> RawDocumentBuf {
    let mut raw = rawdoc! {
        "ts": ts(increment),
        "t": 3_i64,
        "v": 2_i64,
        "wall": DateTime::from_millis(1_700_000_000_123),
    };
    for element in body.iter() {
        let (key, value) = element.unwrap();
        raw.append(key, value);
    }
    raw
}

/// A session and transaction number, as transactions carry them.
fn session(body: RawDocumentBuf, lsid_byte: u8, txn: i64) -> RawDocumentBuf {
    let mut raw = body;
    raw.append(
        cstr!("lsid"),
        rawdoc! {"id": uuid(lsid_byte), "uid": Binary { subtype: BinarySubtype::Generic, bytes: vec![7; 32] }},
    );
    raw.append(cstr!("txnNumber"), txn);
    raw.append(cstr!("stmtId"), 0_i32);
    raw
}

/// Decodes `entries` in order, each of which must decode.
fn decode_all(map: &NamespaceMap, entries: &[RawDocumentBuf]) -> (Decoder, Vec<Action>) {
    let mut decoder = Decoder::default();
    let mut out = Vec::new();
    for raw in entries {
        decoder
            .decode(raw, map, &mut out)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    (decoder, out)
}

fn decode_one(map: &NamespaceMap, raw: RawDocumentBuf) -> (Decoder, Vec<Action>) {
    decode_all(map, &[raw])
}

/// The error decoding `raw` gives, as printed.
fn decode_error(map: &NamespaceMap, raw: RawDocumentBuf) -> String {
    let mut decoder = Decoder::default();
    let mut out = Vec::new();
    match decoder.decode(&raw, map, &mut out) {
        Ok(()) => panic!("decoded without an error into {out:?}"),
        Err(e) => e.to_string(),
    }
}

/// A write action's target namespace, partition and `applyOps` entry.
fn as_write(action: &Action) -> (&str, u64, Document) {
    match action {
        Action::Write { ns, partition, op } => (
            ns.as_str(),
            *partition,
            Document::try_from(op.as_ref()).unwrap(),
        ),
        Action::Command(c) => panic!("a command, not a write: {c:?}"),
    }
}

fn as_command(action: &Action) -> &Command {
    match action {
        Action::Command(c) => c,
        Action::Write { op, .. } => panic!("a write, not a command: {op:?}"),
    }
}

/// The one command `body` (a command entry's `o`, on `ns`) decodes into.
fn command_of(map: &NamespaceMap, ns: &str, o: RawDocumentBuf) -> (Decoder, Command) {
    let (decoder, mut out) = decode_one(
        map,
        entry(1, rawdoc! {"op": "c", "ns": ns, "ui": uuid(1), "o": o}),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    match out.remove(0) {
        Action::Command(c) => (decoder, c),
        other => panic!("not a command: {other:?}"),
    }
}

/// A command entry on `ns` that decodes into nothing.
fn ignored_command(map: &NamespaceMap, ns: &str, o: RawDocumentBuf) -> Decoder {
    let (decoder, out) = decode_one(map, entry(1, rawdoc! {"op": "c", "ns": ns, "o": o}));
    assert!(out.is_empty(), "{out:?}");
    decoder
}

// ---- head ----

#[test]
fn head_reads_ts_and_wall() {
    let raw = entry(
        5,
        rawdoc! {"op": "n", "ns": "", "o": {"msg": "periodic noop"}},
    );
    let read = head(&raw).unwrap();
    assert_eq!(read.ts, OplogTs::new(TIME, 5));
    assert_eq!(read.wall_ms, Some(1_700_000_000_123));

    let no_wall = rawdoc! {"ts": ts(6), "op": "n"};
    assert_eq!(head(&no_wall).unwrap().wall_ms, None);
}

#[test]
fn head_without_ts_is_an_error() {
    for raw in [
        rawdoc! {"op": "i", "ns": "shop.orders", "o": {"_id": 1}},
        rawdoc! {"ts": "yesterday", "op": "n"},
    ] {
        let err = head(&raw).err().expect("no ts must be an error");
        assert_eq!(err.ts, "?");
        assert!(err.detail.contains("no readable ts"), "{err}");
    }
}

// ---- document writes ----

#[test]
fn an_insert_becomes_a_write_without_the_server_fields() {
    let raw = entry(
        1,
        rawdoc! {"op": "i", "ns": "shop.orders", "ui": uuid(1), "o": {"_id": 1, "item": "pen"}},
    );
    let (decoder, out) = decode_one(&everything(), raw);
    assert_eq!(out.len(), 1);
    let (ns, _, op) = as_write(&out[0]);
    assert_eq!(ns, "shop.orders");
    assert_eq!(
        op,
        doc! {"op": "i", "ns": "shop.orders", "o": {"_id": 1, "item": "pen"}}
    );
    assert_eq!(decoder.stats.writes, 1);
    assert!(decoder.stats.written.contains("shop.orders"));
    assert!(!decoder.stats.untouched("shop.orders"));
    assert!(decoder.stats.untouched("shop.other"));
}

#[test]
fn an_update_in_the_diff_form_keeps_o_and_o2() {
    let raw = entry(
        1,
        rawdoc! {
            "op": "u", "ns": "shop.orders", "ui": uuid(1),
            "o": {"$v": 2, "diff": {"u": {"qty": 3}, "d": {"note": false}}},
            "o2": {"_id": 1},
        },
    );
    let (decoder, out) = decode_one(&everything(), raw);
    let (ns, _, op) = as_write(&out[0]);
    assert_eq!(ns, "shop.orders");
    assert_eq!(
        op,
        doc! {
            "op": "u", "ns": "shop.orders",
            "o": {"$v": 2, "diff": {"u": {"qty": 3}, "d": {"note": false}}},
            "o2": {"_id": 1},
        }
    );
    assert_eq!(decoder.stats.writes, 1);
}

#[test]
fn an_update_by_replacement_keeps_o_and_o2() {
    let raw = entry(
        1,
        rawdoc! {
            "op": "u", "ns": "shop.orders", "ui": uuid(1),
            "o": {"_id": 1, "item": "ink"}, "o2": {"_id": 1},
        },
    );
    let (_, out) = decode_one(&everything(), raw);
    let (_, _, op) = as_write(&out[0]);
    assert_eq!(
        op,
        doc! {"op": "u", "ns": "shop.orders", "o": {"_id": 1, "item": "ink"}, "o2": {"_id": 1}}
    );
}

#[test]
fn a_delete_becomes_a_write() {
    let raw = entry(
        1,
        rawdoc! {"op": "d", "ns": "shop.orders", "ui": uuid(1), "o": {"_id": 1}},
    );
    let (decoder, out) = decode_one(&everything(), raw);
    let (ns, _, op) = as_write(&out[0]);
    assert_eq!(ns, "shop.orders");
    assert_eq!(op, doc! {"op": "d", "ns": "shop.orders", "o": {"_id": 1}});
    assert_eq!(decoder.stats.writes, 1);
}

#[test]
fn every_write_of_one_document_lands_in_one_partition() {
    let oid = mongodb::bson::oid::ObjectId::from_bytes([9; 12]);
    let entries = [
        entry(
            1,
            rawdoc! {"op": "i", "ns": "shop.orders", "o": {"_id": oid, "n": 1}},
        ),
        entry(
            2,
            rawdoc! {"op": "u", "ns": "shop.orders", "o": {"$v": 2, "diff": {"u": {"n": 2}}}, "o2": {"_id": oid}},
        ),
        entry(
            3,
            rawdoc! {"op": "d", "ns": "shop.orders", "o": {"_id": oid}},
        ),
        entry(
            4,
            rawdoc! {"op": "i", "ns": "shop.orders", "o": {"_id": "other"}},
        ),
        entry(
            5,
            rawdoc! {"op": "i", "ns": "shop.users", "o": {"_id": oid}},
        ),
    ];
    let (_, out) = decode_all(&everything(), &entries);
    let partitions: Vec<u64> = out.iter().map(|a| as_write(a).1).collect();
    assert_eq!(partitions[0], partitions[1]);
    assert_eq!(partitions[0], partitions[2]);
    // Another document, or the same _id in another collection: another partition.
    assert_ne!(partitions[0], partitions[3]);
    assert_ne!(partitions[0], partitions[4]);
}

#[test]
fn writes_take_the_target_name_of_a_renamed_restore() {
    let raw = entry(1, rawdoc! {"op": "i", "ns": "shop.orders", "o": {"_id": 1}});
    let (decoder, out) = decode_one(&renamed("shop", "shop_copy"), raw);
    let (ns, _, op) = as_write(&out[0]);
    assert_eq!(ns, "shop_copy.orders");
    assert_eq!(op.get_str("ns").unwrap(), "shop_copy.orders");
    assert!(decoder.stats.written.contains("shop_copy.orders"));
}

#[test]
fn writes_out_of_scope_are_counted_not_applied() {
    let entries = [
        entry(1, rawdoc! {"op": "i", "ns": "crm.leads", "o": {"_id": 1}}),
        entry(
            2,
            rawdoc! {"op": "i", "ns": "admin.system.users", "o": {"_id": "admin.bob"}},
        ),
        entry(
            3,
            rawdoc! {"op": "i", "ns": "config.transactions", "o": {"_id": 1}},
        ),
        entry(4, rawdoc! {"op": "i", "ns": "shop.orders", "o": {"_id": 1}}),
    ];
    let (decoder, out) = decode_all(&only(&["shop.*"]), &entries);
    assert_eq!(out.len(), 1);
    assert_eq!(as_write(&out[0]).0, "shop.orders");
    assert_eq!(decoder.stats.out_of_scope, 3);
    assert_eq!(decoder.stats.writes, 1);
}

#[test]
fn a_noop_changes_nothing() {
    let raw = entry(
        1,
        rawdoc! {"op": "n", "ns": "", "o": {"msg": "periodic noop"}},
    );
    let (decoder, out) = decode_one(&everything(), raw);
    assert!(out.is_empty());
    assert_eq!(decoder.stats.noops, 1);
    assert_eq!(decoder.stats.writes + decoder.stats.commands, 0);
}

// ---- catalog commands ----

#[test]
fn create_drops_the_id_index_of_the_source_and_keeps_the_options() {
    let (decoder, cmd) = command_of(
        &everything(),
        "shop.$cmd",
        rawdoc! {
            "create": "events", "capped": true, "size": 4096_i64, "max": 10_i64,
            "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"},
        },
    );
    assert_eq!(cmd.db, "shop");
    assert_eq!(cmd.what, "create shop.events");
    assert_eq!(
        cmd.command,
        doc! {"create": "events", "capped": true, "size": 4096_i64, "max": 10_i64}
    );
    assert_eq!(decoder.stats.commands, 1);
    assert!(decoder.stats.catalog_changed.contains("shop.events"));
    assert!(cmd.touches("shop.events") && !cmd.drops("shop.events"));
}

#[test]
fn a_temporary_create_is_replayed_as_temporary() {
    // $out and mapReduce write into `tmp.agg_out.<n>` created with `temp: true`, then rename it.
    let (_, cmd) = command_of(
        &everything(),
        "shop.$cmd",
        rawdoc! {"create": "tmp.agg_out.1", "temp": true, "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"}},
    );
    assert_eq!(cmd.what, "create shop.tmp.agg_out.1");
    assert_eq!(cmd.command, doc! {"create": "tmp.agg_out.1", "temp": true});
}

#[test]
fn the_create_of_time_series_buckets_creates_the_time_series_collection() {
    let timeseries = doc! {
        "timeField": "t", "metaField": "m", "granularity": "seconds", "bucketMaxSpanSeconds": 3600,
    };
    let (decoder, cmd) = command_of(
        &everything(),
        "shop.$cmd",
        rawdoc! {
            "create": "system.buckets.metrics",
            "validator": {"$jsonSchema": {"bsonType": "object"}},
            "clusteredIndex": true,
            "timeseries": {
                "timeField": "t", "metaField": "m", "granularity": "seconds", "bucketMaxSpanSeconds": 3600,
            },
            "expireAfterSeconds": 86_400_i64,
        },
    );
    assert_eq!(cmd.db, "shop");
    assert_eq!(
        cmd.command,
        doc! {"create": "metrics", "timeseries": timeseries, "expireAfterSeconds": 86_400_i64}
    );
    // Noted under the collection's name, the namespace the command names.
    assert!(decoder.stats.catalog_changed.contains("shop.metrics"));
}

#[test]
fn drop_drops_the_target() {
    let (decoder, cmd) = command_of(
        &renamed("shop", "copy"),
        "shop.$cmd",
        rawdoc! {"drop": "orders"},
    );
    assert_eq!(cmd.db, "copy");
    assert_eq!(cmd.what, "drop copy.orders");
    assert_eq!(cmd.command, doc! {"drop": "orders"});
    assert!(cmd.drops("copy.orders") && cmd.touches("copy.orders"));
    assert!(!cmd.drops("copy.users") && !cmd.touches("copy.users"));
    assert!(decoder.stats.catalog_changed.contains("copy.orders"));
}

#[test]
fn rename_within_scope_is_a_rename_run_on_admin() {
    let (decoder, cmd) = command_of(
        &everything(),
        "admin.$cmd",
        rawdoc! {"renameCollection": "shop.tmp.agg_out.1", "to": "shop.report", "stayTemp": false, "dropTarget": false},
    );
    assert_eq!(cmd.db, "admin");
    assert_eq!(
        cmd.what,
        "renameCollection shop.tmp.agg_out.1 to shop.report"
    );
    assert_eq!(
        cmd.command,
        doc! {"renameCollection": "shop.tmp.agg_out.1", "to": "shop.report", "dropTarget": false}
    );
    assert!(cmd.touches("shop.tmp.agg_out.1") && cmd.touches("shop.report"));
    assert!(cmd.drops("shop.report") && !cmd.drops("shop.tmp.agg_out.1"));
    assert!(decoder.stats.catalog_changed.contains("shop.tmp.agg_out.1"));
    assert!(decoder.stats.catalog_changed.contains("shop.report"));
}

#[test]
fn rename_drop_target_is_true_or_the_uuid_of_the_replaced_collection() {
    for drop_target in [
        mongodb::bson::RawBson::Boolean(true),
        mongodb::bson::RawBson::Binary(uuid(4)),
    ] {
        let mut o = rawdoc! {"renameCollection": "shop.a", "to": "shop.b"};
        o.append(cstr!("dropTarget"), drop_target);
        let (_, cmd) = command_of(&everything(), "admin.$cmd", o);
        assert!(cmd.command.get_bool("dropTarget").unwrap(), "{cmd:?}");
    }
}

#[test]
fn rename_across_databases_maps_both_names() {
    let (_, cmd) = command_of(
        &renamed("shop", "copy"),
        "admin.$cmd",
        rawdoc! {"renameCollection": "shop.orders", "to": "archive.orders_2023", "dropTarget": false},
    );
    assert_eq!(
        cmd.command,
        doc! {"renameCollection": "copy.orders", "to": "archive.orders_2023", "dropTarget": false}
    );
    assert_eq!(
        cmd.what,
        "renameCollection copy.orders to archive.orders_2023"
    );
}

#[test]
fn rename_out_of_scope_is_a_drop() {
    let (decoder, cmd) = command_of(
        &only(&["shop.orders"]),
        "admin.$cmd",
        rawdoc! {"renameCollection": "shop.orders", "to": "shop.orders_old", "dropTarget": false},
    );
    assert_eq!(cmd.db, "shop");
    assert_eq!(cmd.command, doc! {"drop": "orders"});
    assert_eq!(
        cmd.what,
        "drop shop.orders (renamed out of scope to shop.orders_old)"
    );
    assert!(cmd.drops("shop.orders"));
    assert!(decoder.stats.catalog_changed.contains("shop.orders"));
}

#[test]
fn rename_into_scope_is_an_error_naming_the_fix() {
    let raw = entry(
        7,
        rawdoc! {"op": "c", "ns": "admin.$cmd", "o": {"renameCollection": "crm.leads", "to": "shop.leads", "dropTarget": false}},
    );
    let err = decode_error(&only(&["shop.*"]), raw);
    assert!(
        err.starts_with(&format!("oplog entry ts:{TIME}:7: ")),
        "{err}"
    );
    assert!(
        err.contains("brings crm.leads (not restored) into shop.leads (restored)")
            && err.contains("widen --ns to include crm.leads"),
        "{err}"
    );
}

#[test]
fn rename_wholly_out_of_scope_is_ignored() {
    let decoder = ignored_command(
        &only(&["shop.*"]),
        "admin.$cmd",
        rawdoc! {"renameCollection": "crm.a", "to": "crm.b", "dropTarget": false},
    );
    assert_eq!(decoder.stats.out_of_scope, 1);
    assert_eq!(decoder.stats.commands, 0);
}

#[test]
fn coll_mod_keeps_its_options() {
    let (_, cmd) = command_of(
        &renamed("shop.orders", "shop.orders_copy"),
        "shop.$cmd",
        rawdoc! {
            "collMod": "orders",
            "validator": {"qty": {"$gte": 0}},
            "validationLevel": "moderate",
            "index": {"name": "ts_1", "expireAfterSeconds": 60},
        },
    );
    assert_eq!(cmd.what, "collMod shop.orders_copy");
    assert_eq!(
        cmd.command,
        doc! {
            "collMod": "orders_copy",
            "validator": {"qty": {"$gte": 0}},
            "validationLevel": "moderate",
            "index": {"name": "ts_1", "expireAfterSeconds": 60},
        }
    );
}

#[test]
fn drop_indexes_names_the_index() {
    for (o, expected) in [
        (
            rawdoc! {"dropIndexes": "orders", "index": "qty_1"},
            doc! {"dropIndexes": "orders", "index": "qty_1"},
        ),
        // The older name of the same command.
        (
            rawdoc! {"deleteIndexes": "orders", "index": "qty_1"},
            doc! {"deleteIndexes": "orders", "index": "qty_1"},
        ),
    ] {
        let (_, cmd) = command_of(&everything(), "shop.$cmd", o);
        assert_eq!(cmd.db, "shop");
        assert_eq!(cmd.command, expected);
        assert!(cmd.touches("shop.orders") && !cmd.drops("shop.orders"));
    }
}

#[test]
fn create_indexes_in_the_single_phase_form_carries_the_spec() {
    let (_, cmd) = command_of(
        &everything(),
        "shop.$cmd",
        rawdoc! {"createIndexes": "orders", "v": 2, "key": {"qty": 1}, "name": "qty_1", "unique": true},
    );
    assert_eq!(cmd.what, "createIndexes shop.orders");
    assert_eq!(
        cmd.command,
        doc! {"createIndexes": "orders", "indexes": [{"v": 2, "key": {"qty": 1}, "name": "qty_1", "unique": true}]}
    );
}

#[test]
fn commit_index_build_becomes_create_indexes() {
    let (decoder, cmd) = command_of(
        &everything(),
        "shop.$cmd",
        rawdoc! {
            "commitIndexBuild": "orders",
            "indexBuildUUID": uuid(5),
            "indexes": [{"v": 2, "key": {"qty": 1}, "name": "qty_1"}, {"v": 2, "key": {"item": "text"}, "name": "item_text"}],
        },
    );
    assert_eq!(cmd.db, "shop");
    assert_eq!(cmd.what, "createIndexes shop.orders");
    assert_eq!(
        cmd.command,
        doc! {"createIndexes": "orders", "indexes": [
            {"v": 2, "key": {"qty": 1}, "name": "qty_1"},
            {"v": 2, "key": {"item": "text"}, "name": "item_text"},
        ]}
    );
    assert!(decoder.stats.catalog_changed.contains("shop.orders"));
}

#[test]
fn commit_index_build_without_indexes_is_an_error() {
    let raw = entry(
        1,
        rawdoc! {"op": "c", "ns": "shop.$cmd", "o": {"commitIndexBuild": "orders", "indexBuildUUID": uuid(5)}},
    );
    let err = decode_error(&everything(), raw);
    assert!(err.contains("commitIndexBuild without indexes"), "{err}");
}

#[test]
fn start_and_abort_index_build_change_nothing() {
    for o in [
        rawdoc! {
            "startIndexBuild": "orders", "indexBuildUUID": uuid(5),
            "indexes": [{"v": 2, "key": {"qty": 1}, "name": "qty_1"}],
        },
        rawdoc! {
            "abortIndexBuild": "orders", "indexBuildUUID": uuid(5),
            "indexes": [{"v": 2, "key": {"qty": 1}, "name": "qty_1"}],
            "cause": {"ok": 0, "code": 11000},
        },
    ] {
        let decoder = ignored_command(&everything(), "shop.$cmd", o);
        assert_eq!(decoder.stats.commands, 0);
        assert!(decoder.stats.catalog_changed.is_empty());
    }
}

#[test]
fn drop_database_drops_the_target_database() {
    let (decoder, cmd) = command_of(
        &renamed("crm", "crm_copy"),
        "crm.$cmd",
        rawdoc! {"dropDatabase": 1},
    );
    assert_eq!(cmd.db, "crm_copy");
    assert_eq!(cmd.what, "dropDatabase crm_copy");
    assert_eq!(cmd.command, doc! {"dropDatabase": 1});
    assert!(cmd.drops("crm_copy.leads") && cmd.touches("crm_copy.leads"));
    assert!(!cmd.drops("crm.leads") && !cmd.touches("shop.leads"));
    assert!(decoder.stats.dropped_databases.contains("crm_copy"));
    assert!(!decoder.stats.untouched("crm_copy.leads"));
}

#[test]
fn drop_database_out_of_scope_is_ignored() {
    let decoder = ignored_command(&only(&["shop.*"]), "crm.$cmd", rawdoc! {"dropDatabase": 1});
    assert_eq!(decoder.stats.out_of_scope, 1);
    assert!(decoder.stats.dropped_databases.is_empty());
}

#[test]
fn commands_on_collections_out_of_scope_are_ignored() {
    for o in [
        rawdoc! {"create": "leads"},
        rawdoc! {"drop": "leads"},
        rawdoc! {"collMod": "leads", "validationLevel": "off"},
        rawdoc! {"dropIndexes": "leads", "index": "x_1"},
        rawdoc! {"createIndexes": "leads", "v": 2, "key": {"x": 1}, "name": "x_1"},
        rawdoc! {"commitIndexBuild": "leads", "indexes": []},
    ] {
        let decoder = ignored_command(&only(&["shop.*"]), "crm.$cmd", o);
        assert_eq!(decoder.stats.out_of_scope, 1);
    }
}

#[test]
fn an_unknown_command_is_an_error_not_a_guess() {
    let raw = entry(
        9,
        rawdoc! {"op": "c", "ns": "shop.$cmd", "o": {"convertToCapped": "orders", "size": 4096}},
    );
    let err = decode_error(&everything(), raw);
    assert_eq!(
        err,
        format!(
            "oplog entry ts:{TIME}:9: command \"convertToCapped\" on shop.$cmd is not known to mc-restore's replay; nothing was guessed"
        )
    );
}

#[test]
fn a_command_without_its_collection_name_is_an_error() {
    for o in [
        rawdoc! {"drop": 1},
        rawdoc! {"create": {"name": "x"}},
        rawdoc! {"renameCollection": "shop.a"},
    ] {
        let raw = entry(1, rawdoc! {"op": "c", "ns": "shop.$cmd", "o": o});
        let err = decode_error(&everything(), raw);
        assert!(
            err.contains("without a collection name") || err.contains("without to"),
            "{err}"
        );
    }
}

// ---- transactions ----

fn insert(ns: &str, id: i32) -> RawDocumentBuf {
    rawdoc! {"op": "i", "ns": ns, "ui": uuid(1), "o": {"_id": id}}
}

fn apply_ops(ops: Vec<RawDocumentBuf>, extra: RawDocumentBuf) -> RawDocumentBuf {
    let mut array = RawArrayBuf::new();
    for op in &ops {
        array.push(op.as_ref());
    }
    let mut o = RawDocumentBuf::new();
    o.append(cstr!("applyOps"), array);
    for element in extra.iter() {
        let (key, value) = element.unwrap();
        o.append(key, value);
    }
    rawdoc! {"op": "c", "ns": "admin.$cmd", "o": o}
}

fn written_ids(out: &[Action]) -> Vec<(String, i32)> {
    out.iter()
        .map(|a| {
            let (ns, _, op) = as_write(a);
            let id = op.get_document("o").unwrap().get_i32("_id").unwrap();
            (ns.to_owned(), id)
        })
        .collect()
}

#[test]
fn a_transaction_applies_its_entries_in_order_at_once() {
    let raw = entry(
        1,
        session(
            apply_ops(
                vec![
                    insert("shop.orders", 1),
                    rawdoc! {"op": "u", "ns": "shop.users", "ui": uuid(2), "o": {"$v": 2, "diff": {"u": {"n": 1}}}, "o2": {"_id": 7}},
                    insert("shop.orders", 2),
                    rawdoc! {"op": "c", "ns": "shop.$cmd", "o": {"create": "audit"}},
                    insert("crm.leads", 3),
                ],
                rawdoc! {},
            ),
            1,
            4,
        ),
    );
    let (decoder, out) = decode_one(&only(&["shop.*"]), raw);
    assert_eq!(out.len(), 4, "{out:?}");
    assert_eq!(as_write(&out[0]).0, "shop.orders");
    assert_eq!(as_write(&out[1]).0, "shop.users");
    assert_eq!(as_write(&out[2]).0, "shop.orders");
    assert_eq!(as_command(&out[3]).what, "create shop.audit");
    assert_eq!(decoder.stats.transactions, 1);
    assert_eq!(decoder.stats.writes, 3);
    assert_eq!(decoder.stats.commands, 1);
    assert_eq!(decoder.stats.out_of_scope, 1);
    assert_eq!(decoder.open_transactions(), 0);
}

#[test]
fn the_apply_ops_command_without_a_session_applies_its_entries() {
    let raw = entry(1, apply_ops(vec![insert("shop.orders", 1)], rawdoc! {}));
    let (decoder, out) = decode_one(&everything(), raw);
    assert_eq!(written_ids(&out), [("shop.orders".to_owned(), 1)]);
    assert_eq!(decoder.stats.transactions, 1);
}

#[test]
fn a_large_transaction_becomes_visible_with_its_last_part() {
    let entries = [
        entry(
            1,
            session(
                apply_ops(
                    vec![insert("shop.orders", 1), insert("shop.orders", 2)],
                    rawdoc! {"partialTxn": true},
                ),
                1,
                4,
            ),
        ),
        // Another session's transaction in between stays apart.
        entry(
            2,
            session(
                apply_ops(vec![insert("shop.users", 9)], rawdoc! {"partialTxn": true}),
                2,
                1,
            ),
        ),
        entry(
            3,
            session(
                apply_ops(vec![insert("shop.orders", 3)], rawdoc! {"partialTxn": true}),
                1,
                4,
            ),
        ),
    ];
    let (mut decoder, out) = decode_all(&everything(), &entries);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(decoder.open_transactions(), 2);
    assert!(opens_transaction(&entries[0]));

    let last = entry(
        4,
        session(
            apply_ops(vec![insert("shop.orders", 4)], rawdoc! {"count": 4_i64}),
            1,
            4,
        ),
    );
    assert!(!opens_transaction(&last));
    let mut out = Vec::new();
    decoder.decode(&last, &everything(), &mut out).unwrap();
    let ids: Vec<i32> = written_ids(&out).into_iter().map(|(_, id)| id).collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    assert_eq!(decoder.stats.transactions, 1);
    // The other session's part is still open: not committed by the cut, not applied.
    assert_eq!(decoder.open_transactions(), 1);
}

#[test]
fn a_partial_transaction_without_a_session_is_an_error() {
    let raw = entry(
        3,
        apply_ops(vec![insert("shop.orders", 1)], rawdoc! {"partialTxn": true}),
    );
    let err = decode_error(&everything(), raw);
    assert!(
        err.contains("a partial or prepared transaction without lsid/txnNumber"),
        "{err}"
    );
}

#[test]
fn a_prepared_transaction_waits_for_its_commit() {
    let prepare = entry(
        1,
        session(
            apply_ops(
                vec![insert("shop.orders", 1), insert("shop.orders", 2)],
                rawdoc! {"prepare": true},
            ),
            1,
            8,
        ),
    );
    assert!(opens_transaction(&prepare));
    let between = entry(2, insert("shop.users", 5));
    let commit = entry(
        3,
        session(
            rawdoc! {"op": "c", "ns": "admin.$cmd", "o": {"commitTransaction": 1, "commitTimestamp": ts(2)}},
            1,
            8,
        ),
    );
    let (decoder, out) = decode_all(&everything(), &[prepare, between, commit]);
    assert_eq!(
        written_ids(&out),
        [
            ("shop.users".to_owned(), 5),
            ("shop.orders".to_owned(), 1),
            ("shop.orders".to_owned(), 2),
        ]
    );
    assert_eq!(decoder.stats.transactions, 1);
    assert_eq!(decoder.open_transactions(), 0);
}

#[test]
fn an_aborted_prepared_transaction_vanishes() {
    let prepare = entry(
        1,
        session(
            apply_ops(vec![insert("shop.orders", 1)], rawdoc! {"prepare": true}),
            1,
            8,
        ),
    );
    let abort = entry(
        2,
        session(
            rawdoc! {"op": "c", "ns": "admin.$cmd", "o": {"abortTransaction": 1}},
            1,
            8,
        ),
    );
    let (decoder, out) = decode_all(&everything(), &[prepare, abort]);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(decoder.open_transactions(), 0);
    assert_eq!(decoder.stats.transactions, 0);

    // An abort of a transaction never seen (begun before the range) is fine too.
    let stray = entry(
        3,
        session(
            rawdoc! {"op": "c", "ns": "admin.$cmd", "o": {"abortTransaction": 1}},
            3,
            1,
        ),
    );
    decode_one(&everything(), stray);
}

#[test]
fn a_commit_whose_prepare_was_not_read_is_an_error() {
    let commit = entry(
        5,
        session(
            rawdoc! {"op": "c", "ns": "admin.$cmd", "o": {"commitTransaction": 1, "commitTimestamp": ts(4)}},
            1,
            8,
        ),
    );
    let err = decode_error(&everything(), commit);
    assert!(err.contains("whose entries were not read"), "{err}");

    let no_session = entry(
        6,
        rawdoc! {"op": "c", "ns": "admin.$cmd", "o": {"commitTransaction": 1}},
    );
    let err = decode_error(&everything(), no_session);
    assert!(
        err.contains("commitTransaction without lsid/txnNumber"),
        "{err}"
    );
}

#[test]
fn user_management_inside_apply_ops_is_out_of_scope() {
    let raw = entry(
        1,
        apply_ops(
            vec![
                rawdoc! {"op": "i", "ns": "admin.system.users", "o": {"_id": "shop.bob", "user": "bob", "db": "shop"}},
                rawdoc! {"op": "d", "ns": "admin.system.roles", "o": {"_id": "shop.reader"}},
            ],
            rawdoc! {},
        ),
    );
    let (decoder, out) = decode_one(&everything(), raw);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(decoder.stats.out_of_scope, 2);
}

// ---- system.views ----

fn view_entry(op: &str, o: RawDocumentBuf, o2: Option<RawDocumentBuf>) -> RawDocumentBuf {
    let mut raw = rawdoc! {"op": op, "ns": "shop.system.views", "ui": uuid(3), "o": o};
    if let Some(o2) = o2 {
        raw.append(cstr!("o2"), o2);
    }
    entry(1, raw)
}

#[test]
fn inserting_a_view_definition_creates_the_view() {
    let raw = view_entry(
        "i",
        rawdoc! {
            "_id": "shop.big_orders", "viewOn": "orders",
            "pipeline": [{"$match": {"qty": {"$gt": 10}}}],
            "collation": {"locale": "fr"},
        },
        None,
    );
    let (decoder, out) = decode_one(&everything(), raw);
    assert_eq!(out.len(), 1);
    let cmd = as_command(&out[0]);
    assert_eq!(cmd.db, "shop");
    assert_eq!(cmd.what, "create view shop.big_orders");
    assert_eq!(
        cmd.command,
        doc! {
            "create": "big_orders", "viewOn": "orders",
            "pipeline": [{"$match": {"qty": {"$gt": 10}}}],
            "collation": {"locale": "fr"},
        }
    );
    assert_eq!(decoder.stats.commands, 1);
    assert_eq!(decoder.stats.writes, 0);
    assert!(decoder.stats.catalog_changed.contains("shop.big_orders"));
}

#[test]
fn a_view_without_a_pipeline_gets_an_empty_one() {
    let raw = view_entry("i", rawdoc! {"_id": "shop.all", "viewOn": "orders"}, None);
    let (_, out) = decode_one(&everything(), raw);
    assert_eq!(
        as_command(&out[0]).command,
        doc! {"create": "all", "viewOn": "orders", "pipeline": []}
    );
}

#[test]
fn replacing_a_view_definition_is_coll_mod() {
    let raw = view_entry(
        "u",
        rawdoc! {"_id": "shop.big_orders", "viewOn": "orders", "pipeline": [{"$match": {"qty": {"$gt": 50}}}], "collation": {"locale": "fr"}},
        Some(rawdoc! {"_id": "shop.big_orders"}),
    );
    let (_, out) = decode_one(&everything(), raw);
    let cmd = as_command(&out[0]);
    assert_eq!(cmd.what, "collMod view shop.big_orders");
    // A view's collation cannot change: collMod does not take one.
    assert_eq!(
        cmd.command,
        doc! {"collMod": "big_orders", "viewOn": "orders", "pipeline": [{"$match": {"qty": {"$gt": 50}}}]}
    );
}

#[test]
fn deleting_a_view_definition_drops_the_view() {
    let raw = view_entry("d", rawdoc! {"_id": "shop.big_orders"}, None);
    let (_, out) = decode_one(&everything(), raw);
    let cmd = as_command(&out[0]);
    assert_eq!(cmd.what, "drop view shop.big_orders");
    assert_eq!(cmd.db, "shop");
    assert_eq!(cmd.command, doc! {"drop": "big_orders"});
}

#[test]
fn views_follow_a_renamed_restore() {
    let raw = view_entry(
        "i",
        rawdoc! {"_id": "shop.big_orders", "viewOn": "orders", "pipeline": []},
        None,
    );
    let (_, out) = decode_one(&renamed("shop", "copy"), raw);
    let cmd = as_command(&out[0]);
    assert_eq!(cmd.db, "copy");
    assert_eq!(cmd.what, "create view copy.big_orders");
    assert_eq!(
        cmd.command,
        doc! {"create": "big_orders", "viewOn": "orders", "pipeline": []}
    );
}

#[test]
fn the_view_of_a_time_series_collection_is_left_to_its_buckets() {
    let raw = view_entry(
        "i",
        rawdoc! {"_id": "shop.metrics", "viewOn": "system.buckets.metrics", "pipeline": [{"$_internalUnpackBucket": {"timeField": "t"}}]},
        None,
    );
    let (decoder, out) = decode_one(&everything(), raw);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(decoder.stats.noops, 1);
}

#[test]
fn views_out_of_scope_are_ignored() {
    let raw = view_entry(
        "i",
        rawdoc! {"_id": "shop.big_orders", "viewOn": "orders", "pipeline": []},
        None,
    );
    let (decoder, out) = decode_one(&only(&["shop.orders"]), raw);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(decoder.stats.out_of_scope, 1);
}

#[test]
fn malformed_view_writes_are_errors() {
    for (raw, expected) in [
        (
            view_entry(
                "u",
                rawdoc! {"$v": 2, "diff": {"u": {"viewOn": "users"}}},
                Some(rawdoc! {"_id": "shop.v"}),
            ),
            "in the diff form is not known",
        ),
        (
            view_entry("u", rawdoc! {"_id": "shop.v", "viewOn": "orders"}, None),
            "update of shop.system.views without o2",
        ),
        (
            view_entry("i", rawdoc! {"viewOn": "orders"}, None),
            "shop.system.views entry without a view name",
        ),
        (
            view_entry("i", rawdoc! {"_id": "shop.v", "pipeline": []}, None),
            "view shop.v without viewOn",
        ),
        (
            entry(1, rawdoc! {"op": "i", "ns": "shop.system.views"}),
            "i on shop.system.views without o",
        ),
    ] {
        let err = decode_error(&everything(), raw);
        assert!(err.contains(expected), "{err}");
    }
}

// ---- malformed entries ----

#[test]
fn malformed_entries_are_errors_that_say_what_is_missing() {
    let cases = [
        // No ts: the error cannot name it, the rest still says what is wrong.
        (
            rawdoc! {"ns": "shop.orders", "o": {"_id": 1}},
            "oplog entry ?: no op",
        ),
        (
            entry(1, rawdoc! {"ns": "shop.orders", "o": {"_id": 1}}),
            "no op",
        ),
        (entry(1, rawdoc! {"op": 1, "ns": "shop.orders"}), "no op"),
        (entry(1, rawdoc! {"op": "i", "o": {"_id": 1}}), "no ns"),
        (
            entry(1, rawdoc! {"op": "i", "ns": "shop.orders"}),
            "i without o",
        ),
        (
            entry(
                1,
                rawdoc! {"op": "u", "ns": "shop.orders", "o2": {"_id": 1}},
            ),
            "u without o",
        ),
        (
            entry(1, rawdoc! {"op": "d", "ns": "shop.orders", "o": "x"}),
            "d without o",
        ),
        (
            entry(
                1,
                rawdoc! {"op": "i", "ns": "shop.orders", "o": {"item": "pen"}},
            ),
            "i on shop.orders without _id",
        ),
        (
            entry(
                1,
                rawdoc! {"op": "u", "ns": "shop.orders", "o": {"$v": 2, "diff": {}}},
            ),
            "u on shop.orders without _id",
        ),
        (
            entry(
                1,
                rawdoc! {"op": "u", "ns": "shop.orders", "o": {"$v": 2, "diff": {}}, "o2": {"x": 1}},
            ),
            "u on shop.orders without _id",
        ),
        (
            entry(1, rawdoc! {"op": "c", "ns": "shop.$cmd"}),
            "command without o",
        ),
        (
            entry(1, rawdoc! {"op": "c", "ns": "shop.$cmd", "o": {}}),
            "empty command",
        ),
        (
            entry(1, rawdoc! {"op": "x", "ns": "shop.orders", "o": {"_id": 1}}),
            "unknown op type \"x\"",
        ),
        (
            entry(
                1,
                rawdoc! {"op": "c", "ns": "admin.$cmd", "o": {"applyOps": 1}},
            ),
            "applyOps without an array",
        ),
        (
            entry(
                1,
                rawdoc! {"op": "c", "ns": "admin.$cmd", "o": {"applyOps": [{"op": "i", "ns": "shop.orders", "o": {"_id": 1}}, 2]}},
            ),
            "applyOps element is not a document",
        ),
        (
            entry(
                1,
                rawdoc! {"op": "c", "ns": "admin.$cmd", "o": {"applyOps": [{"ns": "shop.orders", "o": {"_id": 1}}]}},
            ),
            "no op",
        ),
        (
            entry(
                1,
                rawdoc! {"op": "c", "ns": "admin.$cmd", "o": {"applyOps": [{"op": "i", "ns": "shop.orders"}]}},
            ),
            "i without o",
        ),
    ];
    for (raw, expected) in cases {
        let err = decode_error(&everything(), raw.clone());
        assert!(
            err.contains(expected),
            "{raw:?}: expected {expected:?} in {err:?}"
        );
        if raw.get("ts").unwrap().is_some() {
            assert!(
                err.starts_with(&format!("oplog entry ts:{TIME}:1: ")),
                "{err}"
            );
        }
    }
}

#[test]
fn a_failed_entry_of_a_transaction_fails_the_transaction() {
    let raw = entry(
        2,
        session(
            apply_ops(
                vec![
                    insert("shop.orders", 1),
                    rawdoc! {"op": "c", "ns": "shop.$cmd", "o": {"emptycapped": "orders"}},
                ],
                rawdoc! {},
            ),
            1,
            1,
        ),
    );
    let err = decode_error(&everything(), raw);
    assert!(
        err.starts_with(&format!("oplog entry ts:{TIME}:2: command \"emptycapped\"")),
        "{err}"
    );
}

// ---- applyOps commands for the target ----

#[test]
fn apply_ops_command_lists_the_writes() {
    let ops = [
        rawdoc! {"op": "i", "ns": "shop.orders", "o": {"_id": 1}},
        rawdoc! {"op": "d", "ns": "shop.orders", "o": {"_id": 2}},
    ];
    for always_upsert in [true, false] {
        let cmd = Document::try_from(apply_ops_command(&ops, always_upsert).as_ref()).unwrap();
        assert_eq!(cmd.keys().next().map(String::as_str), Some("applyOps"));
        assert_eq!(
            cmd.get_array("applyOps").unwrap(),
            &vec![
                doc! {"op": "i", "ns": "shop.orders", "o": {"_id": 1}}.into(),
                doc! {"op": "d", "ns": "shop.orders", "o": {"_id": 2}}.into(),
            ]
        );
        assert_eq!(cmd.get_bool("alwaysUpsert").unwrap(), always_upsert);
    }
}
